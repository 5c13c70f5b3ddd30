"""Model metadata: what the pipeline and backends need to know about an architecture."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Detected:
    """What an architecture's ``detect`` made of a foreign state dict.

    ``state`` is converted to this project's key layout for the architecture (so that
    ``build(scale, state, meta)`` + ``load_state_dict(state, strict=True)`` work);
    ``scale`` is ``None`` when the tensors do not fix it (e.g. VDSR).
    """

    scale: int | None
    state: dict[str, torch.Tensor]
    meta: dict[str, str]


#: detect(state_dict) -> Detected, or None when the tensors are not this architecture's
#: (in any of the key layouts it knows: official repositories, old/new ESRGAN, ...).
DetectFn = Callable[["dict[str, torch.Tensor]"], "Detected | None"]

#: build(scale, state_dict or None, metadata) -> module. Hyperparameters come from the
#: state dict where the format allows; ``metadata`` carries what tensors cannot say.
BuildFn = Callable[[int, "dict[str, torch.Tensor] | None", "dict[str, str]"], nn.Module]


@dataclass(frozen=True)
class ModelSpec:
    """An architecture as listed in the registry.

    ``channels`` 1 means the network sees luma only (chroma is resized bicubic);
    3 means RGB. ``planewise`` models (interpolation) are applied to every plane.
    ``size_multiple`` is the input size requirement (inputs are padded to it).
    """

    name: str
    arch: str
    scales: tuple[int, ...]
    channels: int
    size_multiple: int
    fp16: bool
    bf16: bool
    speed: str
    description: str
    build: BuildFn
    planewise: bool = False
    needs_weights: bool = True
    detect: DetectFn | None = None
    licence: str = "MIT (vsr)"


def check_shuffle_scale(arch: str, out_channels: int, channels: int, scale: int) -> None:
    """Raise WeightsError when a sub-pixel layer's width says another scale than ``scale``."""
    if out_channels != channels * scale * scale:
        from vsr.errors import WeightsError

        inferred = round((out_channels / channels) ** 0.5)
        raise WeightsError(
            f"these {arch} weights are for x{inferred}, not x{scale}",
            hint=f"use -x {inferred} or other weights",
        )
