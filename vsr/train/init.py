"""Bicubic initialisation: start a network at bicubic interpolation instead of noise.

The architecture is unchanged (the weights load anywhere the plain architecture does);
only the starting point differs. For ESPCN, the first r*r channels of conv1 compute the
r*r polyphase outputs of MATLAB's bicubic (a = -0.5, support 2, which fits the 5x5
kernel), conv2 and conv3 pass them through their centre taps, and the pixel shuffle
puts them in place. Training then starts at the bicubic PSNR and learns the detail.
"""

from __future__ import annotations

import math
from collections.abc import Callable
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


INITS: dict[str, Callable[..., None]] = {"espcn": bicubic_init_espcn}


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


@torch.no_grad()
def bicubic_init_srcnn(module: nn.Module, scale: int) -> None:
    """SRCNN works on the bicubic-upscaled image: feature 0 of conv1 and conv2 and conv3's
    output carry it through their centre taps (ReLU passes it, the image is >= 0)."""
    net: Any = module
    conv1, conv2, conv3 = net.conv1, net.conv2, net.conv3
    if conv1.in_channels != 1:
        raise ValueError("bicubic init needs a luma SRCNN")
    for conv, cin in ((conv1, 0), (conv2, 0), (conv3, 0)):
        c = conv.kernel_size[0] // 2
        conv.weight[0].zero_()
        conv.weight[0, cin, c, c] = 1.0
        conv.bias[0] = 0.0
    conv2.weight[1:, 0].zero_()  # the pass-through feature feeds only itself
    conv3.weight[0, 1:].mul_(0.01)


@torch.no_grad()
def bicubic_init_vdsr(module: nn.Module, scale: int, *, damp: float = 1.0) -> None:
    """VDSR adds its output to the bicubic image, so it starts near bicubic whatever the
    weights; ``damp`` scales the last layer (0: exactly bicubic).

    The hidden layers get He (MSRA) initialisation, as in the paper: with PyTorch's
    default the signal of a 20-layer plain ReLU network fades and the residual branch
    does not learn (measured: Set5 x3 stayed at bicubic for 400 steps with the last layer
    damped to 0.01 at lr 3e-4). Undamped, at lr 1e-3, the L1 loss fell 3% below
    bicubic's in 80 steps; damped to 0.01 at 3e-4, 1%."""
    net: Any = module
    for conv in net.layers[:-1]:
        nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")
        if conv.bias is not None:
            conv.bias.zero_()
    net.layers[-1].weight.mul_(damp)
    if net.layers[-1].bias is not None:
        net.layers[-1].bias.zero_()


@torch.no_grad()
def bicubic_init_lapsrn(module: nn.Module, scale: int, *, damp: float = 0.01) -> None:
    """Each level's image branch (a 4x4 convolution, then a x2 pixel shuffle) computes the
    x2 MATLAB bicubic phases (taps the window reaches, renormalised); the residual branch is
    damped. The leaky ReLU after the sum passes the (non-negative) image unchanged."""
    net: Any = module
    for level in net.levels:
        taps = phase_taps(2, level.image.kernel_size[0], level.pad[0])
        for py in range(2):
            for px in range(2):
                level.image.weight[py * 2 + px, 0] = torch.outer(taps[py], taps[px]).float()
        level.upsample.weight.mul_(damp)


def phase_taps(scale: int, size: int, before: int) -> torch.Tensor:
    """(scale, size) MATLAB bicubic taps per output phase for a ``size``-wide window whose
    tap j sits at input offset ``j - before``; taps the window misses are dropped and each
    phase renormalised."""
    taps = torch.zeros(scale, size, dtype=torch.float64)
    for p in range(scale):
        offset = (p + 0.5) / scale - 0.5
        for j in range(size):
            taps[p, j] = cubic(offset - (j - before), -0.5)
        taps[p] /= taps[p].sum()
    return taps


@torch.no_grad()
def bicubic_init_edsr(module: nn.Module, scale: int, *, damp: float = 0.01) -> None:
    """EDSR (EDSR-PyTorch layout) starts as bicubic: head features 0-2 copy R, G, B; the
    residual blocks and the body's last convolution are damped (the skips carry the
    features through); each upsampling convolution computes the bicubic phases of features
    0-2 (3x3 window, renormalised), and the tail copies features 0-2 back to R, G, B."""
    net: Any = module
    if net.layout != "pytorch":
        raise ValueError("bicubic init is for the EDSR-PyTorch layout")
    head = net.head[0]
    c = head.kernel_size[0] // 2
    for ch in range(3):
        head.weight[ch].zero_()
        head.weight[ch, ch, c, c] = 1.0
        head.bias[ch] = 0.0
    for block in net.body[:-1]:
        block.body[2].weight.mul_(damp)
        block.body[2].bias.zero_()
    net.body[-1].weight.mul_(damp)
    net.body[-1].bias.zero_()
    for layer in net.tail[0]:
        if not isinstance(layer, nn.Conv2d):
            continue
        r = math.isqrt(layer.out_channels // layer.in_channels)
        assert isinstance(layer.padding, tuple) and layer.bias is not None  # for mypy
        taps = phase_taps(r, layer.kernel_size[0], layer.padding[0])
        layer.weight.mul_(damp)
        layer.bias.zero_()
        for ch in range(3):
            for py in range(r):
                for px in range(r):
                    out = ch * r * r + py * r + px
                    layer.weight[out, ch] = torch.outer(taps[py], taps[px]).float()
    tail = net.tail[1]
    c = tail.kernel_size[0] // 2
    tail.weight.mul_(damp)
    tail.bias.zero_()
    for ch in range(3):
        tail.weight[ch, :3].zero_()
        tail.weight[ch, ch, c, c] = 1.0


INITS.update(
    srcnn=bicubic_init_srcnn,
    vdsr=bicubic_init_vdsr,
    lapsrn=bicubic_init_lapsrn,
    edsr=bicubic_init_edsr,
)


@torch.no_grad()
def load_partial(module: nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Copy every tensor of ``state`` whose name and shape match ``module``'s; return the
    names copied. Used to warm-start (a longer run from shipped weights, x4 from x2)."""
    own = module.state_dict()
    copied = []
    for key, value in state.items():
        if key in own and own[key].shape == value.shape:
            own[key].copy_(value)
            copied.append(key)
    return copied


def apply_init(name: str, module: nn.Module, arch: str, scale: int, root: Any = None) -> None:
    """``default`` (PyTorch's), ``bicubic`` (for the archs in INITS), ``weights:PATH``
    (a .safetensors file, relative to ``root``; tensors matched by name and shape), or
    several joined by ``+``, applied in order."""
    if name in ("", "default"):
        return
    if "+" in name:  # several, in order: "bicubic+weights:x2.safetensors"
        for part in name.split("+"):
            apply_init(part, module, arch, scale, root)
        return
    if name.startswith("weights:"):
        from pathlib import Path

        from safetensors.torch import load_file

        path = Path(name[len("weights:") :])
        if root is not None and not path.is_absolute():
            path = Path(root) / path
        if not path.is_file():
            raise FileNotFoundError(f"init weights not found: {path}")
        copied = load_partial(module, load_file(str(path)))
        if not copied:
            raise ValueError(f"no tensor of {path.name} fits {arch} x{scale}")
        return
    if name != "bicubic" or arch not in INITS:
        raise ValueError(f"init {name!r} is not available for {arch}")
    INITS[arch](module, scale)
