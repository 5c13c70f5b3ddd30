"""``vsr bench``: how fast a model runs here, alone and inside the whole pipeline.

For one model, scale, input size, device, precision and batch size it measures:

- the **model stage alone**: ``backend.upscale`` on batches of frames already decoded
  into memory (the network, chroma, colour conversion and the copies to and from the
  device: everything the model thread does), after warm-up passes;
- the **end to end** run: ``vsr run`` on the clip (decode, model, encode with a real
  encoder, audio remux), with the share of time each stage was busy and which one set
  the pace;
- the network's arithmetic (multiply-adds counted on its convolutions) and this device's
  measured float32 matrix-multiply rate, so that the model stage can be read as a share
  of what the hardware can do.

The input is a synthetic clip of ``--size`` (generated, with audio) unless ``--input``
names a real one. Timings go to the terminal and ``--json``; nothing here is a test.
"""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import torch
from torch import nn

from vsr.backends.options import InferenceOptions
from vsr.config import RunConfig
from vsr.errors import UsageError
from vsr.media.frame import Frame


@dataclass(frozen=True)
class BenchConfig:
    inference: InferenceOptions = field(default_factory=InferenceOptions)
    size: tuple[int, int] = (640, 360)  # synthetic input (ignored with ``input``)
    frames: int = 120  # frames of the synthetic clip; model-only passes use up to 32
    input: Path | None = None
    codec: str = "libx264"
    preset: str | None = None
    repeats: int = 1  # end-to-end runs (the median is reported)
    matmul: bool = True  # measure the float32 matmul peak

    def run_config(self, clip: Path, out: Path) -> RunConfig:
        return RunConfig(
            input=clip,
            output=out,
            inference=self.inference,
            codec=self.codec,
            preset=self.preset,
            overwrite=True,
            quiet=True,
        )


@dataclass
class BenchReport:
    model: str
    scale: int
    device: str
    backend: str  # torch, openvino or opencv (the device line says more)
    batch_size: int
    input: str
    input_size: tuple[int, int]
    output_size: tuple[int, int]
    frames: int
    model_fps: float
    model_ms_per_frame: float
    e2e_fps: float
    e2e_share_of_model: float  # end-to-end fps / model-only fps
    bottleneck: str | None
    stages: dict[str, dict[str, float]]
    gmac_per_frame: float
    model_gflops: float  # achieved by the model stage (2 flops per multiply-add)
    matmul_gflops: float | None  # this device's float32 matmul rate
    share_of_matmul_peak: float | None
    machine: str
    torch_threads: int
    date: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))

    def to_dict(self) -> dict:
        return asdict(self)

    def format(self) -> str:
        w, h = self.input_size
        ow, oh = self.output_size
        busy = ", ".join(f"{k} {v['busy_fraction']:.0%}" for k, v in self.stages.items())
        lines = [
            f"{self.model} x{self.scale}, {w}x{h} -> {ow}x{oh}, {self.backend} on {self.device}, "
            f"batch {self.batch_size}, {self.frames} frames ({self.input})",
            f"model stage alone: {self.model_fps:.2f} fps ({self.model_ms_per_frame:.1f} ms/frame,"
            f" {self.gmac_per_frame:.2f} GMAC/frame, {self.model_gflops:.1f} GFLOP/s)",
            f"end to end:        {self.e2e_fps:.2f} fps ({self.e2e_share_of_model:.0%} of the "
            f"model stage alone); busy: {busy}; bottleneck: {self.bottleneck}",
        ]
        if self.matmul_gflops is not None and self.share_of_matmul_peak is not None:
            lines.append(
                f"float32 matmul here: {self.matmul_gflops:.1f} GFLOP/s; the model stage "
                f"reaches {self.share_of_matmul_peak:.0%} of it"
            )
        lines.append(f"machine: {self.machine}, {self.torch_threads} torch threads")
        return "\n".join(lines)


def parse_size(text: str) -> tuple[int, int]:
    """``"640x360"`` -> (640, 360); UsageError otherwise."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"size must be WIDTHxHEIGHT, like 640x360, not {text!r}") from None
    if w < 16 or h < 16 or w % 2 or h % 2:
        raise UsageError(f"size must be even and at least 16x16, not {text!r}")
    return w, h


def count_macs(module: nn.Module, x: torch.Tensor) -> int:
    """Multiply-adds of one forward pass on ``x``, counted on convolutions and linear
    layers (what dominates these networks; activations and shuffles are not counted)."""
    total = 0

    def conv_hook(m: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(m, nn.Conv2d | nn.ConvTranspose2d)
        k = m.kernel_size[0] * m.kernel_size[1]
        if isinstance(m, nn.ConvTranspose2d):
            total += inputs[0].numel() * (m.out_channels // m.groups) * k
        else:
            total += out.numel() * (m.in_channels // m.groups) * k

    def linear_hook(m: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(m, nn.Linear)
        total += out.numel() * m.in_features

    handles = []
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    try:
        with torch.inference_mode():
            module(x)
    finally:
        for h in handles:
            h.remove()
    return total


def matmul_gflops(device: torch.device, *, n: int = 2048, seconds: float = 1.0) -> float:
    """The float32 matrix-multiply rate of ``device`` (n x n by n x n, best of the runs)."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    c = torch.empty(n, n, device=device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(2):
        torch.mm(a, b, out=c)
    sync()
    best = 0.0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        torch.mm(a, b, out=c)
        sync()
        best = max(best, 2 * n**3 / (time.perf_counter() - t0) / 1e9)
    return best


