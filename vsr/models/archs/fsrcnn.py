"""FSRCNN (Dong et al., 2016): fast SRCNN with shrinking, mapping and expanding layers.

conv5x5(1->d) PReLU, conv1x1(d->s) PReLU, m x [conv3x3(s->s) PReLU], conv1x1(s->d) PReLU,
then an upsampler:

- ``deconv``: the paper's 9x9 transposed convolution with stride r (our own weights);
- ``subpixel``: conv1x1(d->r*r) without bias, PixelShuffle(r), one scalar bias, as in the
  OpenCV dnn_superres FSRCNN and FSRCNN-small graphs.

d, s, m and the upsampler are inferred from the weights.
"""

from __future__ import annotations

import torch
from torch import nn

from vsr.models.spec import ModelSpec, check_shuffle_scale


class FSRCNN(nn.Module):
    def __init__(
        self,
        scale: int,
        *,
        d: int = 56,
        s: int = 12,
        m: int = 4,
        channels: int = 1,
        upsampler: str = "deconv",
    ) -> None:
        super().__init__()
        self.scale = scale
        self.upsampler = upsampler
        layers: list[nn.Module] = [nn.Conv2d(channels, d, 5, padding=2), nn.PReLU(d)]
        layers += [nn.Conv2d(d, s, 1), nn.PReLU(s)]
        for _ in range(m):
            layers += [nn.Conv2d(s, s, 3, padding=1), nn.PReLU(s)]
        layers += [nn.Conv2d(s, d, 1), nn.PReLU(d)]
        self.body = nn.Sequential(*layers)
        if upsampler == "deconv":
            # output size = (H-1)*r - 2p + 9 + op = H*r  with p=(9-r+1)//2... solved per r
            pad = (9 - scale + 1) // 2
            out_pad = scale - 9 + 2 * pad
            self.tail: nn.Module = nn.ConvTranspose2d(
                d, channels, 9, stride=scale, padding=pad, output_padding=out_pad
            )
        elif upsampler == "subpixel":
            self.tail = nn.Sequential(
                nn.Conv2d(d, channels * scale * scale, 1, bias=False), nn.PixelShuffle(scale)
            )
            self.tail_bias = nn.Parameter(torch.zeros(1))
        else:
            raise ValueError(f"unknown FSRCNN upsampler {upsampler!r}")
        self.hparams = {"upsampler": upsampler}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.tail(self.body(x))
        if self.upsampler == "subpixel":
            x = x + self.tail_bias
        return x


def build(scale: int, state: dict[str, torch.Tensor] | None, meta: dict[str, str]) -> FSRCNN:
    """Build from weights (d, s, m, upsampler inferred from the tensors) or with defaults."""
    if state is None:
        return FSRCNN(scale, upsampler=meta.get("upsampler", "deconv"))
    convs = sorted(
        (
            int(k.split(".")[1])
            for k in state
            if k.startswith("body.") and k.endswith(".weight") and state[k].ndim == 4
        ),
    )
    d = int(state["body.0.weight"].shape[0])
    channels = int(state["body.0.weight"].shape[1])
    s = int(state["body.2.weight"].shape[0])
    m = len(convs) - 3
    upsampler = "subpixel" if "tail_bias" in state else "deconv"
    if upsampler == "subpixel":
        check_shuffle_scale("FSRCNN", int(state["tail.0.weight"].shape[0]), channels, scale)
    return FSRCNN(scale, d=d, s=s, m=m, channels=channels, upsampler=upsampler)


SPEC = ModelSpec(
    name="fsrcnn",
    arch="fsrcnn",
    scales=(2, 3, 4),
    channels=1,
    size_multiple=1,
    fp16=True,
    bf16=True,
    speed="fast",
    description="FSRCNN: shrink, map, expand on the low-resolution luma, then upsample",
    build=build,
)
