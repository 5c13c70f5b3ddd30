"""Live capture: files at their real rate, URLs, V4L2 cameras, pipes; reconnect with backoff.

A source runs in one thread and yields plain data (no PyAV object leaves it):
:class:`SourceInfo` after each (re)connection, :class:`LiveFrame` for each decoded video
frame and :class:`AudioChunk` for decoded audio (float planar). Timestamps are put on one
timeline that keeps increasing across reconnections: video pts in ``TIME_BASE`` ticks,
audio in seconds.
"""

from __future__ import annotations

import functools
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import av.error
import numpy as np

from vsr.errors import InputNotFoundError, MediaError, UsageError
from vsr.media.decode import DecodeStats, demux_decode, frame_from_av, stream_pts
from vsr.media.frame import Frame
from vsr.media.probe import describe_av_error, is_url

__all__ = [
    "TIME_BASE",
    "AudioChunk",
    "AvSource",
    "LiveFrame",
    "SourceInfo",
    "source_kind",
]

log = logging.getLogger("vsr")

#: Time base of the live timeline (MPEG-TS's own).
TIME_BASE = Fraction(1, 90000)
URL_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "srt", "udp", "rtp", "tcp", "http", "https")


@dataclass(slots=True)
class SourceInfo:
    width: int
    height: int
    pix_fmt: str
    frame_rate: Fraction | None
    audio_rate: int | None  # None: no audio
    audio_layout: str | None
    name: str


@dataclass(slots=True)
class LiveFrame:
    frame: Frame  # pts in TIME_BASE on the live timeline
    captured: float  # time.monotonic() when it was decoded


@dataclass(slots=True)
class AudioChunk:
    data: np.ndarray  # float32, (channels, samples)
    rate: int
    layout: str
    start: float  # seconds on the live timeline


def missing_protocol(target: str) -> UsageError:
    """The error for a URL whose protocol this FFmpeg build lacks (PyAV's wheels have no
    ``srt``, for one): retrying cannot help, so it is a usage error, not a lost source."""
    scheme = target.split("://", 1)[0].lower()
    return UsageError(
        f"cannot open {target}: the FFmpeg inside PyAV was built without the {scheme} protocol",
        hint=f"relay {scheme} through another tool (e.g. to udp:// MPEG-TS), or install a "
        f"PyAV built against an FFmpeg with {scheme}",
    )


#: URL schemes that depend on an optional FFmpeg library (checked before anything opens).
OPTIONAL_PROTOCOLS = ("srt",)


@functools.cache
def protocol_available(scheme: str) -> bool:
    """Whether PyAV's FFmpeg has ``scheme`` (only for :data:`OPTIONAL_PROTOCOLS`: the test
    opens a connection to a closed local port, which fails at once either way)."""
    try:
        av.open(f"{scheme}://127.0.0.1:9", "r", timeout=0.2)
    except av.error.ProtocolNotFoundError:
        return False
    except Exception:  # noqa: BLE001 - refused, timed out: the protocol is there
        return True
    return True


def check_protocol(target: str) -> None:
    """Raise the one-line UsageError when ``target``'s protocol is missing from FFmpeg."""
    if "://" in target:
        scheme = target.split("://", 1)[0].lower()
        if scheme in OPTIONAL_PROTOCOLS and not protocol_available(scheme):
            raise missing_protocol(target)


def source_kind(name: str) -> str:
    """``"pipe"``, ``"v4l2"``, ``"url"`` or ``"file"``."""
    if name == "-":
        return "pipe"
    if name.startswith("/dev/video"):
        return "v4l2"
    if is_url(name):
        scheme = name.split("://", 1)[0].lower()
        if scheme not in URL_SCHEMES and scheme != "file":
            raise UsageError(
                f"unsupported stream URL scheme {scheme!r}",
                hint=f"use one of: {', '.join(URL_SCHEMES)}",
            )
        check_protocol(name)
        return "url"
    return "file"


class _Timeline:
    """Maps each connection's own timestamps onto one increasing timeline (seconds)."""

    def __init__(self) -> None:
        self.end = 0.0  # latest time seen on the timeline
        self.offset: float | None = None
        self.gap = 0.0

    def reconnect(self, gap: float) -> None:
        self.offset = None
        self.gap = gap

    def map(self, t: float) -> float:
        if self.offset is None:
            self.offset = self.end + (self.gap if self.end > 0 else 0.0) - t
        out = t + self.offset
        self.end = max(self.end, out)
        return out


