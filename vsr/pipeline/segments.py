"""Resumable runs: the upscaled video in keyframe-aligned segments, joined at the end.

``run_segmented(cfg)`` does what ``engine.run(cfg)`` does, but the writer stage encodes the
video into segments of about ``segment_seconds`` in a work directory (default: the hidden
sibling ``.<output name>.vsr-parts/``), each with a new encoder and container, so every
segment starts with a keyframe (IDR). A finished segment is closed, fsynced and renamed
into place, and only then recorded in ``manifest.json`` (written atomically). A crash or
Ctrl-C therefore loses at most the segment being written.

Started again with a manifest for the same input (path, size, mtime) and the same
output-affecting parameters, the run keeps the recorded segments, deletes anything else
in the work directory (the segment that was being written), seeks the input to the
keyframe at or before the last recorded frame, decodes and discards frames up to and
including that frame (matched by pts, exactly) and goes on from the next one. A manifest
for another input or other parameters is discarded (one warning) and the run starts over.

At the end the segments' video packets are joined by stream copy (no re-encode) with the
source's audio and subtitles into the output, through the ordinary
:class:`~vsr.media.writer.Writer` (``video_template``): same container, time base,
timestamps, colour tags, rotation, tags and chapters as ``vsr run``; temp file, atomic
rename; then the work directory is removed.

Segments are MP4 (MOV when MP4 cannot hold the codec) whatever the output container:
those store every packet's dts and keep the source's time base exactly, which a stream
copy needs (the Matroska demuxer gives no dts for reordered frames). Each segment's
timestamps start at 0 (its first pts, the ``offset``, is recorded and added back when
joining): MP4 would store a later start as an edit list in milliseconds, which is not
exact.
"""

from __future__ import annotations

import contextlib
import heapq
import io
import json
import logging
import math
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error

from vsr.config import DEVICE_FIELDS, VIDEO_FIELDS, RunConfig, config_values, output_fingerprint
from vsr.errors import Interrupted, MediaError, StageError, UsageError
from vsr.files import FileLock, atomic_write, replace_durably
from vsr.media.frame import Frame
from vsr.media.probe import describe_av_error, open_input
from vsr.media.reader import MAX_CONSECUTIVE_ERRORS, Packet, frame_from_av
from vsr.media.writer import Writer, resolve_codec
from vsr.pipeline.engine import Job, RunReport, add_model_stage, prepare
from vsr.pipeline.runner import Runner

__all__ = [
    "MANIFEST_NAME",
    "SegmentedRunReport",
    "default_work_dir",
    "params_hash",
    "run_segmented",
]

log = logging.getLogger("vsr")

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
_LOCK_NAME = ".lock"


@dataclass
class SegmentedRunReport(RunReport):
    """A :class:`RunReport` plus the segments: how many, and how many were kept from an
    earlier run (``resumed_segments``, ``resumed_frames``). ``frames_in``/``frames_out``
    count the whole output; ``fps`` only the frames upscaled by this run."""

    segments: int = 0
    resumed_segments: int = 0
    resumed_frames: int = 0
    work_dir: str = ""

    def summary(self) -> str:
        text = super().summary()
        if self.resumed_segments:
            text += (
                f"; resumed: kept {self.resumed_segments} of {self.segments} segments "
                f"({self.resumed_frames} frames)"
            )
        return text


@dataclass
class _Segment:
    index: int
    file: str
    first_frame: int
    last_frame: int
    first_pts: int | None
    last_pts: int | None
    frames: int
    size: int
    offset: int  # subtracted from every pts in the file (source time base); added back


