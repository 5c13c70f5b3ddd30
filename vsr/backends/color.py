"""YUV <-> RGB on the device, with the stream's own matrix, range and bit depth.

The coefficients come from ``vsr.media.color`` (the float64 reference): this module
only applies them to (N, 3, H, W) tensors of normalised code values
(``code / (2**bit_depth - 1)``).
"""

from __future__ import annotations

import torch

from vsr.media.color import rgb_to_yuv_matrix, yuv_to_rgb_matrix
from vsr.media.frame import ColorInfo


def _apply(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,njhw->nihw", m, x)


def yuv_to_rgb(
    yuv: torch.Tensor, color: ColorInfo, *, height: int, bit_depth: int = 8
) -> torch.Tensor:
    """Normalised Y, U, V -> RGB in [0, 1] (not clipped)."""
    m, off = yuv_to_rgb_matrix(color, height=height, bit_depth=bit_depth)
    mt = torch.as_tensor(m, dtype=yuv.dtype, device=yuv.device)
    ot = torch.as_tensor(off, dtype=yuv.dtype, device=yuv.device).view(1, 3, 1, 1)
    return _apply(yuv - ot, mt)


def rgb_to_yuv(
    rgb: torch.Tensor, color: ColorInfo, *, height: int, bit_depth: int = 8
) -> torch.Tensor:
    """RGB in [0, 1] -> normalised Y, U, V (the inverse of ``yuv_to_rgb``)."""
    m, off = rgb_to_yuv_matrix(color, height=height, bit_depth=bit_depth)
    mt = torch.as_tensor(m, dtype=rgb.dtype, device=rgb.device)
    ot = torch.as_tensor(off, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    return _apply(rgb, mt) + ot
