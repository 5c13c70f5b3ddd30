"""YUV <-> RGB on the device, with the stream's own matrix and range.

Values are normalised: integer code / (2^bits - 1). Limited range maps luma to
[16, 235] * 2^(bits-8) and chroma to [16, 240] * 2^(bits-8) around the mid code.
"""

from __future__ import annotations

import torch

from vsr.media.frame import ColorInfo

#: (Kr, Kb) luma coefficients per FFmpeg matrix name.
KR_KB: dict[str, tuple[float, float]] = {
    "bt709": (0.2126, 0.0722),
    "bt470bg": (0.299, 0.114),
    "smpte170m": (0.299, 0.114),
    "bt601": (0.299, 0.114),
    "fcc": (0.30, 0.11),
    "smpte240m": (0.212, 0.087),
    "bt2020nc": (0.2627, 0.0593),
    "bt2020c": (0.2627, 0.0593),
}


def matrix_name(color: ColorInfo, *, height: int) -> str:
    """The stream's matrix, or what players assume when it is unspecified."""
    if color.matrix in KR_KB:
        return color.matrix
    return "bt709" if height >= 720 else "bt470bg"


def _coeffs(color: ColorInfo, height: int) -> tuple[float, float, float]:
    kr, kb = KR_KB[matrix_name(color, height=height)]
    return kr, 1.0 - kr - kb, kb


def _range_params(full: bool) -> tuple[float, float, float]:
    """(luma offset, luma span, chroma span) in units of the 8-bit code / 255."""
    if full:
        return 0.0, 1.0, 1.0
    return 16 / 255, 219 / 255, 224 / 255


def yuv_to_rgb(yuv: torch.Tensor, color: ColorInfo, *, height: int) -> torch.Tensor:
    """(N, 3, H, W) normalised Y, U, V -> (N, 3, H, W) RGB in [0, 1] (not clipped)."""
    kr, kg, kb = _coeffs(color, height)
    off, ys, cs = _range_params(color.full_range)
    y = (yuv[:, 0] - off) / ys
    u = (yuv[:, 1] - 128 / 255) / cs
    v = (yuv[:, 2] - 128 / 255) / cs
    r = y + 2 * (1 - kr) * v
    b = y + 2 * (1 - kb) * u
    g = (y - kr * r - kb * b) / kg
    return torch.stack([r, g, b], 1)


def rgb_to_yuv(rgb: torch.Tensor, color: ColorInfo, *, height: int) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> normalised Y, U, V (inverse of ``yuv_to_rgb``)."""
    kr, kg, kb = _coeffs(color, height)
    off, ys, cs = _range_params(color.full_range)
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    y = kr * r + kg * g + kb * b
    u = (b - y) / (2 * (1 - kb))
    v = (r - y) / (2 * (1 - kr))
    return torch.stack([y * ys + off, u * cs + 128 / 255, v * cs + 128 / 255], 1)