def _decoded(clip: Path, count: int) -> list[Frame]:
    from vsr.media.reader import Reader

    frames: list[Frame] = []
    with Reader(clip) as reader:
        for item in reader.items():
            if isinstance(item, Frame):
                frames.append(item)
                if len(frames) >= count:
                    break
    return frames


def synthetic_clip(path: Path, size: tuple[int, int], frames: int) -> Path:
    from vsr.media.sample import make_sample_clip

    w, h = size
    return make_sample_clip(path, width=w, height=h, frames=frames, rate=Fraction(30))


def bench(cfg: BenchConfig, *, log: bool = False) -> BenchReport:
    """Measure; see the module docstring. Raises what ``vsr run`` raises for bad input."""
    from vsr.pipeline.engine import execute, prepare

    if cfg.frames < 2 or cfg.repeats < 1:
        raise UsageError("bench needs at least 2 frames and 1 repeat")
    with tempfile.TemporaryDirectory(prefix="vsr-bench-") as tmp:
        tmpdir = Path(tmp)
        clip = cfg.input or synthetic_clip(tmpdir / "synthetic.mp4", cfg.size, cfg.frames)
        job = prepare(cfg.run_config(clip, tmpdir / "out.mp4"))
        backend = job.backend
        batch = cfg.inference.batch_size or backend.default_batch_size
        frames = _decoded(clip, max(2 * batch, min(32, cfg.frames)))
        if not frames:
            raise UsageError(f"no video frames in {clip}")
        batches = [frames[i : i + batch] for i in range(0, len(frames) - batch + 1, batch)]
        backend.upscale(batches[0])  # warm-up (allocations, cudnn autotuning)
        backend.upscale(batches[-1])
        times = []
        for chunk in batches:
            t0 = time.perf_counter()
            backend.upscale(chunk)
            times.append((time.perf_counter() - t0) / len(chunk))
        per_frame = statistics.median(times)

        model = job.backend.model
        module = model.module
        first = frames[0]
        c = model.spec.channels
        probe = torch.zeros(1, c, first.height, first.width)
        dev = next(module.parameters(), torch.zeros(0)).device
        macs = count_macs(module, probe.to(dev, next(module.parameters()).dtype))
        if model.spec.planewise:
            macs *= 3  # the network runs on Y, U and V

        e2e = []
        report = None
        for i in range(cfg.repeats):
            job = job if i == 0 else prepare(cfg.run_config(clip, tmpdir / "out.mp4"))
            report = execute(job)
            e2e.append(report.fps)
            if log:
                print(f"end-to-end run {i + 1}: {report.fps:.2f} fps")
        assert report is not None
        peak = matmul_gflops(backend_device(backend)) if cfg.matmul else None
    model_fps = 1.0 / per_frame
    achieved = 2 * macs / per_frame / 1e9
    e2e_fps = statistics.median(e2e)
    return BenchReport(
        model=cfg.inference.model,
        scale=cfg.inference.scale,
        device=backend.description,
        backend=backend.name,
        batch_size=batch,
        input=str(cfg.input) if cfg.input else "synthetic",
        input_size=report.input_size,
        output_size=report.output_size,
        frames=report.frames_out,
        model_fps=round(model_fps, 2),
        model_ms_per_frame=round(per_frame * 1000, 2),
        e2e_fps=round(e2e_fps, 2),
        e2e_share_of_model=round(e2e_fps / model_fps, 3),
        bottleneck=report.bottleneck,
        stages=report.stages,
        gmac_per_frame=round(macs / 1e9, 3),
        model_gflops=round(achieved, 1),
        matmul_gflops=round(peak, 1) if peak is not None else None,
        share_of_matmul_peak=round(achieved / peak, 3) if peak else None,
        machine=f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or ''}".strip(
            ", "
        ),
        torch_threads=torch.get_num_threads(),
    )


def backend_device(backend: object) -> torch.device:
    dev = getattr(backend, "device", None)
    return dev if isinstance(dev, torch.device) else torch.device("cpu")
