"""The one explicit registry of architectures, and model loading.

Names are listed here, not discovered by scanning folders. An unknown name raises
an error that lists the known ones. Default weights are data: the project's own
safetensors files in ``vsr/weights`` named ``<model>_x<scale>.safetensors``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from vsr.errors import UnknownModelError, UsageError, VsrError, WeightsError
from vsr.models.archs import (
    edsr,
    espcn,
    fsrcnn,
    interpolate,
    lapsrn,
    rrdbnet,
    spandrel_arch,
    srcnn,
    srvgg,
    vdsr,
)
from vsr.models.spec import Detected, ModelSpec

_SPECS: tuple[ModelSpec, ...] = (
    interpolate.NEAREST,
    interpolate.BILINEAR,
    interpolate.BICUBIC,
    interpolate.LANCZOS,
    fsrcnn.SPEC,
    espcn.SPEC,
    srcnn.SPEC,
    vdsr.SPEC,
    lapsrn.SPEC,
    edsr.SPEC,
    rrdbnet.SPEC,
    srvgg.SPEC,
    spandrel_arch.SPEC,  # "auto": the specs' detect() in this order, then spandrel
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
    """``<name>_x<scale>.safetensors``, or ``<name>.safetensors`` (one file for every scale,
    as VDSR's) when only that one is shipped."""
    path = WEIGHTS_DIR / f"{name}_x{scale}.safetensors"
    shared = WEIGHTS_DIR / f"{name}.safetensors"
    return shared if not path.exists() and shared.exists() else path


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
    if spec is spandrel_arch.SPEC:
        found = _recognise(path.name, state, meta)
        if found is None:  # not one of ours: spandrel (imported only now)
            module, spec = spandrel_arch.load(state, name=path.name, scale=scale)
            return LoadedModel(module, spec, scale, source)
        spec, state, meta = found
    else:
        state, meta = _native_layout(spec, path.name, state, meta)
    if meta.get("arch", spec.arch) != spec.arch:
        raise WeightsError(
            f"{path.name} holds {meta['arch']} weights, not {spec.arch}",
            hint=f"use -m {meta['arch']}",
        )
    if meta.get("scale", "any") != "any" and int(meta["scale"]) != scale:  # "any": VDSR
        raise WeightsError(
            f"{path.name} is for x{meta['scale']}, not x{scale}", hint=f"use -x {meta['scale']}"
        )
    try:
        module = spec.build(scale, state, meta)
        module.load_state_dict(state, strict=True)
    except VsrError:
        raise
    except (RuntimeError, ValueError, KeyError, IndexError) as exc:
        # load_state_dict's first line only names the class; the next one says what misfits
        lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()] or [repr(exc)]
        first = lines[1] if len(lines) > 1 and lines[0].startswith("Error(s)") else lines[0]
        if isinstance(exc, KeyError):  # build() looked for a tensor the file lacks
            first = f"no tensor {exc.args[0]!r}"
        raise WeightsError(f"{path.name} does not fit {spec.name} x{scale}: {first}") from None
    multiple = getattr(module, "size_multiple", spec.size_multiple)
    if isinstance(multiple, int) and multiple != spec.size_multiple:
        spec = replace(spec, size_multiple=multiple)  # e.g. Real-ESRGAN x2's pixel-unshuffle
    return LoadedModel(module.eval(), spec, scale, source)


def _with_detected(meta: dict[str, str], found: Detected) -> dict[str, str]:
    merged = {**meta, **found.meta}
    if found.scale is not None:
        merged["scale"] = str(found.scale)
    return merged


def _native_layout(
    spec: ModelSpec, name: str, state: dict[str, torch.Tensor], meta: dict[str, str]
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A foreign state dict (no ``arch`` metadata) through ``spec.detect`` into vsr's layout."""
    if "arch" in meta or spec.detect is None:
        return state, meta
    found = spec.detect(state)
    if found is None:
        raise WeightsError(
            f"{name} does not hold {spec.name} weights in any key layout vsr knows",
            hint="check -m, or try -m auto, which also knows spandrel's architectures",
        )
    return found.state, _with_detected(meta, found)


def _recognise(
    name: str, state: dict[str, torch.Tensor], meta: dict[str, str]
) -> tuple[ModelSpec, dict[str, torch.Tensor], dict[str, str]] | None:
    """For ``-m auto``: the spec named by vsr's own metadata, else the first spec whose
    ``detect`` accepts the tensors; None when none does."""
    if "arch" in meta:
        for spec in _SPECS:
            if spec.arch == meta["arch"] and spec is not spandrel_arch.SPEC:
                return spec, state, meta
        raise WeightsError(f"{name} holds {meta['arch']} weights, which this vsr does not know")
    for spec in _SPECS:
        found = spec.detect(state) if spec.detect is not None else None
        if found is not None:
            return spec, found.state, _with_detected(meta, found)
    return None


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
