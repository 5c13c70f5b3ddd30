"""Demux and decode a media file into :class:`Frame` and :class:`Packet` objects.

A :class:`Reader` owns one PyAV input container and is used by exactly one thread.
What it yields is plain data (numpy arrays, bytes, ints, Fractions), so it can cross
thread boundaries; no PyAV object ever leaves this module.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error
import numpy as np

from vsr.errors import MediaError
from vsr.media.frame import PLANAR_FORMATS, Frame
from vsr.media.probe import MediaInfo, describe_av_error, is_url, open_input, probe

__all__ = ["Packet", "Reader", "frame_from_av", "planar_format"]

log = logging.getLogger("vsr")

# Full-range ("JPEG") aliases FFmpeg's decoders still output for 8-bit full-range video.
_JPEG_FORMATS = {"yuvj420p": "yuv420p", "yuvj422p": "yuv422p", "yuvj444p": "yuv444p"}

#: Decode errors tolerated in a row before the reader gives up on the rest of the file.
MAX_CONSECUTIVE_ERRORS = 100


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


class Reader:
    """Read one media file: video frames decoded, audio and subtitle packets as they are.

    Use as a context manager, or call :meth:`close`. :meth:`items` may be abandoned at
    any point (close the generator, then the reader).

    Args:
        path: file path or URL.
        threads: decoder threads (0 = FFmpeg chooses); threaded decoding is on.
        audio: yield audio packets.
        subtitles: yield subtitle packets.
        info: a :class:`MediaInfo` already probed for this path (saves a second probe).
        options: FFmpeg demuxer/protocol options (e.g. ``{"rtsp_transport": "tcp"}``).

    Raises:
        InputNotFoundError, MediaError: as :func:`~vsr.media.probe.probe`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        threads: int = 0,
        audio: bool = True,
        subtitles: bool = True,
        info: MediaInfo | None = None,
        options: dict[str, str] | None = None,
    ) -> None:
        self._closed = True
        self._container: Any = None
        self.path: str | Path = str(path) if is_url(path) else Path(path)
        self.info: MediaInfo = info if info is not None else probe(path)
        self._container = open_input(path, options=options)
        self._closed = False
        try:
            self._video = self._container.streams[self.info.video.index]
            self._video.thread_type = "AUTO"
            self._video.thread_count = max(0, int(threads))
            streams = [self._video]
            if audio:
                streams += list(self._container.streams.audio)
            if subtitles:
                streams += list(self._container.streams.subtitles)
            self._streams = streams
        except BaseException:
            self.close()
            raise
        self.frames_read = 0
        self.packets_read = 0
        self.decode_errors = 0
        self._started = False

    # -- properties the pipeline reports -------------------------------------------------

    @property
    def pix_fmt(self) -> str:
        """The :data:`PLANAR_FORMATS` format every yielded frame has."""
        return planar_format(self.info.video.pix_fmt)

    @property
    def time_base(self) -> Fraction:
        return self.info.video.time_base

    # -- reading ---------------------------------------------------------------------------

    def items(self) -> Iterator[Frame | Packet]:
        """Yield frames and packets in demux order (frames as the decoder releases them).

        Damaged input: every frame that decodes is yielded; then one warning on the
        ``"vsr"`` logger says how much was lost, and iteration ends normally.

        Single use: a reader reads its input once.

        Raises:
            MediaError: the reader is closed or already read, or not a single frame could
                be decoded.
        """
        if self._closed:
            raise MediaError(f"reader for {self.path} is closed")
        if self._started:
            raise MediaError(f"reader for {self.path} was already read; open a new one")
        self._started = True
        video = self._video
        vindex = video.index
        time_base = self.info.video.time_base
        wanted = {s.index for s in self._streams}
        demux_error: BaseException | None = None
        last_error: BaseException | None = None
        consecutive = 0
        last_pts: int | None = None
        rate = self.info.video.frame_rate

        def convert(av_frame: Any) -> Frame:
            nonlocal last_pts
            pts = av_frame.pts
            if pts is None:  # PyAV 18 has no best_effort_timestamp: use the packet dts
                pts = av_frame.dts
            if pts is None and last_pts is not None and rate:
                pts = last_pts + max(1, round(1 / (rate * time_base)))
            if pts is not None:
                last_pts = pts
            frame = frame_from_av(av_frame, index=self.frames_read, pts=pts, time_base=time_base)
            self.frames_read += 1
            return frame

        demuxer = self._container.demux(self._streams)
        while True:
            try:
                packet = next(demuxer)
            except StopIteration:
                break
            except (av.error.FFmpegError, OSError) as exc:
                demux_error = exc
                break
            if packet.stream_index not in wanted or packet.size == 0:
                continue  # PyAV's end-of-stream flush packets: we flush once below
            if packet.stream_index != vindex:
                self.packets_read += 1
                yield Packet.from_av(packet)
                continue
            try:
                decoded = video.decode(packet)
            except (av.error.FFmpegError, ValueError) as exc:
                self.decode_errors += 1
                last_error = exc
                consecutive += 1
                if consecutive >= MAX_CONSECUTIVE_ERRORS:
                    break
                continue
            consecutive = 0
            for av_frame in decoded:
                yield convert(av_frame)

        try:
            flushed = video.decode(None)
        except (av.error.FFmpegError, ValueError) as exc:
            self.decode_errors += 1
            last_error = exc
            flushed = []
        for av_frame in flushed:
            yield convert(av_frame)

        self._report_damage(demux_error or last_error)

    def frames(self) -> Iterator[Frame]:
        """Only the video frames of :meth:`items`."""
        for item in self.items():
            if isinstance(item, Frame):
                yield item

    def _report_damage(self, error: BaseException | None) -> None:
        name = str(self.path)
        if self.frames_read == 0:
            reason = f" ({describe_av_error(error)})" if error is not None else ""
            raise MediaError(
                f"cannot read {name}: no video frame could be decoded{reason}",
                hint="the file is damaged or incomplete",
            )
        vinfo = self.info.video
        expected = vinfo.frames_estimate
        lost = max(0, expected - self.frames_read) if expected is not None else 0
        # A count from duration x rate can be off by a frame or two on healthy files.
        exact = vinfo.frame_count is not None
        suspicious = lost > 0 if exact else lost > max(2, (expected or 0) // 100)
        if error is None and self.decode_errors == 0 and not suspicious:
            return
        parts = [f"{name}: input is damaged or truncated"]
        if expected is not None:
            approx = "" if exact else "~"
            parts.append(f"decoded {self.frames_read} of {approx}{expected} frames ({lost} lost)")
        else:
            parts.append(f"decoded {self.frames_read} frames")
        if self.decode_errors:
            parts.append(f"{self.decode_errors} packet(s) failed to decode")
        if error is not None:
            parts.append(f"last error: {describe_av_error(error)}")
        log.warning("; ".join(parts))

    # -- lifetime ----------------------------------------------------------------------------

    def close(self) -> None:
        """Release the container. Idempotent."""
        if self._closed or self._container is None:
            self._closed = True
            return
        self._closed = True
        with contextlib.suppress(av.error.FFmpegError, OSError):
            self._container.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # a reader dropped without close() still frees FFmpeg
        with contextlib.suppress(Exception):  # never raise from a finaliser
            self.close()
