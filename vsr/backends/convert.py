"""Colour and padding conversions around the network for the torch backend: padding to
the model's size multiple, chroma upscaled on the CPU with OpenCV, and the YUV -> RGB ->
YUV round trip that RGB models run in (with the stream's own matrix and range)."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from vsr.media.frame import ColorInfo


def pad_to_multiple(x: torch.Tensor, m: int) -> tuple[torch.Tensor, int, int]:
    """``x`` padded (replicated border, bottom and right) to a multiple of ``m``, and
    its height and width before."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % m, (-w) % m
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, h, w


def chroma_cpu(planes: list[np.ndarray], scale: int, peak: float) -> list[np.ndarray]:
    """Chroma on the CPU: OpenCV's bicubic (``INTER_CUBIC``, a = -0.75, replicated
    borders) straight on the integer planes, the kernel ``chroma_resize`` computes in
    float (within one code value of it), about eight times faster on the CPU."""
    out = []
    for plane in planes:
        h, w = plane.shape
        up = cv2.resize(plane, (w * scale, h * scale), interpolation=cv2.INTER_CUBIC)
        if plane.dtype == np.uint16:
            np.minimum(up, np.uint16(peak), out=up)  # 10-bit: cubic overshoots 1023
        out.append(up)
    return out


def run_rgb(
    run_model: Callable[[torch.Tensor], torch.Tensor],
    y: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    color: ColorInfo,
    bit_depth: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """An RGB model (``run_model``) on (N, 1, H, W) planes in [0, 1]: chroma brought to
    luma size, converted to RGB, run, converted back and subsampled as it came."""
    from vsr.backends.color import rgb_to_yuv, yuv_to_rgb

    h, w = y.shape[-2:]
    sub = (h // u.shape[-2] if u.shape[-2] else 1, w // u.shape[-1] if u.shape[-1] else 1)
    if u.shape[-2:] != y.shape[-2:]:
        u = F.interpolate(u, size=(h, w), mode="bilinear", align_corners=False)
        v = F.interpolate(v, size=(h, w), mode="bilinear", align_corners=False)
    rgb = yuv_to_rgb(torch.cat([y, u, v], 1), color, height=h, bit_depth=bit_depth)
    rgb = rgb.clamp_(0, 1)
    out = run_model(rgb).clamp_(0, 1)
    yuv = rgb_to_yuv(out, color, height=h, bit_depth=bit_depth)
    y2, u2, v2 = yuv[:, 0:1], yuv[:, 1:2], yuv[:, 2:3]
    if sub != (1, 1):
        u2 = F.avg_pool2d(u2, sub, ceil_mode=True)
        v2 = F.avg_pool2d(v2, sub, ceil_mode=True)
    return y2, u2, v2
