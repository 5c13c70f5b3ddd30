"""Bicubic initialisation: start a network at bicubic interpolation instead of noise.

The architecture is unchanged (the weights load anywhere the plain architecture does);
only the starting point differs. For ESPCN, the first r*r channels of conv1 compute the
r*r polyphase outputs of MATLAB's bicubic (a = -0.5, support 2, which fits the 5x5
kernel), conv2 and conv3 pass them through their centre taps, and the pixel shuffle
puts them in place. Training then starts at the bicubic PSNR and learns the detail.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vsr.models.archs.interpolate import cubic


def polyphase_bicubic(scale: int, size: int = 5) -> torch.Tensor:
    """(scale, size) 1-D taps, centred at size // 2, for each output phase."""
    c = size // 2
    taps = torch.zeros(scale, size, dtype=torch.float64)
    for p in range(scale):
        offset = (p + 0.5) / scale - 0.5
        for k in range(size):
            taps[p, k] = cubic(offset - (k - c), -0.5)
        taps[p] /= taps[p].sum()
    return taps


@torch.no_grad()
def bicubic_init_espcn(module: nn.Module, scale: int, *, damp: float = 0.1) -> None:
    r2 = scale * scale
    net: Any = module  # ESPCN's layers by name
    conv1, conv2, conv3 = net.conv1, net.conv2, net.conv3
    if conv1.in_channels != 1 or conv1.out_channels < r2 or conv2.out_channels < r2:
        raise ValueError("bicubic init needs a luma ESPCN with at least r*r features")
    taps = polyphase_bicubic(scale, conv1.kernel_size[0])
    c2, c3 = conv2.kernel_size[0] // 2, conv3.kernel_size[0] // 2
    conv3.weight.mul_(damp)
    conv3.bias.zero_()
    for py in range(scale):
        for px in range(scale):
            i = py * scale + px
            conv1.weight[i, 0] = torch.outer(taps[py], taps[px]).float()
            conv1.bias[i] = 0.0
            conv2.weight[i].zero_()
            conv2.weight[i, i, c2, c2] = 1.0
            conv2.bias[i] = 0.0
            conv3.weight[i, :r2].zero_()
            conv3.weight[i, i, c3, c3] = 1.0


INITS = {"espcn": bicubic_init_espcn}


def apply_init(name: str, module: nn.Module, arch: str, scale: int) -> None:
    if name in ("", "default"):
        return
    if name != "bicubic" or arch not in INITS:
        raise ValueError(f"init {name!r} is not available for {arch}")
    INITS[arch](module, scale)


@torch.no_grad()
def bicubic_init_fsrcnn(module: nn.Module, scale: int, *, damp: float = 0.01) -> None:
    """Channel 0 of every layer carries the input through (identity taps, PReLU slope 1);
    the 9x9 transposed convolution then applies MATLAB's bicubic kernel (truncated to the
    taps the 9x9 window reaches, renormalised per output phase)."""
    net: Any = module  # FSRCNN's layers by name
    if net.upsampler != "deconv":
        raise ValueError("bicubic init is for the deconvolution FSRCNN")
    convs = [m for m in net.body if isinstance(m, nn.Conv2d)]
    prelus = [m for m in net.body if isinstance(m, nn.PReLU)]
    for conv, prelu in zip(convs, prelus, strict=True):
        c = conv.kernel_size[0] // 2
        conv.weight[0].zero_()
        conv.weight[0, 0, c, c] = 1.0
        conv.bias[0] = 0.0  # type: ignore[index]  # FSRCNN's convolutions have biases
        if conv.in_channels > 1:
            conv.weight[1:, 0].zero_()  # the pass-through channel feeds only itself
        prelu.weight[0] = 1.0
    tail = net.tail
    k = tail.kernel_size[0]
    pad = tail.padding[0]
    taps = torch.tensor(
        [cubic((i - pad + 0.5) / scale - 0.5, -0.5) for i in range(k)], dtype=torch.float64
    )
    for q in range(scale):  # normalise each output phase
        idx = [i for i in range(k) if (i - pad - q) % scale == 0]
        taps[idx] /= taps[idx].sum()
    tail.weight.mul_(damp)
    tail.weight[0, 0] = torch.outer(taps, taps).float()
    tail.bias.zero_()


INITS["fsrcnn"] = bicubic_init_fsrcnn
