"""LapSRN (Lai et al., 2017) as in OpenCV dnn_superres's LapSRN_x{2,4,8} graphs, on luma.

A Laplacian pyramid of x2 levels. Level ``l`` reads two single-channel maps, the image
``img`` so far (the low-resolution input at the first level) and a feature map ``f`` (also
the input at the first level, then the previous level's upsampled residual):

    h   = act(conv3x3(f) + b)                    1 -> F channels
    h   = act(conv3x3(h) + b)                    (depth - 1) times, F -> F
    res = act(DepthToSpace2(conv4x4(h)))         the "deconvolution", F -> 4 -> 1, no bias
    img = act(DepthToSpace2(conv4x4(img)) + res)  the image branch, 1 -> 4 -> 1, no bias
    f   = res

with ``act`` the LeakyReLU of slope 0.2 (``relu(x) - 0.2 * relu(-x)`` in the graphs). The
4x4 convolutions use TensorFlow's 'SAME' padding: 1 pixel before and 2 after in each
dimension (torch pads symmetrically, so it is done by hand here).

This is what the OpenCV graphs compute, not exactly the paper's network (whose feature
branch carries 64 channels from level to level through a transposed convolution).
Each level gives the image at 2, 4, 8 x: :meth:`LapSRN.pyramid` returns all of them.

Key layout: ``levels.{l}.branch.{i}.weight/bias``, ``levels.{l}.upsample.weight``,
``levels.{l}.image.weight``. Levels (so the scale, 2 ** levels), depth, width and kernel
sizes are inferred from the tensors. ``vsr.models.opencv_pb`` converts the OpenCV files.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from vsr.errors import WeightsError
from vsr.models.spec import Detected, ModelSpec


def _same_pad(kernel: int) -> tuple[int, int, int, int]:
    """TensorFlow 'SAME' padding for stride 1 (F.pad order): the extra pixel goes after."""
    before = (kernel - 1) // 2
    after = kernel - 1 - before
    return (before, after, before, after)


class LapSRNLevel(nn.Module):
    """One x2 level: feature branch, upsampled residual, image branch."""

    def __init__(
        self,
        *,
        features: int = 64,
        depth: int = 10,
        kernel: int = 3,
        up_kernel: int = 4,
        negative_slope: float = 0.2,
    ) -> None:
        super().__init__()
        widths = [1] + [features] * depth
        self.branch = nn.ModuleList(
            nn.Conv2d(cin, cout, kernel, padding=kernel // 2)
            for cin, cout in zip(widths[:-1], widths[1:], strict=True)
        )
        self.upsample = nn.Conv2d(features, 4, up_kernel, bias=False)
        self.image = nn.Conv2d(1, 4, up_kernel, bias=False)
        self.shuffle = nn.PixelShuffle(2)
        self.pad = _same_pad(up_kernel)
        self.negative_slope = negative_slope

    def forward(self, img: torch.Tensor, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the image at twice the size, the residual that feeds the next level)."""
        act = self.negative_slope
        h = feat
        for conv in self.branch:
            h = F.leaky_relu(conv(h), act)
        res = F.leaky_relu(self.shuffle(self.upsample(F.pad(h, self.pad))), act)
        up = self.shuffle(self.image(F.pad(img, self.pad)))
        return F.leaky_relu(up + res, act), res


class LapSRN(nn.Module):
    def __init__(
        self,
        scale: int,
        *,
        features: int = 64,
        depth: int = 10,
        kernel: int = 3,
        up_kernel: int = 4,
        negative_slope: float = 0.2,
    ) -> None:
        super().__init__()
        levels = scale.bit_length() - 1
        if scale < 2 or 1 << levels != scale:
            raise ValueError(f"LapSRN scales are powers of two, not {scale}")
        self.scale = scale
        self.levels = nn.ModuleList(
            LapSRNLevel(
                features=features,
                depth=depth,
                kernel=kernel,
                up_kernel=up_kernel,
                negative_slope=negative_slope,
            )
            for _ in range(levels)
        )
        self.hparams = {"negative_slope": str(negative_slope)}

    def pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The image after each level: at 2x, 4x, ... the input's size."""
        out = []
        img = feat = x
        for level in self.levels:
            img, feat = level(img, feat)
            out.append(img)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        img = feat = x
        for level in self.levels:
            img, feat = level(img, feat)
        return img


