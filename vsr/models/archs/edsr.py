"""EDSR (Lim et al., 2017) with the key layout of the official EDSR-PyTorch, on RGB.

    x * rgb_range, sub_mean, head.0 conv3x3 (3->F),
    body.{i} = ResBlock: x + res_scale * conv3x3(ReLU(conv3x3(x)))  (body.{i}.body.{0,2}),
    body.{n} conv3x3, + the head's output (global skip),
    tail.0 Upsampler: x2/x4 one/two [conv3x3 (F->4F), PixelShuffle(2)] (tail.0.0, tail.0.2),
                      x3 [conv3x3 (F->9F), PixelShuffle(3)] (tail.0.0),
    tail.1 conv3x3 (F->3), add_mean, / rgb_range.

- ``sub_mean``/``add_mean`` are EDSR-PyTorch's ``MeanShift``: fixed 1x1 convolutions that
  subtract and add the DIV2K RGB mean (0.4488, 0.4371, 0.4040) times ``rgb_range``. They are
  part of the state dict (``detect`` fills them in with those values when a file lacks them).
- The official networks work on RGB in [0, 255] (``rgb_range`` 255); vsr's contract is RGB
  in [0, 1], so the module scales by ``rgb_range`` on the way in and out.
- Blocks, width and the scale (from the upsampler's tensors) are inferred from the weights;
  ``res_scale`` is not in the tensors: it is 0.1 for the 256-wide "paper" EDSR and 1 for
  the 64-wide baseline, as EDSR-PyTorch's templates set it, unless the metadata says.
"""

from __future__ import annotations

import math
import re

import torch
from torch import nn

from vsr.errors import WeightsError
from vsr.models.spec import Detected, ModelSpec

#: DIV2K's RGB mean, as EDSR-PyTorch's MeanShift uses it.
DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)


def _mean_shift(rgb_range: float, sign: int) -> tuple[torch.Tensor, torch.Tensor]:
    """MeanShift's (weight, bias): the identity, and ``sign * rgb_range * mean``."""
    return torch.eye(3).view(3, 3, 1, 1), sign * rgb_range * torch.tensor(DIV2K_RGB_MEAN)


class MeanShift(nn.Conv2d):
    """EDSR-PyTorch's MeanShift: a frozen 1x1 convolution adding ``sign * rgb_range * mean``."""

    def __init__(self, rgb_range: float, sign: int) -> None:
        super().__init__(3, 3, 1)
        weight, bias = _mean_shift(rgb_range, sign)
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(bias)
        for p in self.parameters():
            p.requires_grad = False


class ResBlock(nn.Module):
    def __init__(self, features: int, res_scale: float) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(features, features, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(features, features, 3, padding=1),
        )
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) * self.res_scale


