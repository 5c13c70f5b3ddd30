"""The one explicit registry of architectures, and model loading.

Names are listed here, not discovered by scanning folders. An unknown name raises
an error that lists the known ones. Default weights are data: the project's own
safetensors files in ``vsr/weights`` named ``<model>_x<scale>.safetensors``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from vsr.errors import UnknownModelError, UsageError, WeightsError
from vsr.models.archs import espcn, fsrcnn, interpolate
from vsr.models.spec import ModelSpec

_SPECS: tuple[ModelSpec, ...] = (
    interpolate.NEAREST,
    interpolate.BILINEAR,
    interpolate.BICUBIC,
    interpolate.LANCZOS,
    fsrcnn.SPEC,
    espcn.SPEC,
)
REGISTRY: dict[str, ModelSpec] = {s.name: s for s in _SPECS}

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


def list_specs() -> tuple[ModelSpec, ...]:
    return _SPECS


def get_spec(name: str) -> ModelSpec:
    """The spec of a registered model; raises UnknownModelError listing the known names."""
    try:
        return REGISTRY[name.lower()]
    except KeyError:
        known = ", ".join(REGISTRY)
        raise UnknownModelError(f"unknown model {name!r}", hint=f"known models: {known}") from None


def default_weights(name: str, scale: int) -> Path:
    return WEIGHTS_DIR / f"{name}_x{scale}.safetensors"


@dataclass
class LoadedModel:
    """A network ready to run, with the metadata the backend needs."""

    module: nn.Module
    spec: ModelSpec
    scale: int
    source: str  # where the weights came from ("built-in", a path, or "none")


def load_model(name: str, scale: int, *, weights: Path | None = None) -> LoadedModel:
    """Build model ``name`` at ``scale`` with the given or default weights.

    Raises UnknownModelError, UsageError (unsupported scale), WeightsError (missing,
    unreadable, unsafe or mismatched weights).
    """
    spec = get_spec(name)
    if scale not in spec.scales:
        scales = ", ".join(f"x{s}" for s in spec.scales)
        raise UsageError(f"{spec.name} does not support x{scale}", hint=f"it supports {scales}")
    if not spec.needs_weights:
        if weights is not None:
            raise UsageError(f"{spec.name} takes no weights", hint="drop --weights")
        module = spec.build(scale, None, {})
        return LoadedModel(module.eval(), spec, scale, "none")

    from vsr.models import weights as wio

    if weights is None:
        path = default_weights(spec.name, scale)
        if not path.exists():
            raise WeightsError(
                f"no built-in weights for {spec.name} x{scale}",
                hint="pass --weights FILE",
            )
        source = "built-in"
    else:
        path = Path(weights)
        source = str(path)
    state, meta = wio.read_weights(path, arch=spec.arch, scale=scale)
    if meta.get("arch", spec.arch) != spec.arch:
        raise WeightsError(
            f"{path.name} holds {meta['arch']} weights, not {spec.arch}",
            hint=f"use -m {meta['arch']}",
        )
    if "scale" in meta and int(meta["scale"]) != scale:
        raise WeightsError(
            f"{path.name} is for x{meta['scale']}, not x{scale}", hint=f"use -x {meta['scale']}"
        )
    module = spec.build(scale, state, meta)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise WeightsError(f"{path.name} does not fit {spec.name} x{scale}: {first}") from None
    return LoadedModel(module.eval(), spec, scale, source)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = [
    "REGISTRY",
    "LoadedModel",
    "ModelSpec",
    "count_parameters",
    "default_weights",
    "get_spec",
    "list_specs",
    "load_model",
]
