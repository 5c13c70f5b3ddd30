"""What ``vsr stream`` is asked to do (``StreamConfig``) and the model stage it builds
(``make_upscaler``), apart from the engine so that ``vsr.live.auto`` (which calibrates
candidate models) and ``vsr.live.stream`` both use them without importing each other."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol

from vsr.media.frame import Frame

__all__ = ["StreamConfig", "Upscaler", "make_upscaler"]


class Upscaler(Protocol):
    scale: int

    def upscale(self, frames: list[Frame]) -> list[Frame]: ...


@dataclass(frozen=True)
class StreamConfig:
    source: str
    sinks: tuple[str, ...] = ()
    show: bool = False
    model: str = "espcn"
    scale: int = 2
    device: str = "auto"
    duration: float | None = None
    max_latency_ms: float = 1000.0
    keep_all: bool = False
    queue_size: int | None = None  # default: the frames of --max-latency, 4..64
    realtime: bool = False
    input_size: tuple[int, int] | None = None
    input_fps: float | None = None
    reconnect: int = 5
    backoff: float = 0.5
    timeout: float = 3.0
    audio: bool = True
    codec: str = "libx264"
    crf: int | None = None
    overwrite: bool = False
    threads: int | None = None  # torch CPU threads (default: half the cores)
    target_fps: float | None = None  # with model "auto"


def make_upscaler(cfg: StreamConfig) -> Upscaler:
    from vsr.backends.torch_backend import TorchBackend
    from vsr.models.registry import load_model

    model = load_model(cfg.model, cfg.scale)
    # Capture (decode) and the sinks (encode) need cores too: on the CPU the model gets
    # half of them by default (all of them made a 64x48 bicubic frame 200x slower here,
    # 212 ms against 0.9 ms, on a 2-core machine that was also busy).
    threads = cfg.threads or max(1, (os.cpu_count() or 1) // 2)
    return TorchBackend(model, device=cfg.device, threads=threads)
