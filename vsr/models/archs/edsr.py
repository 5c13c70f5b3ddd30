"""EDSR (Lim et al., 2017) on RGB, in two layouts (``layout``, inferred from the tensors).

``layout="pytorch"``: the key layout of the official EDSR-PyTorch:

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

``layout="opencv"``: the graph of Saafke/EDSR_Tensorflow (``edsr.py``), which OpenCV's
dnn_superres runs (``setModel("edsr", r)``; converted by ``vsr.models.opencv_pb``):

    x * 255, RGB -> BGR, - OPENCV_BGR_MEAN, head.0 conv3x3 (3->F),
    body.{i} = ResBlock as above (res_scale 0.1 in every published graph),
    body.{n} conv3x3, + the head's output,
    tail.0 conv3x3 (F -> 3*r*r), tail.1 PixelShuffle(r)  (one stage, also for x4),
    + OPENCV_BGR_MEAN, BGR -> RGB, / 255.

- No final conv after the shuffle, no MeanShift layers: the mean is not in the graph but
  in OpenCV's ``DnnSuperResImpl::upsample`` (``blobFromImage`` subtracts it from the BGR
  image in 0..255, the output gets it back before ``convertTo(CV_8U)``). The module does
  the same around the network, so its contract stays RGB in [0, 1] -> RGB in [0, 1];
  the mean is a fixed buffer, not part of the state dict. ``rgb_range`` is always 255.
- The channel order inside is BGR, as in the graph: ``head.0`` reads B, G, R and
  ``tail.0`` writes them (its output channels reordered from TF's DepthToSpace to
  PixelShuffle order by the converter).
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

#: DIV2K's BGR mean in 0..255 as Saafke/EDSR_Tensorflow (``main.py``) trained with it and
#: OpenCV's dnn_superres (``dnn_superres.cpp``, the ``edsr`` branch of ``upsample``) uses it.
OPENCV_BGR_MEAN = (103.1545782, 111.561547, 114.35629928)

#: ``layout`` values: EDSR-PyTorch's keys and processing, or the OpenCV / Saafke graph's.
LAYOUTS = ("pytorch", "opencv")


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
    bgr_mean: torch.Tensor  # the opencv layout's (1, 3, 1, 1) buffer

    def __init__(
        self,
        scale: int,
        *,
        blocks: int = 16,
        features: int = 64,
        res_scale: float = 1.0,
        rgb_range: float = 255.0,
        layout: str = "pytorch",
    ) -> None:
        super().__init__()
        if layout not in LAYOUTS:
            raise ValueError(f"unknown EDSR layout {layout!r}")
        if layout == "opencv" and rgb_range != 255:
            raise ValueError("the opencv EDSR layout works on 0..255 (rgb_range 255)")
        self.scale = scale
        self.layout = layout
        self.rgb_range = rgb_range
        self.res_scale = res_scale
        if layout == "pytorch":
            self.sub_mean = MeanShift(rgb_range, -1)
            self.add_mean = MeanShift(rgb_range, 1)
        else:
            mean = torch.tensor(OPENCV_BGR_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
            self.register_buffer("bgr_mean", mean, persistent=False)
        self.head = nn.Sequential(nn.Conv2d(3, features, 3, padding=1))
        body: list[nn.Module] = [ResBlock(features, res_scale) for _ in range(blocks)]
        body.append(nn.Conv2d(features, features, 3, padding=1))
        self.body = nn.Sequential(*body)
        if layout == "pytorch":
            self.tail = nn.Sequential(
                _upsampler(scale, features), nn.Conv2d(features, 3, 3, padding=1)
            )
        else:
            self.tail = nn.Sequential(
                nn.Conv2d(features, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale)
            )
        self.hparams = {"layout": layout, "res_scale": str(res_scale), "rgb_range": str(rgb_range)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layout == "opencv":
            # OpenCV: blobFromImage(BGR uint8 as float, mean); net; + mean; convertTo(CV_8U)
            x = (x * 255.0).flip(1) - self.bgr_mean
            x = self.head(x)
            x = self.body(x) + x
            return (self.tail(x) + self.bgr_mean).flip(1) / 255.0
        x = self.sub_mean(x * self.rgb_range)
        x = self.head(x)
        x = self.body(x) + x
        x = self.add_mean(self.tail(x))
        return x * (1.0 / self.rgb_range)


_BLOCK = re.compile(r"body\.(\d+)\.body\.([02])\.(weight|bias)")
_CONV = re.compile(
    r"(?:head\.0|body\.(\d+)|tail\.0\.(\d+)|tail\.0|tail\.1|sub_mean|add_mean)\.(weight|bias)"
)


def _opencv_scale(state: dict[str, torch.Tensor], features: int) -> int:
    """The scale of the opencv layout's single upsampling conv (F -> 3*r*r)."""
    shape = tuple(state["tail.0.weight"].shape)
    r = math.isqrt(shape[0] // 3)
    if r < 2 or shape != (3 * r * r, features, 3, 3):
        raise ValueError(f"tail.0.weight is {shape}, not (3*r*r, {features}, 3, 3)")
    return r


def _layout(state: dict[str, torch.Tensor]) -> tuple[int, int, int, str]:
    """(blocks, features, scale, layout) of an EDSR state dict in either layout;
    ValueError if it is neither."""
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
    expected = {"head.0.weight", "head.0.bias"}
    expected |= {f"body.{n}.{p}" for p in ("weight", "bias")}
    expected |= {
        f"body.{i}.body.{j}.{p}" for i in range(n) for j in (0, 2) for p in ("weight", "bias")
    }
    if "tail.0.weight" in state:  # OpenCV / Saafke: one conv to 3*r*r, no final conv
        scale = _opencv_scale(state, features)
        expected |= {"tail.0.weight", "tail.0.bias"}
        _check_keys(state, expected)
        return n, features, scale, "opencv"
    if not stages or sorted(stages) != list(range(0, 2 * len(stages), 2)):
        raise ValueError("the upsampler's convolutions are not tail.0.0, tail.0.2, ...")
    widths = {int(state[f"tail.0.{i}.weight"].shape[0]) for i in stages}
    if widths == {9 * features} and len(stages) == 1:
        scale = 3
    elif widths == {4 * features}:
        scale = 2 ** len(stages)
    else:
        raise ValueError(f"the upsampler makes {sorted(widths)} channels from {features}")
    expected |= {"tail.1.weight", "tail.1.bias"}
    expected |= {f"tail.0.{i}.{p}" for i in stages for p in ("weight", "bias")}
    expected |= {f"{m}.{p}" for m in ("sub_mean", "add_mean") for p in ("weight", "bias")}
    _check_keys(state, expected)
    return n, features, scale, "pytorch"


def _check_keys(state: dict[str, torch.Tensor], expected: set[str]) -> None:
    if set(state) != expected:
        missing = sorted(expected - set(state))
        raise ValueError(f"missing {', '.join(missing[:3])}" if missing else "unexpected keys")


def _res_scale(features: int, meta: dict[str, str], layout: str) -> float:
    if "res_scale" in meta:
        try:
            return float(meta["res_scale"])
        except ValueError:
            raise WeightsError(f"bad res_scale {meta['res_scale']!r} in the metadata") from None
    if layout == "opencv":
        return 0.1  # Saafke/EDSR_Tensorflow's scaling_factor, in every block
    return 0.1 if features == 256 else 1.0  # EDSR-PyTorch's EDSR_paper template / default


def _meta_layout(meta: dict[str, str]) -> str | None:
    layout = meta.get("layout")
    if layout is not None and layout not in LAYOUTS:
        raise WeightsError(f"bad EDSR layout {layout!r} in the metadata", hint="pytorch or opencv")
    return layout


def build(scale: int, state: dict[str, torch.Tensor] | None, meta: dict[str, str]) -> EDSR:
    """Build from weights (blocks, width, scale and layout inferred) or as the baseline
    16 x 64 (in the metadata's layout, EDSR-PyTorch's by default)."""
    try:
        rgb_range = float(meta.get("rgb_range", "255"))
    except ValueError:
        raise WeightsError(f"bad rgb_range {meta['rgb_range']!r} in the metadata") from None
    wanted = _meta_layout(meta)
    if state is None:
        layout = wanted or "pytorch"
        blocks, features, found = 16, 64, scale
    else:
        try:
            blocks, features, found, layout = _layout(state)
        except (KeyError, ValueError, IndexError) as exc:
            raise WeightsError(f"these are not EDSR weights: {exc}") from None
        if wanted is not None and wanted != layout:
            raise WeightsError(
                f"these EDSR weights have the {layout} layout, the metadata says {wanted}"
            )
    if found != scale:
        raise WeightsError(
            f"these EDSR weights are for x{found}, not x{scale}",
            hint=f"use -x {found} or other weights",
        )
    if layout == "opencv" and rgb_range != 255:
        raise WeightsError(f"the opencv EDSR layout works on 0..255, not rgb_range {rgb_range:g}")
    return EDSR(
        scale,
        blocks=blocks,
        features=features,
        res_scale=_res_scale(features, meta, layout),
        rgb_range=rgb_range,
        layout=layout,
    )


def detect(state: dict[str, torch.Tensor]) -> Detected | None:
    """EDSR-PyTorch's layout as its ``.pt`` files hold it (``module.`` prefixes dropped;
    ``sub_mean``/``add_mean`` added with the DIV2K mean at rgb_range 255 when absent), or
    the opencv layout (``tail.0`` a single conv; no mean shifts)."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if "head.0.weight" not in state:
        return None
    opencv = "tail.0.weight" in state
    if not opencv and not any(k.startswith(("sub_mean.", "add_mean.")) for k in state):
        for name, sign in (("sub_mean", -1), ("add_mean", 1)):
            state[f"{name}.weight"], state[f"{name}.bias"] = _mean_shift(255.0, sign)
    try:
        _blocks, _features, scale, layout = _layout(state)
    except (KeyError, ValueError, IndexError):
        return None
    return Detected(scale=scale, state=state, meta={"layout": layout} if opencv else {})


SPEC = ModelSpec(
    name="edsr",
    arch="edsr",
    scales=(2, 3, 4),
    channels=3,
    size_multiple=1,
    fp16=True,
    bf16=True,
    speed="slow",
    description="EDSR: residual blocks without batch norm on RGB (baseline 16x64, paper 32x256; "
    "OpenCV dnn_superres .pb)",
    build=build,
    detect=detect,
    licence="MIT (EDSR-PyTorch, Sanghyun Son)",
)
