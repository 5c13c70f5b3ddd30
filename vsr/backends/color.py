"""YUV <-> RGB on the device, with the stream's own matrix, range and bit depth.

The coefficients come from ``vsr.media.color`` (the float64 reference): this module
only applies them to (N, 3, H, W) tensors of normalised code values
(``code / (2**bit_depth - 1)``).

The coefficient tensors are made once per (matrix, range, bit depth, dtype, device) and
cached: a fresh ``torch.as_tensor(..., device="cuda")`` per call would be a pageable
host-to-device copy, which makes the host wait for everything queued on the stream.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from vsr.media.color import rgb_to_yuv_matrix, yuv_to_rgb_matrix
from vsr.media.frame import ColorInfo


def _apply(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,njhw->nihw", m, x)


@lru_cache(maxsize=64)
def _coefficients(
    m: bytes, off: bytes, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(3x3 matrix, (1, 3, 1, 1) offsets) as tensors; keyed by the float64 bytes.

    Made outside inference mode, so that the cached tensors also serve autograd code."""
    with torch.inference_mode(False):
        mt = torch.tensor(np.frombuffer(m, dtype=np.float64).reshape(3, 3).copy(), dtype=dtype)
        ot = torch.tensor(np.frombuffer(off, np.float64).reshape(1, 3, 1, 1).copy(), dtype=dtype)
        return mt.to(device), ot.to(device)


def _tensors(
    pair: tuple[np.ndarray, np.ndarray], like: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    m, off = pair
    return _coefficients(
        np.ascontiguousarray(m, dtype=np.float64).tobytes(),
        np.ascontiguousarray(off, dtype=np.float64).tobytes(),
        like.dtype,
        like.device,
    )


def yuv_to_rgb(
    yuv: torch.Tensor, color: ColorInfo, *, height: int, bit_depth: int = 8
) -> torch.Tensor:
    """Normalised Y, U, V -> RGB in [0, 1] (not clipped)."""
    mt, ot = _tensors(yuv_to_rgb_matrix(color, height=height, bit_depth=bit_depth), yuv)
    return _apply(yuv - ot, mt)


def rgb_to_yuv(
    rgb: torch.Tensor, color: ColorInfo, *, height: int, bit_depth: int = 8
) -> torch.Tensor:
    """RGB in [0, 1] -> normalised Y, U, V (the inverse of ``yuv_to_rgb``)."""
    mt, ot = _tensors(rgb_to_yuv_matrix(color, height=height, bit_depth=bit_depth), rgb)
    return _apply(rgb, mt) + ot