class AvSource:
    """Capture from a file, URL, V4L2 device or stdin with PyAV.

    Args:
        name: path, URL, ``/dev/videoN`` or ``-``.
        realtime: pace a file at its own frame rate (a file is otherwise read as fast as
            it decodes); URLs and cameras are paced by the sender anyway.
        reconnect: tries after the source fails or ends (URLs and cameras; 0: none).
        backoff: first wait before a retry in seconds, doubled each try up to
            ``max_backoff``.
        input_size, input_fps: asked of a V4L2 camera (``video_size``, ``framerate``).
        timeout: seconds without data before a network read fails (then reconnect).
        opener: replaces ``av.open`` (tests: a fake capture device).
    """

    def __init__(
        self,
        name: str,
        *,
        realtime: bool = False,
        reconnect: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 5.0,
        input_size: tuple[int, int] | None = None,
        input_fps: float | None = None,
        timeout: float = 3.0,
        audio: bool = True,
        opener: Callable[..., Any] | None = None,
    ) -> None:
        self.name = name
        self.kind = source_kind(name)
        if self.kind == "file":
            from pathlib import Path

            if not Path(name).exists():
                raise InputNotFoundError(f"input not found: {name}")
        self.realtime = realtime
        self.reconnect = max(0, reconnect) if self.kind in ("url", "v4l2") else 0
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.input_size = input_size
        self.input_fps = input_fps
        self.timeout = timeout
        self.audio = audio
        self._open = opener or av.open
        self.reconnects = 0
        self.frames = 0
        self.lost = False  # reconnecting gave up
        self._ended_cleanly = False  # the last connection reached the end of its data

    def open_args(self) -> tuple[Any, dict[str, Any]]:
        """What is passed to ``av.open`` (target, keyword arguments)."""
        options: dict[str, str] = {}
        kwargs: dict[str, Any] = {"mode": "r"}
        target: Any = self.name
        if self.kind == "pipe":
            target = sys.stdin.buffer
        elif self.kind == "v4l2":
            kwargs["format"] = "v4l2"
            if self.input_size:
                options["video_size"] = f"{self.input_size[0]}x{self.input_size[1]}"
            if self.input_fps:
                options["framerate"] = f"{self.input_fps:g}"
        elif self.kind == "url":
            scheme = self.name.split("://", 1)[0].lower()
            micro = str(int(self.timeout * 1_000_000))
            if scheme in ("udp", "tcp", "rtp", "srt"):
                options["timeout"] = micro
            if scheme in ("rtsp", "rtsps"):
                options["rtsp_transport"] = "tcp"
                options["timeout"] = micro
            if scheme in ("http", "https", "rtmp", "rtmps"):
                options["rw_timeout"] = micro
            options["analyzeduration"] = "300000"
            options["probesize"] = "8192"
        kwargs["options"] = options
        if self.kind in ("url", "v4l2"):
            kwargs["timeout"] = (self.timeout, self.timeout)
        return target, kwargs

    def items(self, stop: threading.Event) -> Iterator[SourceInfo | LiveFrame | AudioChunk]:
        """Yield until the source ends (files), ``stop`` is set, or reconnecting gave up.

        Raises:
            MediaError: the source could not be opened (first time: at once; later: after
                ``reconnect`` tries).
        """
        timeline = _Timeline()
        tries = 0  # consecutive failed attempts (refused, or connected without a frame)
        connected_once = False
        last_frame = 0.0
        while not stop.is_set():
            try:
                container = self._open_container()
            except MediaError as exc:
                if tries >= self.reconnect:
                    if not connected_once:
                        raise
                    self._give_up(tries)
                    return
                tries += 1
                wait = min(self.max_backoff, self.backoff * 2 ** (tries - 1))
                log.warning(
                    "%s; retry %d/%d in %.1f s", exc.one_line(), tries, self.reconnect, wait
                )
                stop.wait(wait)
                continue
            got = 0
            try:
                if connected_once:
                    self.reconnects += 1
                    timeline.reconnect(gap=time.monotonic() - last_frame)
                connected_once = True
                for item in self._read(container, timeline, stop):
                    if isinstance(item, LiveFrame):
                        got += 1
                        tries = 0
                        last_frame = time.monotonic()
                    yield item
            finally:
                container.close()
            if stop.is_set() or self.kind in ("file", "pipe"):
                return
            if self._ended_cleanly and self.name.split("://", 1)[0].lower() in ("http", "https"):
                # HTTP/HLS: FFmpeg reloads a live playlist itself, so the end of the data
                # is the end of the stream (a VOD playlist would otherwise play again).
                return
            if got == 0:
                tries += 1
            if tries >= self.reconnect:
                self._give_up(tries)
                return
            wait = min(self.max_backoff, self.backoff * 2 ** max(0, tries - 1))
            log.warning("%s ended or dropped; reconnecting in %.1f s", self.name, wait)
            stop.wait(wait)

    def _give_up(self, tries: int) -> None:
        self.lost = True
        log.warning("%s is gone; gave up after %d tries", self.name, tries)

    def _open_container(self) -> Any:
        target, kwargs = self.open_args()
        try:
            return self._open(target, **kwargs)
        except av.error.ProtocolNotFoundError:
            raise missing_protocol(self.name) from None
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            if self.kind == "file" and isinstance(exc, FileNotFoundError):
                raise InputNotFoundError(f"input not found: {self.name}") from None
            raise MediaError(f"cannot open {self.name}: {describe_av_error(exc)}") from None

    def _read(
        self, container: Any, timeline: _Timeline, stop: threading.Event
    ) -> Iterator[SourceInfo | LiveFrame | AudioChunk]:
        if not container.streams.video:
            raise MediaError(f"{self.name} has no video stream")
        video = container.streams.video[0]
        video.thread_type = "AUTO"
        streams = [video]
        astream = None
        if self.audio and container.streams.audio:
            astream = container.streams.audio[0]
            streams.append(astream)
        vctx = video.codec_context
        rate = video.average_rate or video.guessed_rate
        arate = int(astream.codec_context.sample_rate) if astream is not None else None
        layout = None
        if astream is not None:
            lay = astream.codec_context.layout
            channels = len(lay.channels) if lay is not None else 2
            layout = "mono" if channels == 1 else "stereo"
        resampler = (
            av.AudioResampler(format="fltp", layout=layout, rate=arate)
            if astream is not None
            else None
        )
        info_sent = False
        pace_t0: float | None = None  # wall clock at the first frame (realtime files)
        pace_s0 = 0.0
        vtb = video.time_base
        stats = DecodeStats()
        self._ended_cleanly = False
        decoded = demux_decode(
            container,
            streams,
            video,
            stats,
            decode_others=True,
            stop=stop,
            max_errors=None,  # a live stream joined between keyframes fails for a while
            on_error=self._decode_error,
        )
        try:
            for is_video, av_frame in decoded:
                if is_video:
                    ts = stream_pts(av_frame)
                    t = float(ts * vtb) if ts is not None and vtb else time.monotonic()
                    if self.realtime:
                        if pace_t0 is None:
                            pace_t0, pace_s0 = time.monotonic(), t
                        delay = pace_t0 + (t - pace_s0) - time.monotonic()
                        if delay > 0 and stop.wait(delay):
                            return
                    if not info_sent:
                        info_sent = True
                        yield SourceInfo(
                            width=int(av_frame.width),
                            height=int(av_frame.height),
                            pix_fmt=str(vctx.pix_fmt or av_frame.format.name),
                            frame_rate=Fraction(rate) if rate else None,
                            audio_rate=arate,
                            audio_layout=layout,
                            name=self.name,
                        )
                    pts = round(timeline.map(t) / TIME_BASE)
                    frame = frame_from_av(av_frame, index=self.frames, pts=pts, time_base=TIME_BASE)
                    self.frames += 1
                    yield LiveFrame(frame, time.monotonic())
                elif resampler is not None and info_sent and arate and layout:
                    ts = av_frame.pts
                    tb = av_frame.time_base or Fraction(1, arate)
                    start = float(ts * tb) if ts is not None else timeline.end
                    mapped = timeline.map(start)
                    for out in resampler.resample(av_frame):
                        data = np.ascontiguousarray(out.to_ndarray(), dtype=np.float32)
                        yield AudioChunk(data, arate, layout, mapped)
                        mapped += data.shape[1] / arate
        finally:
            decoded.close()
            self._ended_cleanly = stats.ended  # the last connection reached its end
        if stats.demux_error is not None:
            log.info("%s: read failed: %s", self.name, describe_av_error(stats.demux_error))

    def _decode_error(self, exc: BaseException) -> None:
        log.debug("%s: decode error: %s", self.name, describe_av_error(exc))