_KEY = re.compile(r"levels\.(\d+)\.(?:branch\.(\d+)\.(weight|bias)|(upsample|image)\.weight)")


def _layout(state: dict[str, torch.Tensor]) -> dict[str, int]:
    """levels, features, depth, kernel, up_kernel of a state dict; ValueError if not LapSRN."""
    convs: dict[int, set[int]] = {}
    for key in state:
        m = _KEY.fullmatch(key)
        if m is None:
            raise ValueError(f"unexpected key {key!r}")
        convs.setdefault(int(m[1]), set())
        if m[2] is not None:
            convs[int(m[1])].add(int(m[2]))
    levels = len(convs)
    if levels == 0 or sorted(convs) != list(range(levels)):
        raise ValueError("the levels are not numbered 0 .. n - 1")
    first = state["levels.0.branch.0.weight"]
    features, kernel = int(first.shape[0]), int(first.shape[-1])
    depth = len(convs[0])
    up_kernel = int(state["levels.0.upsample.weight"].shape[-1])
    for lv, found in convs.items():
        if sorted(found) != list(range(depth)):
            raise ValueError(f"level {lv} has {len(found)} feature convolutions, level 0 {depth}")
        p = f"levels.{lv}."
        for i in range(depth):
            shape = (features, 1 if i == 0 else features, kernel, kernel)
            if tuple(state[f"{p}branch.{i}.weight"].shape) != shape:
                raise ValueError(f"{p}branch.{i}.weight is not {shape}")
            if tuple(state[f"{p}branch.{i}.bias"].shape) != (features,):
                raise ValueError(f"{p}branch.{i}.bias is not ({features},)")
        if tuple(state[f"{p}upsample.weight"].shape) != (4, features, up_kernel, up_kernel):
            raise ValueError(f"{p}upsample.weight is not (4, {features}, {up_kernel}, {up_kernel})")
        if tuple(state[f"{p}image.weight"].shape) != (4, 1, up_kernel, up_kernel):
            raise ValueError(f"{p}image.weight is not (4, 1, {up_kernel}, {up_kernel})")
    if kernel % 2 == 0:
        raise ValueError(f"the feature convolutions are {kernel}x{kernel}: even")
    return {
        "levels": levels,
        "features": features,
        "depth": depth,
        "kernel": kernel,
        "up_kernel": up_kernel,
    }


def build(scale: int, state: dict[str, torch.Tensor] | None, meta: dict[str, str]) -> LapSRN:
    """Build from weights (levels, depth, width, kernels inferred) or as OpenCV's graphs."""
    try:
        slope = float(meta.get("negative_slope", "0.2"))
    except ValueError:
        raise WeightsError(
            f"bad negative_slope {meta['negative_slope']!r} in the metadata"
        ) from None
    if state is None:
        return LapSRN(scale, negative_slope=slope)
    try:
        hp = _layout(state)
    except (KeyError, ValueError, IndexError) as exc:
        raise WeightsError(f"these are not LapSRN weights: {exc}") from None
    levels = hp.pop("levels")
    if 1 << levels != scale:
        raise WeightsError(
            f"these LapSRN weights are for x{1 << levels}, not x{scale}",
            hint=f"use -x {1 << levels} or other weights",
        )
    return LapSRN(scale, negative_slope=slope, **hp)


def detect(state: dict[str, torch.Tensor]) -> Detected | None:
    """vsr's layout (an optional ``module.`` prefix dropped); the scale is 2 ** levels."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    try:
        hp = _layout(state)
    except (KeyError, ValueError, IndexError):
        return None
    return Detected(scale=1 << hp["levels"], state=state, meta={})


SPEC = ModelSpec(
    name="lapsrn",
    arch="lapsrn",
    scales=(2, 4, 8),
    channels=1,
    size_multiple=1,
    fp16=True,
    bf16=True,
    speed="medium",
    description="LapSRN: a Laplacian pyramid of x2 levels on luma (the OpenCV dnn_superres graphs)",
    build=build,
    detect=detect,
    licence="MIT (vsr's implementation); phoenix104104/LapSRN, fannymonori/TF-LapSRN: not verified",
)
