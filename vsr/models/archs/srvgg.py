"""SRVGGNetCompact (Real-ESRGAN's compact models: realesr-animevideov3, realesr-general-x4v3).

``body``: conv3x3(3 -> num_feat), act, ``num_conv`` x [conv3x3(num_feat -> num_feat), act],
conv3x3(num_feat -> 3*r*r); PixelShuffle(r); plus the input upsampled nearest x r.
All convolutions work at low resolution, which makes it the fast RGB model of the
family. The key layout is the official one (``body.N``, activations take indices too).

num_feat, num_conv and r come from the tensors; the activation is PReLU when ``body.1``
has a weight (every published model), otherwise ``meta["act"]`` (``relu`` or
``leakyrelu``, slope 0.1), which the project's own safetensors files carry.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from vsr.errors import WeightsError
from vsr.models.spec import Detected, ModelSpec, check_shuffle_scale

_KEY = re.compile(r"body\.(\d+)\.(weight|bias)")


def _act(kind: str, num_feat: int) -> nn.Module:
    if kind == "prelu":
        return nn.PReLU(num_parameters=num_feat)
    if kind == "relu":
        return nn.ReLU(inplace=True)
    if kind == "leakyrelu":
        return nn.LeakyReLU(0.1, inplace=True)
    raise WeightsError(
        f"unknown SRVGGNetCompact activation {kind!r}", hint="prelu, relu, leakyrelu"
    )


class SRVGGNetCompact(nn.Module):
    """RGB in [0, 1], RGB out at ``scale`` x, not clamped."""

    def __init__(
        self,
        scale: int,
        *,
        num_feat: int = 64,
        num_conv: int = 16,
        act: str = "prelu",
        channels: int = 3,
    ) -> None:
        super().__init__()
        self.scale = scale
        layers: list[nn.Module] = [nn.Conv2d(channels, num_feat, 3, 1, 1), _act(act, num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), _act(act, num_feat)]
        layers.append(nn.Conv2d(num_feat, channels * scale * scale, 3, 1, 1))
        self.body = nn.ModuleList(layers)
        self.upsampler = nn.PixelShuffle(scale)
        self.hparams = {"num_feat": num_feat, "num_conv": num_conv, "act": act}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        out = self.upsampler(out)
        return out + F.interpolate(x, scale_factor=self.scale, mode="nearest")


def _convs(state: dict[str, torch.Tensor]) -> list[int] | None:
    """Indices of the 4-D (convolution) weights, or None when a key is not ``body.N.*``."""
    convs = []
    for key, value in state.items():
        m = _KEY.fullmatch(key)
        if m is None:
            return None
        if m.group(2) == "weight" and value.ndim == 4:
            convs.append(int(m.group(1)))
    return sorted(convs)


def _hparams(state: dict[str, torch.Tensor]) -> tuple[int, dict[str, int | str]] | None:
    convs = _convs(state)
    if not convs or len(convs) < 2 or convs != list(range(0, 2 * len(convs), 2)):
        return None
    first, last = state["body.0.weight"], state[f"body.{convs[-1]}.weight"]
    channels = int(first.shape[1])
    scale = round((int(last.shape[0]) / channels) ** 0.5)
    if scale < 1 or channels * scale * scale != int(last.shape[0]):
        return None
    act = "prelu" if "body.1.weight" in state else ""
    return scale, {
        "num_feat": int(first.shape[0]),
        "num_conv": len(convs) - 2,
        "act": act,
        "channels": channels,
    }


def detect(state: dict[str, torch.Tensor]) -> Detected | None:
    """The official layout with PReLU activations (as every published model has), RGB."""
    found = _hparams(state)
    if found is None or found[1]["act"] != "prelu" or found[1]["channels"] != 3:
        return None
    return Detected(scale=found[0], state=dict(state), meta={})


def build(
    scale: int, state: dict[str, torch.Tensor] | None, meta: dict[str, str]
) -> SRVGGNetCompact:
    """From weights (widths, depth and scale inferred) or fresh with ``meta``'s or the
    animevideov3 defaults (64 features, 16 convolutions, PReLU)."""
    if state is None:
        return SRVGGNetCompact(
            scale,
            num_feat=int(meta.get("num_feat", 64)),
            num_conv=int(meta.get("num_conv", 16)),
            act=meta.get("act", "prelu"),
        )
    found = _hparams(state)
    if found is None or found[1]["channels"] != 3:
        convs = _convs(state)
        if convs and "body.0.weight" in state:  # the right layout, a wrong last layer
            last = int(state[f"body.{convs[-1]}.weight"].shape[0])
            check_shuffle_scale("SRVGGNetCompact", last, 3, scale)
        raise WeightsError("these weights are not an RGB SRVGGNetCompact state dict")
    inferred, hp = found
    check_shuffle_scale("SRVGGNetCompact", 3 * inferred * inferred, 3, scale)
    return SRVGGNetCompact(
        scale,
        num_feat=int(hp["num_feat"]),
        num_conv=int(hp["num_conv"]),
        act=str(hp["act"] or meta.get("act", "leakyrelu")),
    )


SPEC = ModelSpec(
    name="realesrgan-compact",
    arch="realesrgan-compact",
    scales=(1, 2, 3, 4),
    channels=3,
    size_multiple=1,
    fp16=True,
    bf16=True,
    speed="medium",
    description=(
        "Real-ESRGAN compact (SRVGGNetCompact: realesr-animevideov3, realesr-general-x4v3): "
        "RGB, convolutions at low resolution, hyperparameters from the weights"
    ),
    build=build,
    detect=detect,
    licence="architecture: BSD-3-Clause (Real-ESRGAN); weights: as their source says "
    "(none shipped)",
)
