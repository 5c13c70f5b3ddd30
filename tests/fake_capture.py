"""A stand-in for a V4L2 camera: an ``opener`` for :class:`vsr.live.source.AvSource`
(which otherwise calls ``av.open``). Moved here from ``vsr/live/source.py``: only the
tests use it, through ``AvSource(..., opener=FakeCapture(...))``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import av
import numpy as np


class FakeCapture:
    """A stand-in for a V4L2 camera (tests and demos): ``opener`` for :class:`AvSource`.

    ``FakeCapture(64, 48, fps=30, frames=90)("/dev/video0", format="v4l2", ...)`` returns
    a container-like object whose demux yields raw ``yuyv422`` packets at ``fps`` real
    time, the way a webcam delivers them; ``calls`` records every open.
    """

    def __init__(self, width: int, height: int, *, fps: float = 30.0, frames: int = 90) -> None:
        self.width, self.height, self.fps, self.frames = width, height, fps, frames
        self.calls: list[tuple[Any, dict[str, Any]]] = []

    def __call__(self, target: Any, **kwargs: Any) -> Any:
        self.calls.append((target, kwargs))
        return _FakeContainer(self)


class _FakeStreams:
    def __init__(self, video: Any) -> None:
        self.video = [video]
        self.audio: list[Any] = []


class _FakeContainer:
    def __init__(self, cap: FakeCapture) -> None:
        self.cap = cap
        rate = Fraction(cap.fps).limit_denominator(1001)
        self._stream = _FakeVideoStream(rate)
        self.streams = _FakeStreams(self._stream)

    def demux(self, streams: list[Any]) -> Iterator[Any]:
        t0 = time.monotonic()
        for i in range(self.cap.frames):
            delay = t0 + i / self.cap.fps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            yield _FakePacket(self._stream, i, self.cap)

    def close(self) -> None:
        pass


class _FakeVideoStream:
    def __init__(self, rate: Fraction) -> None:
        self.index = 0
        self.average_rate = rate
        self.guessed_rate = rate
        self.time_base = 1 / rate
        self.thread_type = "AUTO"

        class _Ctx:
            pix_fmt = "yuyv422"

        self.codec_context = _Ctx()


class _FakePacket:
    def __init__(self, stream: _FakeVideoStream, i: int, cap: FakeCapture) -> None:
        self.stream = stream
        self.stream_index = 0
        self.size = cap.width * cap.height * 2
        self._i, self._cap = i, cap

    def decode(self) -> list[Any]:
        w, h = self._cap.width, self._cap.height
        rgb = np.zeros((h, w, 3), dtype=np.uint8)
        rgb[..., 0] = (np.arange(w) * 4 + self._i * 3) % 256
        rgb[..., 1] = (np.arange(h)[:, None] * 5) % 256
        rgb[..., 2] = 128
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuyv422")
        frame.pts = self._i
        frame.time_base = self.stream.time_base
        return [frame]
