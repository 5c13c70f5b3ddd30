"""Classic interpolation as models: nearest, bilinear, bicubic, lanczos (Lanczos-3).

They have no weights and run on every plane (luma and chroma alike). Sampling follows
the half-pixel-centre convention of OpenCV/FFmpeg/PIL: output pixel ``o`` samples the
input at ``(o + 0.5) / r - 0.5``. Bicubic uses a = -0.75 (OpenCV, torch); lanczos uses
a 6-tap Lanczos-3 window, as OpenCV's INTER_LANCZOS4 uses 8 taps; both are exact
polyphase filters for integer scales, implemented as separable convolutions so they
batch and run on any device.
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from vsr.models.spec import ModelSpec


def _lanczos(x: float, a: int = 3) -> float:
    if x == 0:
        return 1.0
    if abs(x) >= a:
        return 0.0
    px = math.pi * x
    return a * math.sin(px) * math.sin(px / a) / (px * px)


def cubic(x: float, a: float = -0.75) -> float:
    """Keys' cubic kernel: a = -0.75 as OpenCV/torch, a = -0.5 as MATLAB ``imresize``."""
    x = abs(x)
    if x <= 1:
        return (a + 2) * x**3 - (a + 3) * x**2 + 1
    if x < 2:
        return a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a
    return 0.0


def polyphase_taps(scale: int, kernel: str) -> tuple[torch.Tensor, int]:
    """Filter taps (scale, taps) for each output phase, and the left padding they need."""
    support = {"cubic": 2, "lanczos": 3}[kernel]
    fn = cubic if kernel == "cubic" else _lanczos
    taps = 2 * support
    rows = []
    for p in range(scale):
        offset = (p + 0.5) / scale - 0.5  # in input pixels, relative to input pixel i
        base = math.floor(offset) - support + 1
        w = [fn(offset - (base + k)) for k in range(taps)]
        total = sum(w)
        rows.append((base, [v / total for v in w]))
    lo = min(b for b, _ in rows)
    hi = max(b + taps for b, _ in rows)
    width = hi - lo
    out = torch.zeros(scale, width, dtype=torch.float64)
    for p, (b, w) in enumerate(rows):
        out[p, b - lo : b - lo + taps] = torch.tensor(w, dtype=torch.float64)
    return out, -lo


class PolyphaseResize(nn.Module):
    """Integer-scale separable resize with replicate borders (as OpenCV's default)."""

    def __init__(self, scale: int, kernel: str) -> None:
        super().__init__()
        self.scale = scale
        taps, pad = polyphase_taps(scale, kernel)
        self.pad_lo = pad
        self.pad_hi = taps.shape[1] - 1 - pad
        self.taps: torch.Tensor
        self.register_buffer("taps", taps.float(), persistent=False)

    def _resize_w(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        r, k = self.taps.shape
        x = F.pad(x.reshape(n * c, 1, h, w), (self.pad_lo, self.pad_hi, 0, 0), mode="replicate")
        weight = self.taps.to(x.dtype).reshape(r, 1, 1, k)
        y = F.conv2d(x, weight)  # (n*c, r, h, w): phase p of each output pixel
        return y.permute(0, 2, 3, 1).reshape(n, c, h, w * r)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._resize_w(x)
        x = self._resize_w(x.transpose(2, 3)).transpose(2, 3)
        return x


class TorchInterpolate(nn.Module):
    def __init__(self, scale: int, mode: str) -> None:
        super().__init__()
        self.scale = scale
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "nearest":
            return F.interpolate(x, scale_factor=self.scale, mode="nearest")
        return F.interpolate(x, scale_factor=self.scale, mode=self.mode, align_corners=False)


def _build(mode: str, scale: int, state: object, meta: object) -> nn.Module:
    if mode == "bicubic":
        return PolyphaseResize(scale, "cubic")
    if mode == "lanczos":
        return PolyphaseResize(scale, "lanczos")
    return TorchInterpolate(scale, mode)


def _spec(name: str, description: str) -> ModelSpec:
    return ModelSpec(
        name=name,
        arch="interpolate",
        scales=(2, 3, 4, 8),
        channels=1,
        size_multiple=1,
        fp16=True,
        bf16=True,
        speed="fastest",
        description=description,
        build=partial(_build, name),
        planewise=True,
        needs_weights=False,
    )


NEAREST = _spec("nearest", "nearest-neighbour interpolation (pixel replication)")
BILINEAR = _spec("bilinear", "bilinear interpolation")
BICUBIC = _spec("bicubic", "bicubic interpolation (a = -0.75, as OpenCV and FFmpeg)")
LANCZOS = _spec("lanczos", "Lanczos-3 interpolation")
