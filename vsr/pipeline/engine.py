"""The single-file engine: ``run(config) -> RunReport``.

reader thread -> [bounded channel] -> model thread -> [bounded channel] -> writer thread.
Audio and subtitle packets travel in demux order through the same channels (the model
stage passes them on in place around its batches), so the writer receives everything
already in time order and memory stays bounded by the channel sizes. With several
devices (``RunConfig.devices``) the model thread is replaced by the multi-device stage of
``vsr.pipeline.multi`` (dispatch, one thread per device, reorder).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from vsr.backends.device import resolve_device
from vsr.backends.torch_backend import TorchBackend
from vsr.config import RunConfig, check_devices, device_key
from vsr.errors import InputNotFoundError, MediaError, OutputExistsError, UsageError
from vsr.media.frame import ColorInfo, Frame
from vsr.media.probe import MediaInfo, probe
from vsr.media.reader import Reader
from vsr.media.writer import Writer, check_encoder
from vsr.models.registry import LoadedModel, load_model
from vsr.pipeline.channel import Channel
from vsr.pipeline.multi import add_multi_device_stage, batches, emit, stage_names, upscale_batch
from vsr.pipeline.runner import Runner

if TYPE_CHECKING:
    from vsr.backends.opencv_backend import OpenCVBackend

log = logging.getLogger("vsr")


@dataclass
class RunReport:
    input: str
    output: str
    model: str
    scale: int
    weights: str
    device: str
    input_size: tuple[int, int]
    output_size: tuple[int, int]
    frames_in: int
    frames_out: int
    packets: int
    seconds: float
    fps: float
    bottleneck: str | None
    stages: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        busy = ", ".join(f"{k} {v['busy_fraction']:.0%}" for k, v in self.stages.items())
        w, h = self.output_size
        return (
            f"{self.output}: {w}x{h}, {self.frames_out}/{self.frames_in} frames in "
            f"{self.seconds:.1f} s ({self.fps:.1f} fps) on {self.device}; "
            f"busy: {busy}; bottleneck: {self.bottleneck}"
        )


def check_paths(cfg: RunConfig) -> Path:
    """Validate input and output paths; return the output path."""
    if not cfg.input.exists():
        raise InputNotFoundError(f"input not found: {cfg.input}")
    if cfg.input.is_dir():
        raise UsageError(f"input is a folder: {cfg.input}", hint="vsr run takes one video file")
    out = cfg.resolved_output()
    if out.exists():
        if out.resolve() == cfg.input.resolve() or os.path.samefile(out, cfg.input):
            raise OutputExistsError(
                f"output is the input: {out}", hint="choose another output path with -o"
            )
        if not cfg.overwrite:
            raise OutputExistsError(f"output exists: {out}", hint="pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise UsageError(f"output folder does not exist: {out.parent}")
    return out


def _model_stage(
    upscale: Callable[[list[Frame]], list[Frame]],
    inp: Channel,
    out: Channel,
    batch_size: int,
    counts: dict[str, int],
) -> None:
    """Batch frames; pass packets on in their place relative to the frames."""
    for batch in batches(inp, batch_size):
        emit(batch, upscale_batch(upscale, batch), out)
        counts["model"] += len(batch.frames)
    out.close()


def add_model_stage(
    runner: Runner,
    job: Job,
    decoded: Channel,
    upscaled: Channel,
    counts: dict[str, int],
    inject: Callable[[str], None],
) -> None:
    """Add the model stage to ``runner``: one thread, or with several backends dispatch,
    one worker per device and reorder. ``inject("model")`` runs before every batch after
    the first (fault tests)."""
    cfg = job.cfg
    batch_size = cfg.batch_size or job.backend.default_batch_size

    def upscaler(b: TorchBackend | OpenCVBackend) -> Callable[[list[Frame]], list[Frame]]:
        # With several GPUs each worker thread makes its backend's GPU the current one
        # (for anything that allocates on the current device rather than on b.device).
        gpu = None
        if len(job.backends) > 1 and isinstance(b, TorchBackend) and b.device.type == "cuda":
            gpu = b.device

        def upscale(frames: list[Frame]) -> list[Frame]:
            if counts["model"] >= 1:
                inject("model")
            with torch.cuda.device(gpu) if gpu is not None else contextlib.nullcontext():
                return b.upscale(frames)

        return upscale

    if len(job.backends) > 1:
        n = len(job.backends)
        names = stage_names(cfg.devices if len(cfg.devices) == n else [str(i) for i in range(n)])
        workers = [(name, upscaler(b)) for name, b in zip(names, job.backends, strict=True)]
        add_multi_device_stage(runner, workers, decoded, upscaled, batch_size, counts)
    else:

        def model_stage() -> None:
            _model_stage(upscaler(job.backend), decoded, upscaled, batch_size, counts)

        runner.add("model", model_stage, inputs=[decoded], outputs=[upscaled])


@dataclass
class Job:
    """Everything checked and loaded before any thread starts or any file is created."""

    cfg: RunConfig
    out_path: Path
    info: MediaInfo
    model: LoadedModel
    backend: TorchBackend | OpenCVBackend  # the first of ``backends``
    out_size: tuple[int, int]
    backends: list[TorchBackend | OpenCVBackend] = field(default_factory=list)  # one per device

    def __post_init__(self) -> None:
        if not self.backends:
            self.backends = [self.backend]

    @property
    def total_frames(self) -> int | None:
        return self.info.video.frame_count


def prepare(cfg: RunConfig) -> Job:
    """Check paths, probe the input, load the model and the backend.

    Raises UsageError (bad paths, model, device), WeightsError, MediaError (the input
    cannot be read). Nothing is written.
    """
    out_path = check_paths(cfg)
    check_devices(cfg.devices, backend=cfg.backend, device=cfg.device)
    check_encoder(cfg.codec)
    info = probe(cfg.input)
    video = info.video
    if cfg.backend == "opencv":
        check_opencv_options(cfg, bit_depth=video.bit_depth)
    for name in cfg.devices:  # unknown or missing devices before loading anything
        resolve_device(name)
    model = load_model(cfg.model, cfg.scale, weights=cfg.weights)
    backends = make_backends(cfg, model, video.color, bit_depth=video.bit_depth)
    out_size = Writer.output_size(
        video.width * cfg.scale, video.height * cfg.scale, cfg.pix_fmt or video.pix_fmt
    )
    return Job(cfg, out_path, info, model, backends[0], out_size, backends)


def check_opencv_options(cfg: RunConfig, *, bit_depth: int) -> None:
    """Raise UsageError for what the opencv backend cannot do (before loading anything)."""
    if cfg.weights is None:
        raise UsageError(
            "the opencv backend needs --weights FILE.pb", hint="or use --backend torch"
        )
    if cfg.device not in ("auto", "cpu") or cfg.precision not in ("auto", "fp32"):
        raise UsageError(
            "the opencv backend runs in fp32 on the CPU",
            hint="drop --device/--precision or use --backend torch",
        )
    if bit_depth > 8:
        raise UsageError(
            f"the opencv backend takes 8-bit video, this is {bit_depth}-bit",
            hint="use --backend torch",
        )


def make_backends(
    cfg: RunConfig, model: LoadedModel, color: ColorInfo, *, bit_depth: int = 8
) -> list[TorchBackend | OpenCVBackend]:
    """One backend per entry of ``cfg.devices`` (or the one ``make_backend`` makes).

    Each backend gets its own copy of the network (moving a module to a device moves it
    in place). Several ``cpu`` entries share the cores: each gets ``cores // n`` threads
    (torch's thread count is per process, so they all run with that count).
    """
    if not cfg.devices:
        return [make_backend(cfg, model, color, bit_depth=bit_depth)]
    n_cpu = sum(device_key(d).startswith("cpu:") for d in cfg.devices)
    threads = max(1, (os.cpu_count() or 1) // n_cpu) if n_cpu > 1 else None
    # Copy before any backend moves (or converts) the original module.
    models = [model] + [replace(model, module=copy.deepcopy(model.module)) for _ in cfg.devices[1:]]
    return [
        make_backend(cfg, m, color, bit_depth=bit_depth, device=d, threads=threads)
        for m, d in zip(models, cfg.devices, strict=True)
    ]


def make_backend(
    cfg: RunConfig,
    model: LoadedModel,
    color: ColorInfo,
    *,
    bit_depth: int = 8,
    device: str | None = None,
    threads: int | None = None,
) -> TorchBackend | OpenCVBackend:
    """The backend ``cfg.backend`` names, for a stream with ``color`` and ``bit_depth``,
    on ``device`` (default ``cfg.device``) with ``threads`` CPU threads (default: all).

    Raises UsageError (options the backend lacks), DeviceError, WeightsError.
    """
    if cfg.backend == "opencv":
        check_opencv_options(cfg, bit_depth=bit_depth)
        assert cfg.weights is not None
        from vsr.backends.opencv_backend import OpenCVBackend

        return OpenCVBackend(model, weights=cfg.weights, color=color)
    return TorchBackend(
        model,
        device=cfg.device if device is None else device,
        precision=cfg.precision,
        threads=threads,
        color=color,
        tile=cfg.tile,
        tile_overlap=cfg.tile_overlap,
        self_ensemble=cfg.self_ensemble,
        compile=cfg.compile,
    )


def run(
    cfg: RunConfig,
    *,
    progress: Callable[[int], None] | None = None,
    fault: str | None = None,
) -> RunReport:
    """``prepare`` then ``execute``."""
    return execute(prepare(cfg), progress=progress, fault=fault)


def execute(
    job: Job,
    *,
    progress: Callable[[int], None] | None = None,
    fault: str | None = None,
) -> RunReport:
    """Upscale ``job.cfg.input`` into ``job.out_path`` with three threads (with several
    backends: reader, dispatch, one per device, reorder, writer).

    Raises StageError (a stage failed: the partial output is removed) and Interrupted.
    ``fault`` names a stage to fail on purpose (tests of fault handling).
    """
    cfg, out_path, info, model = job.cfg, job.out_path, job.info, job.model
    video = info.video
    out_w, out_h = job.out_size

    runner = Runner()
    decoded = runner.channel(cfg.queue_size)
    upscaled = runner.channel(cfg.queue_size)
    counts = {"reader": 0, "model": 0, "writer": 0, "packets": 0}

    def inject(stage: str) -> None:
        if fault == stage:
            raise RuntimeError(f"injected fault in the {stage} stage")

    def reader_stage() -> None:
        with Reader(cfg.input, info=info) as reader:
            for item in reader.items():
                if isinstance(item, Frame):
                    counts["reader"] += 1
                    if counts["reader"] == 2:
                        inject("reader")
                decoded.put(item)
        decoded.close()

    def writer_stage() -> None:
        writer = Writer(
            output=out_path,
            source=info,
            source_path=cfg.input,
            width=out_w,
            height=out_h,
            codec=cfg.codec,
            crf=cfg.crf,
            preset=cfg.preset,
            pix_fmt=cfg.pix_fmt,
            audio=cfg.audio,
            device=cfg.devices[0] if cfg.devices else cfg.device,
        )
        try:
            for item in upscaled:
                if isinstance(item, Frame):
                    writer.write_frame(item)
                    counts["writer"] += 1
                    if counts["writer"] == 2:
                        inject("writer")
                    if progress is not None:
                        progress(1)
                else:
                    writer.write_packet(item)
                    counts["packets"] += 1
            if counts["writer"] != counts["reader"]:
                raise MediaError(
                    f"frame count mismatch: read {counts['reader']}, wrote {counts['writer']}"
                )
            writer.close()
        finally:
            writer.abort()  # no-op after a successful close

    runner.add("reader", reader_stage, outputs=[decoded])
    add_model_stage(runner, job, decoded, upscaled, counts, inject)
    runner.add("writer", writer_stage, inputs=[upscaled])
    t0 = time.perf_counter()
    runner.run()
    seconds = time.perf_counter() - t0
    stages = {
        s.name: {"busy_seconds": round(s.busy, 3), "busy_fraction": round(s.busy / seconds, 3)}
        for s in runner.stages
    }
    return RunReport(
        input=str(cfg.input),
        output=str(out_path),
        model=cfg.model,
        scale=cfg.scale,
        weights=model.source,
        device=", ".join(b.description for b in job.backends),
        input_size=(video.width, video.height),
        output_size=(out_w, out_h),
        frames_in=counts["reader"],
        frames_out=counts["writer"],
        packets=counts["packets"],
        seconds=round(seconds, 3),
        fps=round(counts["writer"] / seconds, 2) if seconds > 0 else 0.0,
        bottleneck=runner.bottleneck(),
        stages=stages,
    )
