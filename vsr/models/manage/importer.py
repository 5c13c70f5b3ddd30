"""``vsr models import``: convert any weights file vsr can read into the user cache.

The architecture and scale come from ``-m``/``-x`` or are found from the file (its
metadata, the tensors' layout, a registered ``detect`` hook, or trying the loader); the
result is checked by loading it as ``vsr run --weights`` does, and a model card records
where it came from.
"""

from __future__ import annotations

import json
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vsr import __version__
from vsr.errors import (
    InputNotFoundError,
    OutputExistsError,
    UsageError,
    VsrError,
    WeightsError,
)
from vsr.models import download
from vsr.models.catalog import load_catalog
from vsr.models.manage.formatting import scale_label
from vsr.models.manage.queries import GENERIC_NAME
from vsr.models.registry import count_parameters, get_spec, list_specs, load_model
from vsr.models.spec import ModelSpec

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class ImportResult:
    name: str
    path: Path
    card_path: Path
    model: str
    scale: int | str  # "any": weights for every scale (VDSR)
    parameters: int
    detected_by: str
    card: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "card": str(self.card_path),
            "model": self.model,
            "scale": self.scale,
            "parameters": self.parameters,
            "detected_by": self.detected_by,
        }

    def run_hint(self) -> str:
        x = self.card["validated_scale"] if self.scale == "any" else self.scale
        return f"vsr run INPUT -m {self.model} -x {x} --weights {self.path}"

    def summary(self) -> str:
        return (
            f"imported {self.model} {scale_label(self.scale)} weights"
            f" ({self.parameters:,} parameters, found by {self.detected_by});"
            f" licence: {self.card['licence']}\n"
            f"run with: {self.run_hint()}"
        )


@dataclass
class _Candidate:
    spec: ModelSpec
    scale: int
    state: dict[str, torch.Tensor] | None  # None: load the source file with load_model
    meta: dict[str, str]
    via: str
    rank: int  # lower is stronger evidence
    any_scale: bool = False


def import_weights(
    file: Path,
    *,
    name: str | None = None,
    model: str | None = None,
    scale: int | None = None,
    licence: str | None = None,
    cache: Path | None = None,
    overwrite: bool = False,
) -> ImportResult:
    """Convert any weights file vsr can read into ``<cache>/weights/<name>.safetensors``.

    The architecture is ``model`` or found from the file: its metadata, the tensors'
    native layout, or a registered ``detect`` hook; the scale is ``scale`` or found the
    same way. The result is checked by loading it exactly as ``vsr run --weights`` does.
    A model card ``<name>.json`` records the source file, its sha256, the architecture,
    scale, parameter count, licence (``unknown`` unless given or known from the catalog)
    and the date.

    Raises InputNotFoundError, UnknownModelError, UsageError (ambiguous or unsupported),
    OutputExistsError (name taken, no ``overwrite``), WeightsError (unreadable, no fit).
    """
    src = Path(file).expanduser()
    if not src.is_file():
        raise InputNotFoundError(f"weights file not found: {src}", hint="check the path")
    src = src.resolve()
    name = name if name is not None else _default_name(src)
    if not _NAME.match(name) or name.endswith(".safetensors"):
        raise UsageError(
            f"invalid name {name!r}",
            hint="use letters, digits, '.', '_' or '-' (e.g. --name my-espcn-x3)",
        )
    folder = download.weights_cache_dir(cache)
    dest = folder / f"{name}.safetensors"
    card_path = dest.with_suffix(".json")
    if dest.exists() and dest.resolve() == src:
        raise UsageError(
            f"{src.name} is already in the cache under that name",
            hint="pass --name to import it under another name",
        )
    if (dest.exists() or card_path.exists()) and not overwrite:
        raise OutputExistsError(
            f"imported weights named {name!r} exist: {dest}",
            hint="pass --overwrite to replace them, or --name to choose another name",
        )
    specs = _specs_to_try(model)
    if scale is not None and model is not None and scale not in specs[0].scales:
        supported = ", ".join(f"x{s}" for s in specs[0].scales)
        raise UsageError(
            f"{specs[0].name} does not support x{scale}", hint=f"it supports {supported}"
        )
    reasons: list[str] = []
    found = _find_candidates(src, specs, scale, reasons)
    cand = _choose(found, src, model=model, scale=scale, reasons=reasons)

    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{name}.importing.safetensors"
    try:
        loaded = _load_candidate(cand, src, tmp)
        from vsr.models.weights import write_safetensors

        hparams = {k: str(v) for k, v in getattr(loaded.module, "hparams", {}).items()}
        cand.any_scale = cand.any_scale or hparams.get("scale") == "any"
        meta: dict[str, str | int | float] = {
            **{k: v for k, v in cand.meta.items() if k not in ("format",)},
            **hparams,
            "arch": cand.spec.arch,
            "scale": "any" if cand.any_scale else str(cand.scale),
        }
        write_safetensors(tmp, loaded.module.state_dict(), meta)
        final = load_model(cand.spec.name, cand.scale, weights=tmp)  # as `vsr run` will
        parameters = count_parameters(final.module)
        src_sha = download.sha256_file(src)
        card = _import_card(
            name=name,
            src=src,
            src_sha=src_sha,
            cand=cand,
            parameters=parameters,
            licence=licence,
            weights_sha=download.sha256_file(tmp),
            cache=cache,
        )
        tmp_card = folder / f".{name}.importing.json"
        tmp_card.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
        tmp.replace(dest)
        tmp_card.replace(card_path)
    finally:
        tmp.unlink(missing_ok=True)
        (folder / f".{name}.importing.json").unlink(missing_ok=True)
    return ImportResult(
        name=name,
        path=dest,
        card_path=card_path,
        model=cand.spec.name,
        scale="any" if cand.any_scale else cand.scale,
        parameters=parameters,
        detected_by=cand.via,
        card=card,
    )


