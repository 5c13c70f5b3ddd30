"""TensorFlow layouts -> torch: HWIO kernels to OIHW, DepthToSpace to PixelShuffle order."""

from __future__ import annotations

import numpy as np
import torch

#: The permutation of the graphs' final ``Transpose`` (NHWC output to NCHW).
NHWC_TO_NCHW = (0, 3, 1, 2)


def oihw(kernel: np.ndarray) -> torch.Tensor:
    """TF HWIO -> torch OIHW."""
    return torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))


def vec(values: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(values, dtype=np.float32).reshape(-1))


def shuffle_order(channels: int, r: int) -> list[int]:
    """Output channels reordered from TF DepthToSpace ((i*r+j)*C + c) to torch
    PixelShuffle (c*r*r + i*r + j). The identity for one channel."""
    return [k * channels + c for c in range(channels) for k in range(r * r)]
