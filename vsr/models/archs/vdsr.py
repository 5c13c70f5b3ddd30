"""VDSR (Kim et al., 2016): a deep plain network predicting the residual to bicubic, on luma.

bicubic x r = u; conv3x3 (c->f) ReLU, (depth - 2) x [conv3x3 (f->f) ReLU], conv3x3 (f->c); + u.

- Like SRCNN, the network works on the bicubic-upscaled image; the module upscales its
  low-resolution input itself (:class:`vsr.models.archs.srcnn.CubicUpsample`, MATLAB's
  kernel by default) so the backend contract (LR in, HR out) holds. 'same' padding.
- One set of weights serves every scale (the paper trains one network on x2, x3 and x4):
  the tensors carry no scale, ``detect`` reports ``scale=None``, and the module's
  ``hparams`` write ``scale = "any"`` into exported weights so that ``load_model`` takes
  the same file at x2, x3 and x4.
- Depth (20), width (64) and whether the convolutions have biases (the paper's do; the
  popular PyTorch port's do not) are inferred from the tensors.

Key layout: ``layers.{i}.weight`` / ``layers.{i}.bias``, i = 0 .. depth - 1. ``detect`` also
maps the layout of twtygqyy/pytorch-vdsr (``input``, ``residual_layer.{i}.conv``,
``output``, no biases) onto it.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from vsr.errors import WeightsError
from vsr.models.archs.srcnn import CUBIC_A, CubicUpsample
from vsr.models.spec import Detected, ModelSpec


class VDSR(nn.Module):
    def __init__(
        self,
        scale: int,
        *,
        depth: int = 20,
        features: int = 64,
        channels: int = 1,
        bias: bool = True,
        cubic: str = "matlab",
    ) -> None:
        super().__init__()
        if depth < 2:
            raise ValueError("VDSR needs at least two convolutions")
        self.scale = scale
        self.upsample = CubicUpsample(scale, cubic)
        widths = [channels] + [features] * (depth - 1) + [channels]
        self.layers = nn.ModuleList(
            nn.Conv2d(cin, cout, 3, padding=1, bias=bias)
            for cin, cout in zip(widths[:-1], widths[1:], strict=True)
        )
        self.hparams = {"scale": "any", "cubic": cubic}

    def set_scale(self, scale: int) -> None:
        """Serve another scale with the same weights (the upsampler holds no parameters)."""
        if scale != self.scale:
            self.scale = scale
            device = next(self.parameters()).device
            self.upsample = CubicUpsample(scale, self.upsample.cubic).to(device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = self.upsample(x)
        h = up
        for conv in self.layers[:-1]:
            h = F.relu(conv(h))
        return self.layers[-1](h) + up


_OWN = re.compile(r"layers\.(\d+)\.(weight|bias)")


def _layout(state: dict[str, torch.Tensor]) -> tuple[int, int, int, bool]:
    """(depth, features, channels, bias) of a state dict in vsr's layout; ValueError if not."""
    found: dict[int, set[str]] = {}
    for key in state:
        m = _OWN.fullmatch(key)
        if m is None:
            raise ValueError(f"unexpected key {key!r}")
        found.setdefault(int(m.group(1)), set()).add(m.group(2))
    depth = len(found)
    if depth < 2 or sorted(found) != list(range(depth)):
        raise ValueError("the layers are not numbered 0 .. depth - 1")
    bias = "bias" in found[0]
    if any(("bias" in parts) != bias or "weight" not in parts for parts in found.values()):
        raise ValueError("some layers have a bias and others not")
    first = state["layers.0.weight"]
    channels, features = int(first.shape[1]), int(first.shape[0])
    for i in range(depth):
        w = state[f"layers.{i}.weight"]
        cin = channels if i == 0 else features
        cout = channels if i == depth - 1 else features
        if tuple(w.shape) != (cout, cin, 3, 3):
            raise ValueError(f"layer {i} is {tuple(w.shape)}, not ({cout}, {cin}, 3, 3)")
        if bias and tuple(state[f"layers.{i}.bias"].shape) != (cout,):
            raise ValueError(f"layer {i}'s bias does not fit its weight")
    return depth, features, channels, bias


def build(scale: int, state: dict[str, torch.Tensor] | None, meta: dict[str, str]) -> VDSR:
    """Build from weights (depth, width, biases inferred) or as the paper's 20 x 64."""
    cubic = meta.get("cubic", "matlab")
    if cubic not in CUBIC_A:
        raise WeightsError(f"unknown cubic kernel {cubic!r} in the VDSR weights' metadata")
    if state is None:
        return VDSR(scale, cubic=cubic)
    try:
        depth, features, channels, bias = _layout(state)
    except (KeyError, ValueError, IndexError) as exc:
        raise WeightsError(f"these are not VDSR weights: {exc}") from None
    if channels != 1:
        raise WeightsError(
            f"these VDSR weights take {channels} channels; vsr runs VDSR on luma (1 channel)",
            hint="use weights trained on Y",
        )
    return VDSR(scale, depth=depth, features=features, channels=channels, bias=bias, cubic=cubic)


_PORT = re.compile(r"(input|output|residual_layer\.(\d+)\.conv)\.(weight|bias)")


def detect(state: dict[str, torch.Tensor]) -> Detected | None:
    """vsr's layout, or twtygqyy/pytorch-vdsr's (``input``, ``residual_layer.{i}.conv``,
    ``output``); an optional ``module.`` prefix is dropped."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if not all(_PORT.fullmatch(k) for k in state):
        converted = state
    else:
        middle = sorted({int(m.group(2)) for k in state if (m := _PORT.fullmatch(k)) and m[2]})
        if middle != list(range(len(middle))):
            return None
        last = len(middle) + 1
        converted = {}
        for key, value in state.items():
            m = _PORT.fullmatch(key)
            assert m is not None
            index = 0 if m[1] == "input" else last if m[1] == "output" else int(m[2]) + 1
            converted[f"layers.{index}.{m[3]}"] = value
    try:
        _layout(converted)
    except (KeyError, ValueError, IndexError):
        return None
    return Detected(scale=None, state=converted, meta={"scale": "any"})


SPEC = ModelSpec(
    name="vdsr",
    arch="vdsr",
    scales=(2, 3, 4),
    channels=1,
    size_multiple=1,
    fp16=True,
    bf16=True,
    speed="slow",
    description="VDSR: 20 convolutions add a residual to bicubic on luma; one net for x2-x4",
    build=build,
    detect=detect,
    licence="MIT (vsr's implementation); the authors' MATLAB code: licence not verified",
)