@dataclass
class _Manifest:
    input: dict[str, Any]
    params: str
    container: str
    segments: list[_Segment] = field(default_factory=list)
    complete: bool = False  # every frame of the input is in a segment

    def to_json(self) -> str:
        data = {
            "version": MANIFEST_VERSION,
            "input": self.input,
            "params": self.params,
            "container": self.container,
            "complete": self.complete,
            "segments": [s.__dict__ for s in self.segments],
        }
        return json.dumps(data, indent=2)

    @classmethod
    def from_json(cls, text: str) -> _Manifest:
        data = json.loads(text)
        if data.get("version") != MANIFEST_VERSION:
            raise ValueError(f"manifest version {data.get('version')!r}")
        names = {f.name for f in fields(_Segment)}
        segments = [_Segment(**{k: s[k] for k in names}) for s in data["segments"]]
        return cls(
            input=dict(data["input"]),
            params=str(data["params"]),
            container=str(data["container"]),
            segments=segments,
            complete=bool(data.get("complete", False)),
        )

    @property
    def frames(self) -> int:
        return sum(s.frames for s in self.segments)


# -- identity ------------------------------------------------------------------------------


def default_work_dir(output: Path) -> Path:
    """The work directory for ``output``: its hidden sibling ``.<name>.vsr-parts``."""
    return output.with_name(f".{output.name}.vsr-parts")