def _default_name(src: Path) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", src.stem).strip("-._") or "weights"
    return stem[:100]


def _specs_to_try(model: str | None) -> list[ModelSpec]:
    if model is not None:
        spec = get_spec(model)
        if not spec.needs_weights:
            raise UsageError(f"{spec.name} takes no weights", hint="choose a neural model")
        return [spec]
    specs = [s for s in list_specs() if s.needs_weights]
    # the catch-all loader last: a specific architecture is better evidence
    return sorted(specs, key=lambda s: s.name == GENERIC_NAME)


def _find_candidates(
    src: Path, specs: list[ModelSpec], scale: int | None, reasons: list[str]
) -> list[_Candidate]:
    """Every (spec, scale, layout) the file fits; why the others did not go to ``reasons``."""
    from vsr.models.weights import read_weights

    first = specs[0]
    try:
        # Formats whose reading does not depend on the architecture (safetensors, .pth)
        # are read once; a format that does (.pb) refuses the wrong one and is tried below.
        state, meta = read_weights(src, arch=first.arch, scale=scale or first.scales[0])
    except WeightsError as exc:
        return _trial_candidates(src, specs, scale, exc)
    found: list[_Candidate] = []
    file_arch = meta.get("arch")
    for spec in specs:
        if file_arch is not None and file_arch != spec.arch:
            continue
        layouts: list[tuple[dict[str, torch.Tensor], dict[str, str], int | None, str, int]] = []
        hint = int(meta["scale"]) if str(meta.get("scale", "")).isdigit() else None
        if file_arch is not None:
            layouts.append((state, meta, hint, "metadata", 0))
        else:
            layouts.append((state, meta, hint, "tensor layout", 1))
        if spec.detect is not None:
            try:
                det = spec.detect(state)
            except Exception:  # noqa: BLE001 - a detector must not break the search
                det = None
            if det is not None:
                det_meta = {**meta, **det.meta}
                layouts.append((det.state, det_meta, det.scale, "detect hook", 2))
        # weights for every scale (VDSR): the file or the architecture's detect says so
        agnostic = any(mt.get("scale") == "any" for _, mt, _, _, _ in layouts)
        for st, mt, hint_scale, via, rank in layouts:
            any_scale = agnostic
            if scale is not None:
                scales = [scale]
            elif hint_scale is not None:
                scales = [hint_scale]
            else:
                scales = list(spec.scales)
            fits = []
            for s in scales:
                if s in spec.scales:
                    if why := _misfit(spec, s, st, mt):
                        reasons.append(why)
                    else:
                        fits.append(s)
            if any_scale and fits:
                fits = fits[:1]
            found += [_Candidate(spec, s, st, mt, via, rank, any_scale) for s in fits]
            if fits:
                break  # the strongest layout that fits this spec
    if file_arch is not None and not any(s.arch == file_arch for s in specs):
        owners = [s.name for s in list_specs() if s.arch == file_arch]
        raise WeightsError(
            f"{src.name} holds {file_arch} weights, not {specs[0].arch}"
            if len(specs) == 1
            else f"{src.name} holds {file_arch} weights, which no registered model runs",
            hint=f"use -m {owners[0]}" if owners else "",
        )
    return found


