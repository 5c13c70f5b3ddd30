"""Frames for backend comparisons, and how far apart two lists of frames are."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import torch

from vsr.media.frame import Frame


def smooth_frames(n: int, h: int, w: int, *, bits: int = 8, seed: int = 0) -> list[Frame]:
    """Smooth random 4:2:0 frames (blocks upsampled, so edges and gradients)."""
    peak = (1 << bits) - 1
    dtype = np.uint8 if bits == 8 else np.uint16
    fmt = "yuv420p" if bits == 8 else "yuv420p10le"
    out = []
    for i in range(n):
        rng = np.random.default_rng(seed + i)
        planes = []
        for ph, pw in ((h, w), ((h + 1) // 2, (w + 1) // 2), ((h + 1) // 2, (w + 1) // 2)):
            small = torch.from_numpy(rng.random((1, 1, ph // 3 + 2, pw // 3 + 2)))
            big = torch.nn.functional.interpolate(small, size=(ph, pw), mode="bilinear")
            lo, hi = 16 / 255 * peak, 235 / 255 * peak
            planes.append(np.rint(lo + big[0, 0].numpy() * (hi - lo)).astype(dtype))
        out.append(Frame(i, i * 2, Fraction(1, 48), (planes[0], planes[1], planes[2]), fmt))
    return out


def max_diff(a: list[Frame], b: list[Frame]) -> int:
    """The largest difference in code values between matching planes of ``a`` and ``b``
    (which must have the same shapes and dtypes)."""
    worst = 0
    for fa, fb in zip(a, b, strict=True):
        for pa, pb in zip(fa.planes, fb.planes, strict=True):
            assert pa.shape == pb.shape and pa.dtype == pb.dtype
            worst = max(worst, int(np.abs(pa.astype(np.int32) - pb.astype(np.int32)).max()))
    return worst
