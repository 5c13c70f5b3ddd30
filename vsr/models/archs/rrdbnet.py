"""RRDBNet (Wang et al., 2018): ESRGAN and Real-ESRGAN's generator, on RGB.

conv_first, ``num_block`` residual-in-residual dense blocks (each three 5-conv dense
blocks, residuals scaled by 0.2), conv_body + long skip, then nearest x2 + conv + LeakyReLU
per upsampling step, conv_hr, conv_last. Real-ESRGAN's x2/x1 models pixel-unshuffle the
input first (by 2 / 4) and keep the two x2 steps; old ESRGAN community models instead
use 1 (x2), 0 (x1) or 3 (x8) steps. So the scale is ``2 ** steps / unshuffle``.

Everything is inferred from the tensors: num_feat, num_block, num_grow_ch, the number
of upsampling steps and the unshuffle factor (conv_first's input width: 3, 12 or 48).

The internal key layout is Real-ESRGAN/BasicSR's (``conv_first``, ``body.N.rdb1.conv1``,
``conv_body``, ``conv_up1``.., ``conv_hr``, ``conv_last``). ``detect`` also reads the
ESRGAN repository's "new" layout (``RRDB_trunk.N.RDB1.conv1``, ``trunk_conv``,
``upconv1``, ``HRconv``) and the "old" sequential layout (``model.0``,
``model.1.sub.N.RDB1.conv1.0``, ``model.3``, ``model.6``, ``model.8``, ``model.10``).
Variants it does not run (ESRGAN+ ``conv1x1`` blocks, other channel counts) are left to
spandrel under ``-m auto``. An old-layout x3 model (one nearest x3 step) has exactly the
tensors of an x2 one and is read as x2, as spandrel does too.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from vsr.errors import WeightsError
from vsr.models.spec import Detected, ModelSpec

_UNSHUFFLE = {1: 1, 4: 2, 16: 4}  # conv_first input width / channels -> unshuffle factor


class ResidualDenseBlock(nn.Module):
    """Five 3x3 convolutions, each seeing all earlier outputs; residual scaled by 0.2."""

    def __init__(self, num_feat: int, num_grow_ch: int) -> None:
        super().__init__()
        f, g = num_feat, num_grow_ch
        self.conv1 = nn.Conv2d(f, g, 3, 1, 1)
        self.conv2 = nn.Conv2d(f + g, g, 3, 1, 1)
        self.conv3 = nn.Conv2d(f + 2 * g, g, 3, 1, 1)
        self.conv4 = nn.Conv2d(f + 3 * g, g, 3, 1, 1)
        self.conv5 = nn.Conv2d(f + 4 * g, f, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x


class RRDB(nn.Module):
    """Residual in residual dense block: three dense blocks and a scaled skip."""

    def __init__(self, num_feat: int, num_grow_ch: int) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """RGB in [0, 1], RGB out at ``scale`` x (``2 ** num_up / unshuffle``), not clamped."""

    def __init__(
        self,
        *,
        num_feat: int = 64,
        num_block: int = 23,
        num_grow_ch: int = 32,
        num_up: int = 2,
        unshuffle: int = 1,
        channels: int = 3,
    ) -> None:
        super().__init__()
        if (1 << num_up) % unshuffle:
            raise ValueError(
                f"{num_up} x2 steps after unshuffle {unshuffle} is not an integer scale"
            )
        self.scale = (1 << num_up) // unshuffle
        self.unshuffle = unshuffle
        #: input size requirement: the pixel-unshuffle needs sizes divisible by its factor
        self.size_multiple = unshuffle
        self.conv_first = nn.Conv2d(channels * unshuffle * unshuffle, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*(RRDB(num_feat, num_grow_ch) for _ in range(num_block)))
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.ups = [f"conv_up{i + 1}" for i in range(num_up)]
        for name in self.ups:
            self.add_module(name, nn.Conv2d(num_feat, num_feat, 3, 1, 1))
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, channels, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)
        self.hparams = {
            "num_feat": num_feat,
            "num_block": num_block,
            "num_grow_ch": num_grow_ch,
            "num_up": num_up,
            "unshuffle": unshuffle,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.unshuffle > 1:
            x = F.pixel_unshuffle(x, self.unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        for name in self.ups:
            up = F.interpolate(feat, scale_factor=2, mode="nearest")
            feat = self.lrelu(getattr(self, name)(up))
        return self.conv_last(self.lrelu(self.conv_hr(feat)))


# -- foreign key layouts -> the internal (Real-ESRGAN/BasicSR) layout --------------------

_NEW_BLOCK = re.compile(r"RRDB_trunk\.(\d+)\.RDB(\d)\.conv(\d)\.(weight|bias)$")
_OLD_BLOCK = re.compile(r"model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)$")
_OLD_TOP = re.compile(r"model\.(\d+)\.(weight|bias)$")
_NEW_RENAME = {"trunk_conv": "conv_body", "HRconv": "conv_hr", "conv_last": "conv_last"}


def _from_new(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """ESRGAN repository layout (RRDB_trunk/trunk_conv/upconvN/HRconv)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        m = _NEW_BLOCK.match(key)
        if m:
            n, r, c, kind = m.groups()
            out[f"body.{n}.rdb{r}.conv{c}.{kind}"] = value
            continue
        head, _, kind = key.rpartition(".")
        if head in ("conv_first", *_NEW_RENAME):
            out[f"{_NEW_RENAME.get(head, head)}.{kind}"] = value
        elif re.fullmatch(r"upconv\d", head):
            out[f"conv_up{head[6:]}.{kind}"] = value
        else:
            return None
    return out