def _trial_candidates(
    src: Path, specs: list[ModelSpec], scale: int | None, first_error: WeightsError
) -> list[_Candidate]:
    """Formats read per architecture (OpenCV .pb): try each spec and scale with the loader.

    When nothing loads, the reader's own first complaint is the most useful message (it
    says what the file is: another family, another scale, unreadable).
    """
    found = []
    for spec in specs:
        for s in [scale] if scale is not None else spec.scales:
            try:
                load_model(spec.name, s, weights=src)
            except (WeightsError, UsageError):
                continue
            found.append(_Candidate(spec, s, None, {}, "loader", 1))
    if not found:
        raise first_error
    return found


def _misfit(spec: ModelSpec, scale: int, state: dict[str, torch.Tensor], meta: dict) -> str:
    """Why ``state`` does not load strictly into ``spec`` at ``scale`` ("" when it does).

    Built on the meta device (no memory, no init), retried on the CPU only when the meta
    device is the problem.
    """
    reason = ""
    for device in ("meta", "cpu"):
        try:
            with warnings.catch_warnings(), torch.device(device):
                warnings.simplefilter("ignore")
                module = spec.build(scale, state, dict(meta))
                module.load_state_dict(state, strict=True, assign=device == "meta")
            return ""
        except Exception as exc:  # noqa: BLE001 - any failure means "does not fit"
            if isinstance(exc, VsrError):
                reason = exc.one_line()
            else:
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            if "meta" not in reason.lower():
                break
    return reason or "does not fit"


def _choose(
    found: list[_Candidate],
    src: Path,
    *,
    model: str | None,
    scale: int | None,
    reasons: list[str],
) -> _Candidate:
    if not found:
        if model is not None:
            x = f" x{scale}" if scale else ""
            # the architecture's own words first (they name the scale the weights are for)
            why = sorted(reasons, key=lambda r: ("(" not in r, len(r)))[:1]
            raise WeightsError(
                f"{src.name} does not fit {model}{x}" + (f": {why[0]}" if why else ""),
                hint="" if why and "(" in why[0] else "check -m/-x, or leave them out",
            )
        known = ", ".join(s.name for s in list_specs() if s.needs_weights)
        raise WeightsError(
            f"cannot tell which architecture {src.name} is for",
            hint=f"pass -m NAME if it is one of: {known}",
        )
    best = min(c.rank for c in found)
    top = [c for c in found if c.rank == best]
    names = list(dict.fromkeys(c.spec.name for c in top))
    if len(names) > 1 and GENERIC_NAME in names:
        top = [c for c in top if c.spec.name != GENERIC_NAME]
        names.remove(GENERIC_NAME)
    if len(names) > 1:
        raise UsageError(
            f"{src.name} fits several architectures: {', '.join(names)}",
            hint="pass -m NAME to choose",
        )
    if len(top) > 1:
        scales = ", ".join(f"x{c.scale}" for c in top)
        raise UsageError(
            f"cannot tell the scale of {src.name}: it fits {names[0]} at {scales}",
            hint="pass -x SCALE",
        )
    return top[0]


def _load_candidate(cand: _Candidate, src: Path, tmp: Path) -> Any:
    """Load the candidate with the registry's loader (via a temporary file when converted)."""
    if cand.state is None:
        return load_model(cand.spec.name, cand.scale, weights=src)
    from vsr.models.weights import write_safetensors

    meta: dict[str, str | int | float] = {
        **cand.meta,
        "arch": cand.spec.arch,
        "scale": "any" if cand.any_scale else str(cand.scale),
    }
    write_safetensors(tmp, cand.state, meta)
    return load_model(cand.spec.name, cand.scale, weights=tmp)


def _import_card(
    *,
    name: str,
    src: Path,
    src_sha: str,
    cand: _Candidate,
    parameters: int,
    licence: str | None,
    weights_sha: str,
    cache: Path | None,
) -> dict[str, Any]:
    """The model card; a source that is a verified catalog download brings its licence."""
    origin: dict[str, Any] = {}
    try:
        records = download.read_registry(cache)
    except download.DownloadError:
        records = {}
    for url, rec in records.items():
        if rec.get("sha256") == src_sha:
            entry = load_catalog().by_url(url)
            origin = {"catalog_id": rec.get("id"), "source_url": url}
            if entry is not None:
                origin["source"] = entry.source
                origin["catalog_licence"] = entry.licence
            break
    return {
        "name": name,
        "model": cand.spec.name,
        "architecture": cand.spec.arch,
        "scale": "any" if cand.any_scale else cand.scale,
        "validated_scale": cand.scale,
        "parameters": parameters,
        "licence": licence or origin.get("catalog_licence") or "unknown",
        "source_file": str(src),
        "source_sha256": src_sha,
        "source_size": src.stat().st_size,
        **{k: v for k, v in origin.items() if k != "catalog_licence"},
        "detected_by": cand.via,
        "weights_sha256": weights_sha,
        "imported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "vsr_version": __version__,
    }
