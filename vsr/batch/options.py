"""What a batch runs with: :class:`BatchConfig` (one ``vsr batch`` run), the validated
parameters every job gets (:func:`job_params`), and the engine that runs the jobs (the
:class:`Engine` protocol and :func:`make_engine`: ``LocalEngine``, worker processes here,
or ``vsr.batch.ray_engine.RayEngine``, a Ray cluster). An engine may also have
``close()``, called once the batch is over."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from vsr.batch.jobs import JobResult, JobSpec
from vsr.batch.local import LocalEngine
from vsr.errors import InputNotFoundError, UsageError

ENGINES = ("local", "ray")


class Engine(Protocol):
    def run(
        self,
        specs: list[JobSpec],
        on_result: Callable[[JobResult], None],
        on_start: Callable[[JobSpec], None],
    ) -> None: ...


@dataclass(frozen=True)
class BatchConfig:
    """One ``vsr batch`` run. ``options``: RunConfig fields (model, scale, weights, device,
    codec, crf, ...; ``None`` or missing: the default)."""

    inputs: tuple[str, ...]
    out: Path
    options: Mapping[str, Any] = field(default_factory=dict)
    jobs: int = 1
    engine: str = "local"
    ray_address: str | None = None
    gpus_per_job: float | None = None  # None: 1 with a CUDA --device, else 0
    cpus_per_job: float = 1.0
    retries: int = 2
    backoff: float = 1.0  # seconds before the first retry; doubles for each further one
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    overwrite: bool = False  # replace output files that this batch did not write
    progress: bool = True
    segment_seconds: float | None = 10.0  # longer inputs (2x) go in resumable segments


def job_params(options: Mapping[str, Any]) -> dict[str, Any]:
    """Validated RunConfig keyword arguments (JSON-safe: paths as absolute strings) for
    every job. Raises UsageError for bad values, an unknown model or scale, missing
    weights, or an encoder this FFmpeg lacks."""
    from vsr.config import config_values, make_config
    from vsr.media.codecs import check_encoder
    from vsr.models.registry import get_spec

    flags = {k: v for k, v in options.items() if k not in ("input", "output")}
    cfg = make_config({**flags, "input": Path("batch-input")})
    params: dict[str, Any] = {
        k: v
        for k, v in config_values(cfg).items()
        if k not in ("input", "output", "overwrite", "quiet")
    }
    opts = cfg.inference
    if opts.weights is not None:
        if not opts.weights.is_file():
            raise InputNotFoundError(f"weights file not found: {opts.weights}")
        params["weights"] = str(opts.weights.resolve())
    params["devices"] = list(opts.devices)
    spec = get_spec(opts.model)
    scales = getattr(spec, "scales", ())
    if scales and opts.model != "auto" and opts.scale not in scales:
        listed = ", ".join(f"x{s}" for s in scales)
        raise UsageError(
            f"{spec.name} does not support x{opts.scale}", hint=f"it supports {listed}"
        )
    check_encoder(cfg.codec)
    return params


def make_engine(cfg: BatchConfig, on_progress: Callable[[str, int], None] | None = None) -> Engine:
    """The engine ``cfg.engine`` names. Raises UsageError (unknown engine, bad counts,
    ``ray`` not installed)."""
    if cfg.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {cfg.jobs}")
    if cfg.engine == "local":
        return LocalEngine(cfg.jobs, on_progress=on_progress)
    if cfg.engine == "ray":
        if importlib.util.find_spec("ray") is None:
            raise UsageError("the ray engine needs Ray", hint="pip install 'vsr[ray]'")
        try:
            module = importlib.import_module("vsr.batch.ray_engine")
        except ImportError as exc:
            raise UsageError(
                f"the ray engine cannot be loaded: {exc}", hint="pip install 'vsr[ray]'"
            ) from None
        gpus = cfg.gpus_per_job
        if gpus is None:
            device = str(cfg.options.get("device") or "auto")
            gpus = 1.0 if device.startswith("cuda") else 0.0
        if gpus < 0 or cfg.cpus_per_job < 0:
            raise UsageError("--gpus-per-job and --cpus-per-job cannot be negative")
        engine: Engine = module.RayEngine(cfg.ray_address, gpus, cfg.cpus_per_job)
        return engine
    raise UsageError(f"unknown engine {cfg.engine!r}", hint=f"use {' or '.join(ENGINES)}")