def _from_old(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """Old ESRGAN sequential layout: model.0 first conv, model.1.sub.N blocks and
    model.1.sub.<num_block> trunk conv, then upconvs at model.3, 6, 9.., HR conv and
    last conv two and four places after the last upconv."""
    out: dict[str, torch.Tensor] = {}
    blocks = {int(m.group(1)) for k in state if (m := _OLD_BLOCK.match(k))}
    nb = len(blocks)
    top: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        m = _OLD_BLOCK.match(key)
        if m:
            n, r, c, kind = m.groups()
            out[f"body.{n}.rdb{r}.conv{c}.{kind}"] = value
            continue
        m = re.fullmatch(rf"model\.1\.sub\.{nb}\.(weight|bias)", key)
        if m:
            out[f"conv_body.{m.group(1)}"] = value
            continue
        m = _OLD_TOP.match(key)
        if not m:
            return None
        top.setdefault(int(m.group(1)), {})[m.group(2)] = value
    if 0 not in top or len(top) < 3:
        return None
    first = top.pop(0)
    *ups, hr, last = sorted(top)
    # upconvs sit at 3, 6, 9, ..; conv_hr 2 and conv_last 4 places after the last one
    if ups != [3 * (i + 1) for i in range(len(ups))] or (hr, last) != (
        (ups[-1] if ups else 0) + 2,
        (ups[-1] if ups else 0) + 4,
    ):
        return None
    pairs = [("conv_first", first), ("conv_hr", top[hr]), ("conv_last", top[last])]
    pairs += [(f"conv_up{i + 1}", top[idx]) for i, idx in enumerate(ups)]
    for name, tensors in pairs:
        for kind, value in tensors.items():
            out[f"{name}.{kind}"] = value
    return out


def _hparams(state: dict[str, torch.Tensor]) -> dict[str, int] | None:
    """num_feat, num_block, num_grow_ch, num_up and unshuffle from internal-layout tensors."""
    try:
        first = state["conv_first.weight"]
        grow = state["body.0.rdb1.conv1.weight"]
        last = state["conv_last.weight"]
    except KeyError:
        return None
    if first.ndim != 4 or grow.ndim != 4 or last.ndim != 4:
        return None
    ratio, rest = divmod(int(first.shape[1]), int(last.shape[0]))
    unshuffle = _UNSHUFFLE.get(ratio)
    if unshuffle is None or rest:
        return None
    num_block = len({k.split(".")[1] for k in state if k.startswith("body.")})
    num_up = len({k.split(".")[0] for k in state if re.match(r"conv_up\d+\.", k)})
    if (1 << num_up) % unshuffle:
        return None
    return {
        "num_feat": int(first.shape[0]),
        "num_block": num_block,
        "num_grow_ch": int(grow.shape[0]),
        "num_up": num_up,
        "unshuffle": unshuffle,
        "channels": int(last.shape[0]),
    }


_INTERNAL_KEY = re.compile(
    r"(conv_first|conv_body|conv_up\d+|conv_hr|conv_last|body\.\d+\.rdb[123]\.conv[1-5])"
    r"\.(weight|bias)"
)


def detect(state: dict[str, torch.Tensor]) -> Detected | None:
    """Recognise an RRDBNet state dict in any of the three layouts; RGB models only.

    Returns None for anything else (ESRGAN+ / other widths of channels included), so
    that ``-m auto`` can hand those to spandrel."""
    if "conv_first.weight" in state and any(k.startswith("body.") for k in state):
        ok = all(_INTERNAL_KEY.fullmatch(k) for k in state)
        internal: dict[str, torch.Tensor] | None = dict(state) if ok else None
    elif "conv_first.weight" in state and any(k.startswith("RRDB_trunk.") for k in state):
        internal = _from_new(state)
    elif "model.0.weight" in state and any(_OLD_BLOCK.match(k) for k in state):
        internal = _from_old(state)
    else:
        return None
    if internal is None:
        return None
    hp = _hparams(internal)
    if hp is None or hp["channels"] != 3:
        return None
    scale = (1 << hp["num_up"]) // hp["unshuffle"]
    return Detected(scale=scale, state=internal, meta={})


def build(scale: int, state: dict[str, torch.Tensor] | None, meta: dict[str, str]) -> RRDBNet:
    """From internal-layout weights (everything inferred), or fresh at ``scale``: x4/x8 by
    nearest x2 steps, x2/x1 Real-ESRGAN style (pixel-unshuffle, then x4); widths from
    ``meta`` (``num_feat``, ``num_block``, ``num_grow_ch``) or the published 64/23/32."""
    if state is not None:
        hp = _hparams(state)
        if hp is None or hp["channels"] != 3:
            raise WeightsError("these weights are not an RGB RRDBNet (ESRGAN) state dict")
        net = RRDBNet(**hp)
        if net.scale != scale:
            raise WeightsError(
                f"these ESRGAN weights are for x{net.scale}, not x{scale}",
                hint=f"use -x {net.scale} or other weights",
            )
        return net
    if scale not in (1, 2, 4, 8):
        raise WeightsError(f"RRDBNet has no x{scale} layout", hint="use x1, x2, x4 or x8")
    num_up, unshuffle = {1: (2, 4), 2: (2, 2), 4: (2, 1), 8: (3, 1)}[scale]
    return RRDBNet(
        num_feat=int(meta.get("num_feat", 64)),
        num_block=int(meta.get("num_block", 23)),
        num_grow_ch=int(meta.get("num_grow_ch", 32)),
        num_up=num_up,
        unshuffle=unshuffle,
    )


SPEC = ModelSpec(
    name="esrgan",
    arch="esrgan",
    scales=(1, 2, 4, 8),
    channels=3,
    size_multiple=1,  # x2/x1 weights need 2/4: load_model takes the module's size_multiple
    fp16=True,
    bf16=True,
    speed="slow",
    description=(
        "ESRGAN / Real-ESRGAN RRDBNet (x4plus, x2plus, anime_6B, old and new ESRGAN .pth): "
        "RGB, hyperparameters and scale from the weights"
    ),
    build=build,
    detect=detect,
    licence="architecture: BSD-3-Clause (Real-ESRGAN/BasicSR), Apache-2.0 (ESRGAN); "
    "weights: as their source says (none shipped)",
)
