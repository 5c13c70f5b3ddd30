"""The end of ``vsr run --resume``: the segments' video joined by stream copy (no
re-encode) with the source's audio and subtitles, through the ordinary
:class:`~vsr.media.writer.Writer` (``video_template``): the same container, time base,
timestamps, colour tags, rotation, tags and chapters as ``vsr run``; temp file, atomic
rename."""

from __future__ import annotations

import contextlib
import heapq
import math
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error

from vsr.errors import MediaError
from vsr.media.decode import Packet
from vsr.media.fidelity import Fidelity
from vsr.media.probe import describe_av_error, open_input
from vsr.pipeline.engine import Job
from vsr.pipeline.manifest import Manifest

__all__ = ["join_segments"]


def _video_packets(work: Path, manifest: Manifest, time_base: Fraction) -> Iterator[Any]:
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
    """The source's audio (if ``audio``), subtitle and data packets in demux order, as
    the reader gives them."""
    container = open_input(path)
    try:
        streams = list(container.streams.subtitles) + list(container.streams.data)
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


def join_segments(job: Job, work: Path, manifest: Manifest) -> tuple[int, int, Fidelity]:
    """Stream-copy the segments plus the source's audio/subtitles into ``job.out_path``;
    return (video packets, other packets) written."""
    cfg = job.cfg
    first = work / manifest.segments[0].file
    with av.open(str(first)) as tmpl:
        writer = job.writer(job.out_path, video_template=tmpl.streams.video[0])
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
    return video, others, writer.fidelity
