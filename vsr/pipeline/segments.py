"""Resumable runs: the upscaled video in keyframe-aligned segments, joined at the end.

``run_segmented(cfg)`` does what ``engine.run(cfg)`` does with the same parts (the
:class:`~vsr.media.reader.Reader` source, resumed with ``frames_after``; the model stage;
the runner), but its sink, :class:`SegmentWriter`, encodes the video into segments of
about ``segment_seconds`` in a work directory (default: the hidden sibling
``.<output name>.vsr-parts/``), each with a new encoder and container, so every segment
starts with a keyframe (IDR). A finished segment is closed, fsynced and renamed
into place, and only then recorded in ``manifest.json`` (written atomically;
``vsr.pipeline.manifest``). A crash or Ctrl-C therefore loses at most the segment being
written.

Started again with a manifest for the same input (path, size, mtime) and the same
output-affecting parameters, the run keeps the recorded segments, deletes anything else
in the work directory (the segment that was being written), seeks the input to the
keyframe at or before the last recorded frame, decodes and discards frames up to and
including that frame (matched by pts, exactly) and goes on from the next one. A manifest
for another input or other parameters is discarded (one warning) and the run starts over.

At the end the segments' video packets are joined by stream copy (no re-encode;
``vsr.pipeline.join``) with the source's audio and subtitles into the output, through the
ordinary
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
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

from vsr.config import RunConfig
from vsr.errors import Interrupted, MediaError, StageError, UsageError
from vsr.files import replace_durably
from vsr.media.codecs import resolve_codec
from vsr.media.frame import Frame
from vsr.media.reader import Reader
from vsr.media.writer import Writer
from vsr.pipeline.engine import Job, RunReport, prepare
from vsr.pipeline.join import join_segments
from vsr.pipeline.manifest import (
    Manifest,
    Segment,
    default_work_dir,
    input_identity,
    load_manifest,
    lock_work_dir,
    params_hash,
    save_manifest,
    segment_suffix,
)
from vsr.pipeline.runner import Runner
from vsr.pipeline.sink import sink_loop
from vsr.pipeline.tally import Tally

__all__ = ["SegmentWriter", "SegmentedRunReport", "run_segmented"]

log = logging.getLogger("vsr")


@dataclass
class SegmentedRunReport(RunReport):
    """A :class:`RunReport` plus the segments: how many, and how many were kept from an
    earlier run (``resumed_segments``, ``resumed_frames``). ``frames_in``/``frames_out``
    count the whole output; ``fps`` only the frames upscaled by this run."""

    segments: int = 0
    resumed_segments: int = 0
    resumed_frames: int = 0
    work_dir: str = ""

    def headline(self) -> str:
        text = super().headline()
        if self.resumed_segments:
            text += (
                f"; resumed: kept {self.resumed_segments} of {self.segments} segments "
                f"({self.resumed_frames} frames)"
            )
        return text


# -- the run -------------------------------------------------------------------------------


def run_segmented(
    cfg: RunConfig,
    *,
    work_dir: Path | None = None,
    segment_seconds: float = 10.0,
    progress: Callable[[int], None] | None = None,
    prepared: Job | None = None,
) -> SegmentedRunReport:
    """Upscale ``cfg.input`` into ``cfg.resolved_output()`` in resumable segments.

    ``work_dir`` holds the segments and ``manifest.json`` (default:
    :func:`default_work_dir`); a matching manifest there is continued. ``progress`` gets
    the number of frames done (the kept ones first, in one call). ``prepared``:
    ``prepare(cfg)`` already done by the caller.

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
    # job.codec: cfg.codec, or the output container's default (VP9 for WebM...): the
    # segments are encoded with what the output needs, and that is what the hash holds
    container = segment_suffix(out_path, resolve_codec(job.codec, device=_device(cfg)))
    params = params_hash(replace(cfg, codec=job.codec), container)
    work.mkdir(parents=True, exist_ok=True)
    with lock_work_dir(work):
        manifest = load_manifest(work, input_identity(cfg.input), params, container)
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
        tally = Tally()
        runner: Runner | None = None
        if not manifest.complete:
            try:
                runner = _encode(job, work, manifest, segment_seconds, tally, progress)
            except BaseException:
                if not manifest.segments:  # nothing to resume: leave no work directory
                    shutil.rmtree(work, ignore_errors=True)
                raise
        encode_seconds = time.perf_counter() - t0
        try:
            frames_out, tally.packets, fidelity = join_segments(job, work, manifest)
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
    return job.report(
        SegmentedRunReport,
        frames_in=total,
        frames_out=frames_out,
        packets=tally.packets,
        seconds=seconds,
        fps_frames=tally.writer,
        runner=runner,
        segments=len(manifest.segments),
        resumed_segments=resumed_segments,
        resumed_frames=resumed_frames,
        work_dir=str(work),
        fidelity=fidelity.to_dict(),
        stage_seconds=encode_seconds,  # busy fractions of the encoding, not of the join
    )


def _device(cfg: RunConfig) -> str:
    return cfg.inference.first_device


def _encode(
    job: Job,
    work: Path,
    manifest: Manifest,
    segment_seconds: float,
    tally: Tally,
    progress: Callable[[int], None] | None,
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

    def reader_stage() -> None:
        with Reader(
            cfg.input,
            info=job.info,
            audio=False,
            subtitles=False,
            data=False,
            deinterlace=cfg.deinterlace,
        ) as reader:
            for frame in reader.frames_after(skip, after_pts):
                tally.read()
                decoded.put(frame)
        decoded.close()

    def writer_stage() -> None:
        sink = SegmentWriter(job, work, manifest, rate, segment_seconds)
        sink_loop(upscaled, sink, tally, progress)

    runner.add("reader", reader_stage, outputs=[decoded])
    job.add_model_stage(runner, decoded, upscaled, tally)
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


class SegmentWriter:
    """The sink of ``vsr run --resume``: writes upscaled frames into segment files of about
    ``segment_seconds``, one encoder and container each (a :class:`Writer` without audio),
    and records every finished segment in the manifest; :meth:`close` marks the manifest
    complete. Used by the writer thread only."""

    def __init__(
        self,
        job: Job,
        work: Path,
        manifest: Manifest,
        rate: Fraction,
        segment_seconds: float,
    ) -> None:
        self.job = job
        self.work = work
        self.manifest = manifest
        self.rate = rate
        self.segment_seconds = segment_seconds
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

    def position(self) -> dict[str, int]:
        """Where writing is: segments opened by this run, frames in the current one."""
        return {"segment": self.opened, "in_segment": self.current_frames}

    def write_packet(self, packet: object) -> None:
        raise MediaError("segments hold video only; audio and subtitles are joined at the end")

    def close(self) -> None:
        """Finish the last segment and mark the manifest complete."""
        self.finish()
        self.manifest.complete = True
        save_manifest(self.work, self.manifest)

    def write_frame(self, frame: Frame) -> None:
        segment_seconds = self.segment_seconds
        pts = frame.pts
        if pts is None:  # as the Writer would number it
            step = max(1, round(1 / (self.rate * self.time_base)))
            pts = 0 if self.prev_pts is None else self.prev_pts + step
        if self._due(frame, segment_seconds):
            self.finish()
            self._open()
            self.offset = pts
        assert self.writer is not None
        self.writer.write_frame(replace(frame, pts=pts - self.offset))  # captions kept
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
        self.writer = job.writer(
            self.part, audio=False, subtitles=False, extras=False, codec=job.codec
        )
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
            Segment(
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
        save_manifest(self.work, self.manifest)
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
