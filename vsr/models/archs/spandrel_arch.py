"""``-m auto``: vsr's own architectures by their keys, then anything spandrel knows.

spandrel (https://github.com/chaiNNer-org/spandrel, MIT) recognises some forty
architectures (SwinIR, HAT, RCAN, SPAN, OmniSR, DAT, ...) from a state dict and infers
their hyperparameters. It is optional and imported only here, only when a file reaches
it, so vsr works without it for everything else.

Safety: vsr reads the file itself (``weights.read_weights``: safetensors, or
``torch.load(weights_only=True)`` for .pth/.pt/.ckpt) and hands spandrel only the tensors
(``ModelLoader.load_from_state_dict``). spandrel's own file loader is not used: it
unpickles .pth/.ckpt with its own small allowlist (``RestrictedUnpickler``, safe) but
runs ``torch.jit.load`` on .pt files, and TorchScript is a program, not weights.

The metadata the backend needs comes from spandrel's ``ModelDescriptor``: scale, input
channels (3 RGB, 1 luma), size requirement (``multiple_of`` as the spec's
``size_multiple``; the descriptor's call pads for ``minimum``/``square`` itself), fp16
and bf16 support. The descriptor's call also clamps the output to [0, 1].
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from vsr.errors import UsageError, WeightsError
from vsr.models.spec import ModelSpec

INSTALL_HINT = "pip install spandrel (it needs torchvision), or name the model with -m"


class SpandrelModule(nn.Module):
    """A spandrel ``ImageModelDescriptor`` as a module: [0, 1] in, [0, 1] out at scale x.

    The network is a registered submodule (``.to()``, ``channels_last``, ``eval()``
    reach it); ``forward`` goes through the descriptor's call, which pads to the size
    requirements, applies the architecture's own call function and clamps.
    """

    def __init__(self, descriptor: Any) -> None:
        super().__init__()
        self.net = descriptor.model
        self.descriptor = descriptor  # not a Module: kept as a plain attribute
        self.scale = int(descriptor.scale)
        self.size_multiple = int(descriptor.size_requirements.multiple_of)
        self.hparams = {"architecture": descriptor.architecture.id, "tags": list(descriptor.tags)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.descriptor(x)


def available() -> bool:
    """Whether spandrel can be imported here."""
    try:
        import spandrel  # noqa: F401
    except ImportError:
        return False
    return True


def load(state: dict[str, torch.Tensor], *, name: str, scale: int) -> tuple[nn.Module, ModelSpec]:
    """Build the network spandrel recognises in ``state`` (tensors only).

    Returns the module (eval mode) and ``SPEC`` specialised to it. Raises WeightsError
    when spandrel is not installed, recognises nothing, fails to load the weights, or
    finds a model vsr cannot run (inpainting, other channel counts, another scale).
    ``name`` is the file name, for messages.
    """
    try:
        import spandrel
    except ImportError:
        raise WeightsError(
            f"{name} is not in a layout vsr's own architectures know, and spandrel "
            "(which knows many more) is not installed",
            hint=INSTALL_HINT,
        ) from None
    state = spandrel.canonicalize_state_dict(state)
    try:
        descriptor = spandrel.ModelLoader(device="cpu").load_from_state_dict(state)
    except spandrel.UnsupportedModelError:
        raise WeightsError(
            f"{name}: neither vsr nor spandrel {spandrel.__version__} recognises this architecture",
            hint="check the file, or update spandrel",
        ) from None
    except Exception as exc:  # noqa: BLE001 - a detected architecture whose tensors misfit
        first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
        raise WeightsError(
            f"{name}: spandrel could not load it ({type(exc).__name__}: {first})",
            hint="the file may be damaged or a variant spandrel does not support",
        ) from None
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise WeightsError(
            f"{name} is a {descriptor.architecture.name} {descriptor.purpose} model, "
            "which needs more than an image",
            hint="use an image-to-image model",
        )
    arch = descriptor.architecture
    cin, cout = int(descriptor.input_channels), int(descriptor.output_channels)
    if cin != cout or cin not in (1, 3):
        raise WeightsError(
            f"{name} is a {arch.name} model with {cin} input and {cout} output channels",
            hint="vsr runs RGB (3) or luma (1) models",
        )
    if int(descriptor.scale) != scale:
        raise WeightsError(
            f"{name} is a {arch.name} x{descriptor.scale} model, not x{scale}",
            hint=f"use -x {descriptor.scale}",
        )
    module = SpandrelModule(descriptor).eval()
    tags = f" ({', '.join(descriptor.tags)})" if descriptor.tags else ""
    spec = dataclasses.replace(
        SPEC,
        arch=f"spandrel:{arch.id}",
        scales=(scale,),
        channels=cin,
        size_multiple=module.size_multiple,
        fp16=bool(descriptor.supports_half),
        bf16=bool(descriptor.supports_bfloat16),
        description=f"{arch.name}{tags} {descriptor.purpose} model, loaded by spandrel",
    )
    return module, spec


def _build(scale: int, state: dict[str, torch.Tensor] | None, meta: dict[str, str]) -> nn.Module:
    raise UsageError("-m auto needs a weights file", hint="pass --weights FILE")


SPEC = ModelSpec(
    name="auto",
    arch="auto",
    scales=(1, 2, 3, 4, 8, 16),  # whatever the weights say
    channels=3,
    size_multiple=1,
    fp16=False,
    bf16=False,
    speed="varies",
    description=(
        "Any weights file: vsr's own architectures recognised by their keys first, then "
        "every architecture spandrel knows (SwinIR, HAT, RCAN, SPAN, OmniSR, DAT, ...); "
        "scale, channels and precision from the weights"
    ),
    build=_build,
    licence="architectures: spandrel (MIT) and their authors' licences; weights: as their "
    "source says (none shipped)",
)
