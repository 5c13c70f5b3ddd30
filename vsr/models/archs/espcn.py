"""ESPCN (Shi et al., 2016): efficient sub-pixel convolution, on luma.

conv5x5(c->f1), act, conv3x3(f1->f2), act, conv3x3(f2->c*r*r), PixelShuffle(r) [, tanh].
The OpenCV dnn_superres graphs use ReLU inside and a tanh after the shuffle; the paper
uses tanh inside. Both are expressible: ``act`` and ``out_act`` are stored in the
weights' metadata, widths are inferred from the tensors.
"""

from __future__ import annotations

import torch
from torch import nn

from vsr.models.spec import ModelSpec, check_shuffle_scale


class ESPCN(nn.Module):
    def __init__(
        self,
        scale: int,
        *,
        channels: int = 1,
        features: tuple[int, int] = (64, 32),
        act: str = "relu",
        out_act: str = "none",
    ) -> None:
        super().__init__()
        f1, f2 = features
        self.scale = scale
        self.conv1 = nn.Conv2d(channels, f1, 5, padding=2)
        self.conv2 = nn.Conv2d(f1, f2, 3, padding=1)
        self.conv3 = nn.Conv2d(f2, channels * scale * scale, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)
        self.act = nn.Tanh() if act == "tanh" else nn.ReLU(inplace=True)
        self.out_act = out_act
        self.hparams = {"act": act, "out_act": out_act}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv1(x))
        x = self.act(self.conv2(x))
        x = self.shuffle(self.conv3(x))
        if self.out_act == "tanh":
            x = torch.tanh(x)
        return x


def build(scale: int, state: dict[str, torch.Tensor] | None, meta: dict[str, str]) -> ESPCN:
    """Build from weights (widths inferred from the tensors) or with defaults."""
    channels, features = 1, (64, 32)
    if state is not None:
        features = (int(state["conv1.weight"].shape[0]), int(state["conv2.weight"].shape[0]))
        channels = int(state["conv1.weight"].shape[1])
        check_shuffle_scale("ESPCN", int(state["conv3.weight"].shape[0]), channels, scale)
    return ESPCN(
        scale,
        channels=channels,
        features=features,
        act=meta.get("act", "relu"),
        out_act=meta.get("out_act", "none"),
    )


SPEC = ModelSpec(
    name="espcn",
    arch="espcn",
    scales=(2, 3, 4),
    channels=1,
    size_multiple=1,
    fp16=True,
    bf16=True,
    speed="fast",
    description="ESPCN: three convolutions on the low-resolution luma and a sub-pixel shuffle",
    build=build,
)