def _input_identity(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def params_hash(cfg: RunConfig, container: str) -> str:
    """The fingerprint of what the segments hold: the video fields, the device fields
    (segments from different devices must not be mixed) and the segment container. Audio
    is left out: only the join uses it."""
    return output_fingerprint(config_values(cfg), VIDEO_FIELDS + DEVICE_FIELDS, container=container)


def _holds(fmt: str, codec: str) -> bool:
    try:
        with av.open(io.BytesIO(), "w", format=fmt) as test:
            test.add_stream(codec)
    except (av.error.FFmpegError, ValueError, TypeError):
        return False
    return True


def segment_suffix(output: Path, codec: str) -> str:
    """The segments' container: the output's when it is MP4/MOV, else MP4 (or MOV) when
    it holds ``codec``, else the output's own."""
    own = output.suffix.lower() or ".mp4"
    if own in (".mp4", ".mov"):
        return own
    for suffix, fmt in ((".mp4", "mp4"), (".mov", "mov")):
        if _holds(fmt, codec):
            return suffix
    return own


# -- files ---------------------------------------------------------------------------------


def _save_manifest(work: Path, manifest: _Manifest) -> None:
    atomic_write(work / MANIFEST_NAME, manifest.to_json())


def _clear(work: Path) -> None:
    for p in work.iterdir():
        if p.name == _LOCK_NAME:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def _load(work: Path, identity: dict[str, Any], params: str, container: str) -> _Manifest:
    """The manifest to continue: the recorded one when it matches (its segments checked,
    anything unrecorded deleted), else a new empty one (the work directory emptied)."""
    fresh = _Manifest(input=identity, params=params, container=container)
    path = work / MANIFEST_NAME
    if not path.exists():
        if any(p.name != _LOCK_NAME for p in work.iterdir()):
            log.info("%s: no manifest; removing leftovers", work)
        _clear(work)
        return fresh
    try:
        old = _Manifest.from_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s: unreadable manifest (%s); starting over", work, exc)
        _clear(work)
        return fresh
    if old.input != identity or old.params != params or old.container != container:
        what = "the input" if old.input != identity else "the parameters"
        log.warning(
            "%s: the manifest was written for other settings (%s changed); "
            "discarding its segments and starting over",
            work,
            what,
        )
        _clear(work)
        return fresh
    kept: list[_Segment] = []
    next_frame = 0
    for seg in old.segments:
        f = work / seg.file
        ok = (
            seg.index == len(kept)
            and seg.first_frame == next_frame
            and seg.frames == seg.last_frame - seg.first_frame + 1 > 0
            and Path(seg.file).name == seg.file
            and f.is_file()
            and f.stat().st_size == seg.size
        )
        if not ok:
            log.warning("%s: segment %d is missing or damaged; redoing from it", work, seg.index)
            break
        kept.append(seg)
        next_frame = seg.last_frame + 1
    complete = old.complete and len(kept) == len(old.segments)
    manifest = _Manifest(identity, params, container, kept, complete)
    names = {s.file for s in kept} | {MANIFEST_NAME, _LOCK_NAME}
    for p in work.iterdir():
        if p.name not in names:
            log.info("%s: removing %s (not in the manifest)", work, p.name)
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
    if len(kept) != len(old.segments) or complete != old.complete:
        _save_manifest(work, manifest)
    return manifest


def _locked(work: Path) -> FileLock:
    """An exclusive lock on ``work`` (two runs must not share a work directory)."""
    return FileLock(
        work / _LOCK_NAME,
        blocking=False,
        busy=lambda: UsageError(
            f"{work} is in use by another vsr run",
            hint="wait for it to finish, or give each run its own output",
        ),
    )


# -- decoding ------------------------------------------------------------------------------


class _SeekMissed(Exception):
    """After the seek, the frame to resume after did not come (no exact pts match)."""


def _decode(
    path: Path,
    job: Job,
    *,
    after_pts: int | None,
    skip: int,
    seek: bool,
) -> Iterator[Frame]:
    """Decode the video of ``path``, yielding frames numbered from ``skip``.

    With ``seek`` the input is sought to the keyframe at or before ``after_pts``; frames
    are discarded up to and including the one whose pts is exactly ``after_pts``
    (``_SeekMissed`` when a later frame comes first). Without it decoding starts at the
    beginning and the first ``skip`` frames are discarded (the last of them must have pts
    ``after_pts``). Timestamps are derived as :class:`~vsr.media.reader.Reader` does.
    """
    vinfo = job.info.video
    time_base = vinfo.time_base
    rate = vinfo.frame_rate
    container = open_input(path)
    try:
        stream = container.streams[vinfo.index]
        stream.thread_type = "AUTO"
        if seek and after_pts is not None:
            container.seek(after_pts, stream=stream, backward=True, any_frame=False)
        skipping = skip > 0
        seen = 0  # frames decoded (without seek: from the start)
        index = skip
        last_pts: int | None = None
        errors = consecutive = 0
        last_error: BaseException | None = None

        def frames_of(av_frames: Any) -> Iterator[Frame]:
            nonlocal skipping, seen, index, last_pts
            for av_frame in av_frames:
                pts = av_frame.pts
                if pts is None:
                    pts = av_frame.dts
                if pts is None and last_pts is not None and rate:
                    pts = last_pts + max(1, round(1 / (rate * time_base)))
                if pts is not None:
                    last_pts = pts
                seen += 1
                if skipping:
                    if seek:
                        if pts is None or after_pts is None or pts > after_pts:
                            raise _SeekMissed
                        if pts == after_pts:
                            skipping = False
                        continue
                    if seen == skip:
                        skipping = False
                        if after_pts is not None and pts != after_pts:
                            raise MediaError(
                                f"{path}: frame {skip - 1} has pts {pts}, the manifest says "
                                f"{after_pts}",
                                hint="the input changed; remove the work directory",
                            )
                    continue
                frame = frame_from_av(av_frame, index=index, pts=pts, time_base=time_base)
                index += 1
                yield frame

        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            try:
                decoded = stream.decode(packet)
            except (av.error.FFmpegError, ValueError) as exc:
                errors += 1
                consecutive += 1
                last_error = exc
                if consecutive >= MAX_CONSECUTIVE_ERRORS:
                    break
                continue
            consecutive = 0
            yield from frames_of(decoded)
        try:
            flushed = stream.decode(None)
        except (av.error.FFmpegError, ValueError) as exc:
            errors += 1
            last_error = exc
            flushed = []
        yield from frames_of(flushed)
        if skipping:
            if seek:
                raise _SeekMissed
            raise MediaError(
                f"{path}: has {seen} frames, the manifest records {skip}",
                hint="the input changed; remove the work directory",
            )
        if index == 0:
            reason = f" ({describe_av_error(last_error)})" if last_error is not None else ""
            raise MediaError(
                f"cannot read {path}: no video frame could be decoded{reason}",
                hint="the file is damaged or incomplete",
            )
        if errors:
            log.warning(
                "%s: input is damaged: %d packet(s) failed to decode; last error: %s",
                path,
                errors,
                describe_av_error(last_error) if last_error is not None else "?",
            )
    finally:
        with contextlib.suppress(av.error.FFmpegError, OSError):
            container.close()


def _frames_after(path: Path, job: Job, *, after_pts: int | None, skip: int) -> Iterator[Frame]:
    """The input's frames from number ``skip`` on (the frame before it has pts
    ``after_pts``): by seeking when possible, else by decoding from the start."""
    if skip == 0:
        yield from _decode(path, job, after_pts=None, skip=0, seek=False)
        return
    if after_pts is not None:
        try:
            yield from _decode(path, job, after_pts=after_pts, skip=skip, seek=True)
            return
        except _SeekMissed:
            log.info("%s: the seek missed frame %d; decoding from the start", path, skip - 1)
    yield from _decode(path, job, after_pts=after_pts, skip=skip, seek=False)


# -- joining -------------------------------------------------------------------------------


def _video_packets(work: Path, manifest: _Manifest, time_base: Fraction) -> Iterator[Any]:
    """Every video packet of the segments, in order, with the segment's offset (in
    ``time_base``) added back; dts made strictly increasing."""
    last_dts: Fraction | None = None
    for seg in manifest.segments:
        path = work / seg.file
        try:
            container = av.open(str(path))
        except (av.error.FFmpegError, OSError) as exc:
            raise MediaError(f"cannot read segment {path}: {describe_av_error(exc)}") from None
        try:
            stream = container.streams.video[0]
            tb = Fraction(stream.time_base or time_base)
            shift = round(Fraction(seg.offset) * time_base / tb)  # exact: tb refines it
            count = 0
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                count += 1
                if packet.pts is not None:
                    packet.pts += shift
                if packet.dts is not None:
                    packet.dts += shift
                    dts = Fraction(packet.dts) * tb
                    if last_dts is not None and dts <= last_dts:
                        # A segment's first dts can fall on the previous one's last with
                        # variable frame rate: one tick later is still before its pts.
                        fixed = math.floor(last_dts / tb) + 1
                        if packet.pts is not None and fixed > packet.pts:
                            raise MediaError(
                                f"segment {seg.file}: packet dts {packet.dts} cannot follow "
                                "the previous segment"
                            )
                        packet.dts = fixed
                        dts = Fraction(fixed) * tb
                    last_dts = dts
                yield packet
            if count != seg.frames:
                raise MediaError(
                    f"segment {seg.file} holds {count} frames, the manifest says {seg.frames}",
                    hint=f"remove {work} and run again",
                )
        finally:
            container.close()


def _source_packets(path: Path, *, audio: bool) -> Iterator[Packet]:
    """The source's audio (if ``audio``) and subtitle packets in demux order, as the
    reader gives them."""
    container = open_input(path)
    try:
        streams = list(container.streams.subtitles)
        if audio:
            streams += list(container.streams.audio)
        if not streams:
            return
        for packet in container.demux(streams):
            if packet.size == 0:
                continue
            yield Packet.from_av(packet)
    finally:
        with contextlib.suppress(av.error.FFmpegError, OSError):
            container.close()


def _when(ts: int | None, tb: Fraction, last: Fraction) -> Fraction:
    return last if ts is None else Fraction(ts) * tb


def _join(job: Job, work: Path, manifest: _Manifest) -> tuple[int, int]:
    """Stream-copy the segments plus the source's audio/subtitles into ``job.out_path``;
    return (video packets, other packets) written."""
    cfg = job.cfg
    first = work / manifest.segments[0].file
    with av.open(str(first)) as tmpl:
        writer = _writer(job, job.out_path, audio=cfg.audio, video_template=tmpl.streams.video[0])
    try:

        def keyed_video() -> Iterator[tuple[Fraction, int, Any]]:
            last = Fraction(-(10**9))
            for p in _video_packets(work, manifest, job.info.video.time_base):
                last = _when(p.dts if p.dts is not None else p.pts, p.time_base, last)
                yield last, 0, p

        def keyed_other() -> Iterator[tuple[Fraction, int, Any]]:
            last = Fraction(-(10**9))
            for p in _source_packets(cfg.input, audio=cfg.audio):
                last = _when(p.dts if p.dts is not None else p.pts, p.time_base, last)
                yield last, 1, p

        video = others = 0
        for _, kind, item in heapq.merge(keyed_video(), keyed_other(), key=lambda t: t[:2]):
            if kind == 0:
                writer.write_video_packet(item)
                video += 1
            else:
                writer.write_packet(item)
                others += 1
        writer.close()
    finally:
        writer.abort()  # no-op after a successful close
    return video, others


# -- the run -------------------------------------------------------------------------------


def run_segmented(
    cfg: RunConfig,
    *,
    work_dir: Path | None = None,
    segment_seconds: float = 10.0,
    progress: Callable[[int], None] | None = None,
    fault: str | None = None,
    prepared: Job | None = None,
) -> SegmentedRunReport:
    """Upscale ``cfg.input`` into ``cfg.resolved_output()`` in resumable segments.

    ``work_dir`` holds the segments and ``manifest.json`` (default:
    :func:`default_work_dir`); a matching manifest there is continued. ``progress`` gets
    the number of frames done (the kept ones first, in one call). ``fault`` names a stage
    to fail on purpose (tests): ``reader``, ``model``, or ``writer`` (in the second
    segment this run writes). ``prepared``: ``prepare(cfg)`` already done by the caller.

    Raises what ``engine.run`` raises: UsageError etc. before anything is written,
    StageError (the segment being written is removed; finished ones and the manifest
    stay), Interrupted (likewise: run again to continue), MediaError from the join (no
    output appears; the work directory stays).
    """
    if not segment_seconds > 0:
        raise UsageError(f"segment length must be positive, got {segment_seconds}")
    job = prepared if prepared is not None else prepare(cfg)
    out_path = job.out_path
    work = Path(work_dir) if work_dir is not None else default_work_dir(out_path)
    container = segment_suffix(out_path, resolve_codec(cfg.codec, device=_device(cfg)))
    work.mkdir(parents=True, exist_ok=True)
    with _locked(work):
        manifest = _load(work, _input_identity(cfg.input), params_hash(cfg, container), container)
        resumed_segments, resumed_frames = len(manifest.segments), manifest.frames
        if resumed_segments:
            log.info(
                "%s: resuming after %d segment(s) (%d frames)%s",
                work,
                resumed_segments,
                resumed_frames,
                "; all frames done, joining" if manifest.complete else "",
            )
        if progress is not None and resumed_frames:
            progress(resumed_frames)
        t0 = time.perf_counter()
        counts = {"reader": 0, "model": 0, "writer": 0, "packets": 0}
        runner: Runner | None = None
        if not manifest.complete:
            try:
                runner = _encode(job, work, manifest, segment_seconds, counts, progress, fault)
            except BaseException:
                if not manifest.segments:  # nothing to resume: leave no work directory
                    shutil.rmtree(work, ignore_errors=True)
                raise
        encode_seconds = time.perf_counter() - t0
        try:
            frames_out, counts["packets"] = _join(job, work, manifest)
        except KeyboardInterrupt:
            raise Interrupted(
                "interrupted", hint=f"the segments are kept in {work}: run again to resume"
            ) from None
        seconds = time.perf_counter() - t0
    shutil.rmtree(work, ignore_errors=True)
    total = manifest.frames
    if job.info.video.frame_count is not None and total != job.info.video.frame_count:
        log.warning(
            "%s: wrote %d frames, the input header says %d",
            out_path.name,
            total,
            job.info.video.frame_count,
        )
    video = job.info.video
    stages: dict[str, dict[str, float]] = {}
    if runner is not None:
        stages = {
            s.name: {
                "busy_seconds": round(s.busy, 3),
                "busy_fraction": round(s.busy / encode_seconds, 3) if encode_seconds else 0.0,
            }
            for s in runner.stages
        }
    return SegmentedRunReport(
        input=str(cfg.input),
        output=str(out_path),
        model=cfg.model,
        scale=cfg.scale,
        weights=job.model.source,
        device=", ".join(b.description for b in job.backends),
        input_size=(video.width, video.height),
        output_size=job.out_size,
        frames_in=total,
        frames_out=frames_out,
        packets=counts["packets"],
        seconds=round(seconds, 3),
        fps=round(counts["writer"] / seconds, 2) if seconds > 0 else 0.0,
        bottleneck=runner.bottleneck() if runner is not None else None,
        stages=stages,
        segments=len(manifest.segments),
        resumed_segments=resumed_segments,
        resumed_frames=resumed_frames,
        work_dir=str(work),
    )


def _device(cfg: RunConfig) -> str:
    return cfg.devices[0] if cfg.devices else cfg.device


def _writer(job: Job, output: Path, **extra: Any) -> Writer:
    """A Writer with the run's size and encoder settings (``extra``: audio, subtitles,
    video_template)."""
    cfg = job.cfg
    return Writer(
        output=output,
        source=job.info,
        source_path=cfg.input,
        width=job.out_size[0],
        height=job.out_size[1],
        codec=cfg.codec,
        crf=cfg.crf,
        preset=cfg.preset,
        pix_fmt=cfg.pix_fmt,
        device=_device(cfg),
        **extra,
    )


def _encode(
    job: Job,
    work: Path,
    manifest: _Manifest,
    segment_seconds: float,
    counts: dict[str, int],
    progress: Callable[[int], None] | None,
    fault: str | None,
) -> Runner:
    """Decode from the first frame not in ``manifest``, upscale, and write segments,
    recording each in the manifest; at the end mark it complete."""
    cfg = job.cfg
    video = job.info.video
    rate = video.frame_rate or Fraction(25)
    runner = Runner()
    decoded = runner.channel(cfg.queue_size)
    upscaled = runner.channel(cfg.queue_size)
    last = manifest.segments[-1] if manifest.segments else None
    skip = last.last_frame + 1 if last is not None else 0
    after_pts = last.last_pts if last is not None else None

    def inject(stage: str) -> None:
        if fault == stage:
            raise RuntimeError(f"injected fault in the {stage} stage")

    def reader_stage() -> None:
        for frame in _frames_after(cfg.input, job, after_pts=after_pts, skip=skip):
            counts["reader"] += 1
            if counts["reader"] == 2:
                inject("reader")
            decoded.put(frame)
        decoded.close()

    def writer_stage() -> None:
        seg_writer = _SegmentWriter(job, work, manifest, rate)
        try:
            for frame in upscaled:
                seg_writer.write(frame, segment_seconds)
                counts["writer"] += 1
                if seg_writer.opened == 2 and seg_writer.current_frames == 2:
                    inject("writer")
                if progress is not None:
                    progress(1)
            if counts["writer"] != counts["reader"]:
                raise MediaError(
                    f"frame count mismatch: read {counts['reader']}, wrote {counts['writer']}"
                )
            seg_writer.finish()
            manifest.complete = True
            _save_manifest(work, manifest)
        finally:
            seg_writer.abort()  # the partial segment, if any

    runner.add("reader", reader_stage, outputs=[decoded])
    add_model_stage(runner, job, decoded, upscaled, counts, inject)
    runner.add("writer", writer_stage, inputs=[upscaled])
    try:
        runner.run()
    except Interrupted:
        raise Interrupted(
            "interrupted", hint=f"finished segments are kept in {work}: run again to resume"
        ) from None
    except StageError as exc:
        if isinstance(exc.cause, KeyboardInterrupt):
            raise Interrupted(
                "interrupted", hint=f"finished segments are kept in {work}: run again to resume"
            ) from exc
        raise
    return runner


class _SegmentWriter:
    """Writes upscaled frames into segment files, one encoder and container each; records
    every finished segment in the manifest. Used by the writer thread only."""

    def __init__(self, job: Job, work: Path, manifest: _Manifest, rate: Fraction) -> None:
        self.job = job
        self.work = work
        self.manifest = manifest
        self.rate = rate
        self.time_base = job.info.video.time_base
        self.writer: Writer | None = None
        self.part: Path | None = None
        self.final: Path | None = None
        self.first: Frame | None = None
        self.last: Frame | None = None
        self.current_frames = 0
        self.opened = 0  # segments started by this run
        self.offset = 0
        last = manifest.segments[-1] if manifest.segments else None
        self.prev_pts: int | None = last.last_pts if last is not None else None

    def _due(self, frame: Frame, segment_seconds: float) -> bool:
        """Whether ``frame`` starts a new segment."""
        if self.writer is None:
            return True
        assert self.first is not None
        if frame.pts is not None and self.first.pts is not None:
            elapsed = Fraction(frame.pts - self.first.pts) * self.time_base
        else:
            elapsed = Fraction(self.current_frames) / self.rate
        return elapsed >= Fraction(segment_seconds)

    def write(self, frame: Frame, segment_seconds: float) -> None:
        pts = frame.pts
        if pts is None:  # as the Writer would number it
            step = max(1, round(1 / (self.rate * self.time_base)))
            pts = 0 if self.prev_pts is None else self.prev_pts + step
        if self._due(frame, segment_seconds):
            self.finish()
            self._open()
            self.offset = pts
        assert self.writer is not None
        tb, planes = frame.time_base, frame.planes
        self.writer.write_frame(Frame(frame.index, pts - self.offset, tb, planes, frame.pix_fmt))
        self.prev_pts = pts
        if self.first is None:
            self.first = frame
        self.last = frame
        self.current_frames += 1

    def _open(self) -> None:
        job = self.job
        index = len(self.manifest.segments)
        name = f"seg_{index:05d}{self.manifest.container}"
        self.final = self.work / name
        self.part = self.work / f"part_{index:05d}{self.manifest.container}"
        self.writer = _writer(job, self.part, audio=False, subtitles=False)
        self.first = self.last = None
        self.current_frames = 0
        self.opened += 1

    def finish(self) -> None:
        """Close the current segment, fsync it, rename it into place, record it."""
        if self.writer is None:
            return
        assert self.part is not None and self.final is not None
        assert self.first is not None and self.last is not None
        self.writer.close()  # its temp file -> self.part
        self.writer = None
        replace_durably(self.part, self.final)
        self.manifest.segments.append(
            _Segment(
                index=len(self.manifest.segments),
                file=self.final.name,
                first_frame=self.first.index,
                last_frame=self.last.index,
                first_pts=self.first.pts,
                last_pts=self.last.pts,
                frames=self.current_frames,
                size=self.final.stat().st_size,
                offset=self.offset,
            )
        )
        _save_manifest(self.work, self.manifest)
        self.part = None

    def abort(self) -> None:
        """Drop the segment being written (its temp file and part file). Idempotent."""
        if self.writer is not None:
            self.writer.abort()
            self.writer = None
        if self.part is not None:
            with contextlib.suppress(OSError):
                self.part.unlink(missing_ok=True)
            self.part = None
