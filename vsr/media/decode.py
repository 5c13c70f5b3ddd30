"""The one demux + decode loop, and PyAV objects turned into plain data.

Every input mode reads through :func:`demux_decode`: files for ``vsr run`` and ``vsr
batch`` (:meth:`vsr.media.reader.Reader.items`), the resume of ``vsr run --resume``
(:meth:`vsr.media.reader.Reader.frames_after`) and live sources for ``vsr stream``
(:class:`vsr.live.source.AvSource`). The loop owns the error handling they share (size-0
packets skipped, decode errors counted, giving up after :data:`MAX_CONSECUTIVE_ERRORS` in
a row, a demux error recorded, the video decoder flushed once at the end); :class:`PtsRule`
is the one rule for a frame's pts when the decoder gives none.

The loop yields PyAV frames to its caller in the same thread; the callers convert them
with :func:`frame_from_av` (or, for live audio, resample them) before anything crosses a
thread, and non-video packets leave as plain-data :class:`Packet`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import av.error
import numpy as np

from vsr.media.frame import PLANAR_FORMATS, Frame

__all__ = [
    "MAX_CONSECUTIVE_ERRORS",
    "DecodeStats",
    "Packet",
    "PtsRule",
    "demux_decode",
    "frame_from_av",
    "planar_format",
    "stream_pts",
]

#: Decode errors tolerated in a row before the reader gives up on the rest of the file.
MAX_CONSECUTIVE_ERRORS = 100

# Full-range ("JPEG") aliases FFmpeg's decoders still output for 8-bit full-range video.
_JPEG_FORMATS = {"yuvj420p": "yuv420p", "yuvj422p": "yuv422p", "yuvj444p": "yuv444p"}

#: What PyAV raises for a packet it cannot decode.
_DECODE_ERRORS = (av.error.FFmpegError, ValueError)


@dataclass(slots=True)
class Packet:
    """One demuxed audio or subtitle packet, as plain data (safe to pass between threads).

    ``stream_index`` is the stream's index in the *input* container; timestamps are in
    ``time_base`` (the input stream's) and are ``None`` when the container gave none.
    """

    stream_index: int
    data: bytes
    pts: int | None
    dts: int | None
    duration: int | None
    time_base: Fraction
    is_keyframe: bool = True

    @classmethod
    def from_av(cls, packet: Any) -> Packet:
        """Copy a PyAV packet's data and timing out of PyAV."""
        return cls(
            stream_index=packet.stream_index,
            data=bytes(packet),
            pts=packet.pts,
            dts=packet.dts,
            duration=packet.duration,
            time_base=packet.time_base,
            is_keyframe=bool(packet.is_keyframe),
        )


def planar_format(pix_fmt: str) -> str:
    """The :data:`PLANAR_FORMATS` name the reader delivers for a decoder format.

    ``yuvj*`` map to their ``yuv*`` twin (the range is a colour tag, see
    :class:`~vsr.media.frame.ColorInfo`); other formats become ``yuv420p`` when 8-bit and
    ``yuv420p10le`` when deeper.
    """
    if pix_fmt in PLANAR_FORMATS:
        return pix_fmt
    if pix_fmt in _JPEG_FORMATS:
        return _JPEG_FORMATS[pix_fmt]
    try:
        depth = max(int(c.bits) for c in av.VideoFormat(pix_fmt).components)
    except (ValueError, TypeError):
        depth = 8
    return "yuv420p10le" if depth > 8 else "yuv420p"


def _plane_array(plane: Any, dtype: type[np.generic]) -> np.ndarray:
    """Copy one plane out of an av frame, dropping the line padding."""
    itemsize = np.dtype(dtype).itemsize
    rows = np.frombuffer(plane, dtype=dtype)
    rows = rows[: plane.height * (plane.line_size // itemsize)]
    rows = rows.reshape(plane.height, plane.line_size // itemsize)
    return np.ascontiguousarray(rows[:, : plane.width])


def frame_from_av(av_frame: Any, *, index: int, pts: int | None, time_base: Fraction) -> Frame:
    """Convert a decoded ``av.VideoFrame`` into a :class:`Frame` (copies the pixels).

    Formats outside :data:`PLANAR_FORMATS` are converted with swscale first
    (see :func:`planar_format`).
    """
    name = av_frame.format.name
    target = planar_format(name)
    if name != target and name not in _JPEG_FORMATS:
        av_frame = av_frame.reformat(format=target)
    dtype = np.uint16 if PLANAR_FORMATS[target][0] > 8 else np.uint8
    y, u, v = (_plane_array(av_frame.planes[i], dtype) for i in range(3))
    return Frame(index=index, pts=pts, time_base=time_base, planes=(y, u, v), pix_fmt=target)


def stream_pts(av_frame: Any) -> int | None:
    """The frame's pts, else its dts (PyAV 18 has no best_effort_timestamp)."""
    pts: int | None = av_frame.pts
    return pts if pts is not None else av_frame.dts


class PtsRule:
    """The pts of each decoded frame of one stream, in decode-output order.

    The frame's pts, else its dts, else the previous frame's pts plus one frame step
    (``1 / rate`` in ``time_base``, at least one tick); ``None`` when none of these is
    known (no timestamp yet, or no frame rate).
    """

    def __init__(self, rate: Fraction | None, time_base: Fraction) -> None:
        self.rate = rate
        self.time_base = time_base
        self.last: int | None = None

    def next(self, av_frame: Any) -> int | None:
        """The pts for ``av_frame`` (the next frame the decoder released)."""
        pts = stream_pts(av_frame)
        if pts is None and self.last is not None and self.rate:
            pts = self.last + max(1, round(1 / (self.rate * self.time_base)))
        if pts is not None:
            self.last = pts
        return pts


@dataclass(slots=True)
class DecodeStats:
    """What :func:`demux_decode` met on the way (read it once the loop has ended)."""

    errors: int = 0  # packets (and the final flush) that failed to decode
    last_error: BaseException | None = None  # the last decode error
    demux_error: BaseException | None = None  # the error that ended demuxing, if any
    ended: bool = False  # the demuxer reached the end of the data
    packets: int = 0  # non-video packets passed through (``decode_others=False``)


def demux_decode(
    container: Any,
    streams: list[Any],
    video: Any,
    stats: DecodeStats,
    *,
    decode_others: bool = False,
    stop: threading.Event | None = None,
    max_errors: int | None = MAX_CONSECUTIVE_ERRORS,
    on_error: Callable[[BaseException], None] | None = None,
) -> Generator[tuple[bool, Any], None, None]:
    """Demux ``streams`` of an open PyAV ``container`` and decode ``video``.

    Yields ``(is_video, item)`` in demux order: for ``video``, each ``av.VideoFrame`` as
    the decoder releases it; for the other streams, a plain-data :class:`Packet` per
    packet, or with ``decode_others`` each frame their decoder releases. Size-0 packets
    (PyAV's end-of-stream flush packets) are skipped; a packet that fails to decode is
    counted in ``stats`` (and given to ``on_error``) and skipped; after ``max_errors``
    failures in a row (``None``: never) the loop gives up. A demux error ends the loop and
    is recorded in ``stats.demux_error``; the end of the data sets ``stats.ended``. Unless
    ``stop`` was set (checked before every packet; then the loop returns at once), the
    video decoder is flushed once at the end and its last frames are yielded.

    The items are PyAV objects: convert them in the calling thread.
    """
    vindex = video.index
    wanted = {s.index for s in streams}
    consecutive = 0
    demux = container.demux(streams)
    while stop is None or not stop.is_set():
        try:
            packet = next(demux)
        except StopIteration:
            stats.ended = True
            break
        except (av.error.FFmpegError, OSError) as exc:
            stats.demux_error = exc
            break
        if packet.stream_index not in wanted or packet.size == 0:
            continue  # PyAV's end-of-stream flush packets: we flush once below
        is_video = packet.stream_index == vindex
        if not is_video and not decode_others:
            stats.packets += 1
            yield False, Packet.from_av(packet)
            continue
        try:
            decoded = packet.decode()
        except _DECODE_ERRORS as exc:
            stats.errors += 1
            stats.last_error = exc
            if on_error is not None:
                on_error(exc)
            consecutive += 1
            if max_errors is not None and consecutive >= max_errors:
                break
            continue
        consecutive = 0
        for av_frame in decoded:
            yield is_video, av_frame
    if stop is not None and stop.is_set():
        return
    try:
        flushed = video.decode(None)
    except _DECODE_ERRORS as exc:
        stats.errors += 1
        stats.last_error = exc
        flushed = []
    except AttributeError:  # a stand-in stream without a decoder (tests): nothing to flush
        flushed = []
    for av_frame in flushed:
        yield True, av_frame
