"""What ``vsr stream`` is asked to do (``StreamConfig``) and the model stage it builds
(``make_upscaler``), apart from the engine so that ``vsr.live.auto`` (which calibrates
candidate models) and ``vsr.live.stream`` both use them without importing each other."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from vsr.backends.options import InferenceOptions
from vsr.media.frame import Frame

__all__ = ["StreamConfig", "Upscaler", "make_upscaler"]


class Upscaler(Protocol):
    scale: int

    def upscale(self, frames: list[Frame]) -> list[Frame]: ...


@dataclass(frozen=True)
class StreamConfig:
    """One ``vsr stream``: the source, the model stage's options (``inference``; torch
    CPU threads default to half the cores here), the live policy and the sinks."""

    source: str
    sinks: tuple[str, ...] = ()
    show: bool = False
    inference: InferenceOptions = field(default_factory=InferenceOptions)
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
    target_fps: float | None = None  # with model "auto"

    @classmethod
    def from_values(cls, source: str, **values: Any) -> StreamConfig:
        """A StreamConfig from flat keyword arguments (``model``, ``scale``, ``device``...
        beside the live ones)."""
        inference = InferenceOptions.take(values)
        return cls(source=source, inference=inference, **values)

    def with_model(self, model: str) -> StreamConfig:
        return replace(self, inference=replace(self.inference, model=model))


def make_upscaler(cfg: StreamConfig) -> Upscaler:
    """The live model stage's backend, made from ``cfg.inference`` like every mode's."""
    from vsr.backends.build import build_backend, resolve_backend

    # Capture (decode) and the sinks (encode) need cores too: on the CPU torch gets half of
    # them by default (all of them made a 64x48 bicubic frame 200x slower here, 212 ms
    # against 0.9 ms, on a 2-core machine that was also busy: OpenMP threads spinning
    # beside the encoder). OpenVINO's threads yield: with both cores of two, FSRCNN x2 on a
    # 640x360 30 fps stream kept 13.1 fps instead of 8.1 (fp32) and 29.7 instead of 24.1
    # (bf16), the sinks busy under a quarter of the time (BENCHMARKS.md, "Live").
    opts = cfg.inference
    cores = os.cpu_count() or 1
    if opts.threads:
        threads = opts.threads
    elif resolve_backend(opts).backend == "openvino":
        threads = cores
    else:
        threads = max(1, cores // 2)
    return build_backend(opts, threads=threads)
