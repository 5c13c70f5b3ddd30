"""SRCNN (Dong et al., 2014/2016): three convolutions on the bicubic-upscaled luma.

bicubic x r, conv k1 (c->f1) ReLU, conv k2 (f1->f2) ReLU, conv k3 (f2->c).

- The paper's network works on an image already upscaled by bicubic interpolation. To keep
  the backend contract (low-resolution in, ``scale`` x larger out) the module upscales its
  input itself, first thing in ``forward``.
- The paper's convolutions are 'valid' (the output loses 6 pixels per border for 9-5-5);
  here they are 'same' (zero padding k // 2), so the output is exactly ``scale`` x the input
  and the borders are predicted from zero-padded context. This is also the layout of the
  common PyTorch ports (``conv1``/``conv2``/``conv3`` with padding k // 2), whose state dicts
  ``detect`` accepts as they are.
- Widths (64/32) and kernel sizes (9-5-5, 9-3-5, 9-1-5) are inferred from the tensors.
- The tensors carry no scale: the same weights run at any scale (they were trained for one;
  ``detect`` reports ``scale=None``).

The bicubic upscaling is MATLAB's ``imresize`` (a = -0.5, mirrored borders;
``cubic="matlab"``, the default: SRCNN's and VDSR's inputs were made with it, as are vsr's
own training pairs) or OpenCV's ``INTER_CUBIC`` (a = -0.75, replicated borders;
``cubic="opencv"``); the choice is kept in the weights' metadata.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vsr.errors import WeightsError
from vsr.models.archs import interpolate
from vsr.models.archs.interpolate import PolyphaseResize, polyphase_taps
from vsr.models.spec import Detected, ModelSpec

#: The cubic kernel's ``a`` by name: MATLAB ``imresize`` and OpenCV ``INTER_CUBIC``.
CUBIC_A = {"matlab": -0.5, "opencv": -0.75}


class CubicUpsample(PolyphaseResize):
    """:class:`PolyphaseResize` (cubic, replicate borders) with the kernel's ``a`` chosen.

    The taps sit where ``PolyphaseResize`` puts OpenCV's (the support is 2 for every
    ``a``), only their values change.
    """

    def __init__(self, scale: int, cubic: str = "matlab") -> None:
        if cubic not in CUBIC_A:
            raise ValueError(f"unknown cubic kernel {cubic!r}: use {' or '.join(CUBIC_A)}")
        super().__init__(scale, "cubic")
        self.cubic = cubic
        a = CUBIC_A[cubic]
        reference, pad = polyphase_taps(scale, "cubic")
        taps = torch.zeros_like(reference)
        for p in range(scale):
            offset = (p + 0.5) / scale - 0.5
            base = math.floor(offset) - 1  # first of the 4 taps, relative to input pixel i
            weights = [interpolate.cubic(offset - (base + k), a) for k in range(4)]
            total = sum(weights)
            for k, w in enumerate(weights):
                taps[p, base + pad + k] = w / total
        self.taps = taps.float()

    def _resize_w(self, x: torch.Tensor) -> torch.Tensor:
        if self.cubic == "opencv" or x.shape[-1] < max(self.pad_lo, self.pad_hi):
            return super()._resize_w(x)  # replicate borders, as OpenCV
        # MATLAB imresize mirrors the border pixels: ... x1 x0 | x0 x1 ... (a symmetric pad)
        n, c, h, w = x.shape
        r, k = self.taps.shape
        left = x[..., : self.pad_lo].flip(-1)
        right = x[..., w - self.pad_hi :].flip(-1)
        x = torch.cat([left, x, right], dim=-1).reshape(n * c, 1, h, w + k - 1)
        y = F.conv2d(x, self.taps.to(x.dtype).reshape(r, 1, 1, k))
        return y.permute(0, 2, 3, 1).reshape(n, c, h, w * r)


class SRCNN(nn.Module):
    def __init__(
        self,
        scale: int,
        *,
        channels: int = 1,
        features: tuple[int, int] = (64, 32),
        kernels: tuple[int, int, int] = (9, 5, 5),
        cubic: str = "matlab",
    ) -> None:
        super().__init__()
        f1, f2 = features
        k1, k2, k3 = kernels
        self.scale = scale
        self.upsample = CubicUpsample(scale, cubic)
        self.conv1 = nn.Conv2d(channels, f1, k1, padding=k1 // 2)
        self.conv2 = nn.Conv2d(f1, f2, k2, padding=k2 // 2)
        self.conv3 = nn.Conv2d(f2, channels, k3, padding=k3 // 2)
        self.hparams = {"cubic": cubic}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.upsample(x)
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        return self.conv3(x)


_KEYS = tuple(f"conv{i}.{p}" for i in (1, 2, 3) for p in ("weight", "bias"))


def _shapes(state: dict[str, torch.Tensor]) -> tuple[int, tuple[int, int], tuple[int, int, int]]:
    """(channels, widths, kernel sizes) of an SRCNN state dict; ValueError if it is not one."""
    w1, w2, w3 = (state[f"conv{i}.weight"] for i in (1, 2, 3))
    if any(w.ndim != 4 or w.shape[2] != w.shape[3] or w.shape[2] % 2 == 0 for w in (w1, w2, w3)):
        raise ValueError("SRCNN's convolutions are square with odd kernels")
    channels = int(w1.shape[1])
    if w2.shape[1] != w1.shape[0] or w3.shape[1] != w2.shape[0] or w3.shape[0] != channels:
        raise ValueError(
            f"the widths do not chain: conv1 {tuple(w1.shape)}, conv2 {tuple(w2.shape)}, "
            f"conv3 {tuple(w3.shape)} (SRCNN's conv3 gives back the input's channels)"
        )
    for i, w in enumerate((w1, w2, w3), 1):
        if state[f"conv{i}.bias"].shape != (w.shape[0],):
            raise ValueError(f"conv{i}'s bias does not fit its weight")
    features = (int(w1.shape[0]), int(w2.shape[0]))
    kernels = (int(w1.shape[2]), int(w2.shape[2]), int(w3.shape[2]))
    return channels, features, kernels


def build(scale: int, state: dict[str, torch.Tensor] | None, meta: dict[str, str]) -> SRCNN:
    """Build from weights (widths and kernel sizes inferred) or as SRCNN 9-5-5, 64/32."""
    cubic = meta.get("cubic", "matlab")
    if cubic not in CUBIC_A:
        raise WeightsError(f"unknown cubic kernel {cubic!r} in the SRCNN weights' metadata")
    if state is None:
        return SRCNN(scale, cubic=cubic)
    try:
        channels, features, kernels = _shapes(state)
    except (KeyError, ValueError, IndexError) as exc:
        raise WeightsError(f"these are not SRCNN weights: {exc}") from None
    if channels != 1:
        raise WeightsError(
            f"these SRCNN weights take {channels} channels; vsr runs SRCNN on luma (1 channel)",
            hint="use weights trained on Y",
        )
    return SRCNN(scale, channels=channels, features=features, kernels=kernels, cubic=cubic)


def detect(state: dict[str, torch.Tensor]) -> Detected | None:
    """The ``conv1``/``conv2``/``conv3`` layout (an optional ``module.`` prefix dropped)."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if set(state) != set(_KEYS):
        return None
    try:
        _shapes(state)
    except (ValueError, IndexError):
        return None  # ESPCN has these keys too: its conv3 makes r*r channels
    return Detected(scale=None, state=state, meta={})


SPEC = ModelSpec(
    name="srcnn",
    arch="srcnn",
    scales=(2, 3, 4),
    channels=1,
    size_multiple=1,
    fp16=True,
    bf16=True,
    speed="medium",
    description="SRCNN: three convolutions on the bicubic-upscaled luma (9-5-5, 'same' padding)",
    build=build,
    detect=detect,
    licence="MIT (vsr's implementation); the authors' MATLAB/Caffe code: licence not verified",
)