def _upsampler(scale: int, features: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    if scale == 3:
        layers += [nn.Conv2d(features, 9 * features, 3, padding=1), nn.PixelShuffle(3)]
    elif scale >= 2 and scale & (scale - 1) == 0:
        for _ in range(int(math.log2(scale))):
            layers += [nn.Conv2d(features, 4 * features, 3, padding=1), nn.PixelShuffle(2)]
    else:
        raise ValueError(f"EDSR upsamples by 2, 3, 4 or 8, not {scale}")
    return nn.Sequential(*layers)


class EDSR(nn.Module):
    def __init__(
        self,
        scale: int,
        *,
        blocks: int = 16,
        features: int = 64,
        res_scale: float = 1.0,
        rgb_range: float = 255.0,
    ) -> None:
        super().__init__()
        self.scale = scale
        self.rgb_range = rgb_range
        self.res_scale = res_scale
        self.sub_mean = MeanShift(rgb_range, -1)
        self.add_mean = MeanShift(rgb_range, 1)
        self.head = nn.Sequential(nn.Conv2d(3, features, 3, padding=1))
        body: list[nn.Module] = [ResBlock(features, res_scale) for _ in range(blocks)]
        body.append(nn.Conv2d(features, features, 3, padding=1))
        self.body = nn.Sequential(*body)
        self.tail = nn.Sequential(_upsampler(scale, features), nn.Conv2d(features, 3, 3, padding=1))
        self.hparams = {"res_scale": str(res_scale), "rgb_range": str(rgb_range)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.sub_mean(x * self.rgb_range)
        x = self.head(x)
        x = self.body(x) + x
        x = self.add_mean(self.tail(x))
        return x * (1.0 / self.rgb_range)


_BLOCK = re.compile(r"body\.(\d+)\.body\.([02])\.(weight|bias)")
_CONV = re.compile(
    r"(?:head\.0|body\.(\d+)|tail\.0\.(\d+)|tail\.1|sub_mean|add_mean)\.(weight|bias)"
)


def _layout(state: dict[str, torch.Tensor]) -> tuple[int, int, int]:
    """(blocks, features, scale) of an EDSR-PyTorch state dict; ValueError if not one."""
    blocks: set[int] = set()
    singles: set[int] = set()
    stages: set[int] = set()
    for key in state:
        if m := _BLOCK.fullmatch(key):
            blocks.add(int(m[1]))
        elif m := _CONV.fullmatch(key):
            if m[1] is not None:
                singles.add(int(m[1]))
            if m[2] is not None:
                stages.add(int(m[2]))
        else:
            raise ValueError(f"unexpected key {key!r}")
    n = len(blocks)
    if sorted(blocks) != list(range(n)) or singles != {n}:
        raise ValueError("the body is not blocks 0 .. n - 1 and a final conv n")
    head = state["head.0.weight"]
    features = int(head.shape[0])
    if tuple(head.shape) != (features, 3, 3, 3):
        raise ValueError(f"head.0.weight is {tuple(head.shape)}, not (F, 3, 3, 3)")
    if not stages or sorted(stages) != list(range(0, 2 * len(stages), 2)):
        raise ValueError("the upsampler's convolutions are not tail.0.0, tail.0.2, ...")
    widths = {int(state[f"tail.0.{i}.weight"].shape[0]) for i in stages}
    if widths == {9 * features} and len(stages) == 1:
        scale = 3
    elif widths == {4 * features}:
        scale = 2 ** len(stages)
    else:
        raise ValueError(f"the upsampler makes {sorted(widths)} channels from {features}")
    expected = {"head.0.weight", "head.0.bias", "tail.1.weight", "tail.1.bias"}
    expected |= {f"body.{n}.{p}" for p in ("weight", "bias")}
    expected |= {
        f"body.{i}.body.{j}.{p}" for i in range(n) for j in (0, 2) for p in ("weight", "bias")
    }
    expected |= {f"tail.0.{i}.{p}" for i in stages for p in ("weight", "bias")}
    expected |= {f"{m}.{p}" for m in ("sub_mean", "add_mean") for p in ("weight", "bias")}
    if set(state) != expected:
        missing = sorted(expected - set(state))
        raise ValueError(f"missing {', '.join(missing[:3])}" if missing else "unexpected keys")
    return n, features, scale


def _res_scale(features: int, meta: dict[str, str]) -> float:
    if "res_scale" in meta:
        try:
            return float(meta["res_scale"])
        except ValueError:
            raise WeightsError(f"bad res_scale {meta['res_scale']!r} in the metadata") from None
    return 0.1 if features == 256 else 1.0  # EDSR-PyTorch's EDSR_paper template / default


def build(scale: int, state: dict[str, torch.Tensor] | None, meta: dict[str, str]) -> EDSR:
    """Build from weights (blocks, width, scale inferred) or as the baseline 16 x 64."""
    try:
        rgb_range = float(meta.get("rgb_range", "255"))
    except ValueError:
        raise WeightsError(f"bad rgb_range {meta['rgb_range']!r} in the metadata") from None
    if state is None:
        return EDSR(scale, res_scale=_res_scale(64, meta), rgb_range=rgb_range)
    try:
        blocks, features, found = _layout(state)
    except (KeyError, ValueError, IndexError) as exc:
        raise WeightsError(f"these are not EDSR weights: {exc}") from None
    if found != scale:
        raise WeightsError(
            f"these EDSR weights are for x{found}, not x{scale}",
            hint=f"use -x {found} or other weights",
        )
    return EDSR(
        scale,
        blocks=blocks,
        features=features,
        res_scale=_res_scale(features, meta),
        rgb_range=rgb_range,
    )


def detect(state: dict[str, torch.Tensor]) -> Detected | None:
    """EDSR-PyTorch's layout as its ``.pt`` files hold it (``module.`` prefixes dropped;
    ``sub_mean``/``add_mean`` added with the DIV2K mean at rgb_range 255 when absent)."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if "head.0.weight" not in state:
        return None
    if not any(k.startswith(("sub_mean.", "add_mean.")) for k in state):
        for name, sign in (("sub_mean", -1), ("add_mean", 1)):
            state[f"{name}.weight"], state[f"{name}.bias"] = _mean_shift(255.0, sign)
    try:
        _blocks, _features, scale = _layout(state)
    except (KeyError, ValueError, IndexError):
        return None
    return Detected(scale=scale, state=state, meta={})


SPEC = ModelSpec(
    name="edsr",
    arch="edsr",
    scales=(2, 3, 4),
    channels=3,
    size_multiple=1,
    fp16=True,
    bf16=True,
    speed="slow",
    description="EDSR: residual blocks without batch norm on RGB (baseline 16x64, paper 32x256)",
    build=build,
    detect=detect,
    licence="MIT (EDSR-PyTorch, Sanghyun Son)",
)
