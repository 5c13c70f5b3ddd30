"""``--model auto --target-fps N``: time the shipped models on this device, pick the best.

Quality order: Set5 PSNR of the shipped weights at the scale asked for (their model cards,
``vsr/weights/*.json``), bicubic last. Each candidate upscales a few frames of the
expected input size; the first whose model-only rate reaches the target with 25 %
headroom (decoding and encoding need time too) wins. When none does, the fastest one is
used, and the reason says so.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from vsr.live.options import StreamConfig, Upscaler, make_upscaler
from vsr.media.frame import Frame

__all__ = ["AutoChoice", "candidates", "choose_model"]

HEADROOM = 1.25
WEIGHTS = Path(__file__).resolve().parent.parent / "weights"


@dataclass
class AutoChoice:
    model: str
    scale: int
    reason: str
    measured: list[dict[str, Any]] = field(default_factory=list)


def candidates(scale: int) -> list[tuple[str, float]]:
    """(model, Set5 PSNR) for the shipped weights at ``scale``, best first; bicubic last."""
    found: list[tuple[str, float]] = []
    bicubic = 0.0
    for card in sorted(WEIGHTS.glob(f"*_x{scale}.json")):
        data = json.loads(card.read_text())
        set5 = data.get("metrics", {}).get("Set5", {})
        if "psnr" in set5:
            found.append((card.stem.rsplit("_x", 1)[0], float(set5["psnr"])))
            bicubic = float(set5.get("bicubic_psnr", bicubic))
    found.sort(key=lambda c: -c[1])
    return [*found, ("bicubic", bicubic)]


def _time_per_frame(up: Upscaler, width: int, height: int, frames: int) -> float:
    planes = (
        np.random.default_rng(0).integers(16, 235, (height, width), dtype=np.uint8),
        np.full((height // 2, width // 2), 128, np.uint8),
        np.full((height // 2, width // 2), 128, np.uint8),
    )
    frame = Frame(0, 0, Fraction(1, 30), planes, "yuv420p")
    up.upscale([frame])  # warm-up
    times = []
    for _ in range(frames):
        t0 = time.perf_counter()
        up.upscale([frame])
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def choose_model(
    cfg: StreamConfig, target_fps: float, *, size: tuple[int, int], frames: int = 3
) -> tuple[AutoChoice, Upscaler]:
    """Calibrate on ``size`` input frames; return the choice and its ready upscaler."""
    measured: list[dict[str, Any]] = []
    fastest: tuple[float, str, Upscaler] | None = None
    scale = cfg.inference.scale
    for name, psnr in candidates(scale):
        up = make_upscaler(cfg.with_model(name))
        t = _time_per_frame(up, size[0], size[1], frames)
        fps = 1.0 / t if t > 0 else float("inf")
        measured.append({"model": name, "set5_psnr": psnr, "fps": round(fps, 1)})
        if fps >= target_fps * HEADROOM:
            reason = (
                f"{name} x{scale} is the best-quality model (Set5 {psnr:.2f} dB) that "
                f"upscales {size[0]}x{size[1]} at {fps:.0f} fps here, >= {target_fps:g} fps "
                f"x {HEADROOM} headroom"
            )
            return AutoChoice(name, scale, reason, measured), up
        if fastest is None or fps > fastest[0]:
            fastest = (fps, name, up)
    assert fastest is not None
    fps, name, up = fastest
    reason = (
        f"no model reaches {target_fps:g} fps x {HEADROOM} at {size[0]}x{size[1]} here; "
        f"{name} x{scale} is the fastest ({fps:.0f} fps): expect dropped frames"
    )
    return AutoChoice(name, scale, reason, measured), up
