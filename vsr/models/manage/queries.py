"""What ``vsr models list`` and ``vsr models info`` report, as JSON-ready data.

Everything works from the registry as it is (``list_specs()``), the catalog data and the
user cache; nothing here names a particular model.

- Built-in weights: ``vsr/weights/<model>_x<scale>.safetensors`` + model card ``.json``.
- Cached weights: ``<cache>/weights/``: catalog downloads under their upstream file names
  (hashes in ``<cache>/registry.json``) and imports as ``<name>.safetensors`` + ``<name>.json``.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from vsr.models import download
from vsr.models.catalog import Catalog, CatalogEntry, load_catalog
from vsr.models.registry import (
    REGISTRY,
    count_parameters,
    default_weights,
    get_spec,
    list_specs,
)
from vsr.models.spec import ModelSpec

log = logging.getLogger("vsr")

#: A registered spec with this name is a catch-all loader (spandrel): tried after the others.
GENERIC_NAME = "auto"
#: ``list`` builds a model at its other scales only when one build took less than this.
BUILD_BUDGET_S = 0.15


# ----------------------------------------------------------------------------------------
# What is present
# ----------------------------------------------------------------------------------------


def input_kind(spec: ModelSpec) -> str:
    if spec.planewise:
        return "all planes"
    return {1: "luma", 3: "RGB"}.get(spec.channels, f"{spec.channels} channels")


def builtin_weights(spec: ModelSpec) -> dict[int, Path]:
    """Scale -> the project's own weights file, for the scales that have one."""
    if not spec.needs_weights:
        return {}
    return {s: p for s in spec.scales if (p := default_weights(spec.name, s)).is_file()}


def _card(path: Path) -> dict[str, Any]:
    card = path.with_suffix(".json")
    try:
        data = json.loads(card.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def safetensors_parameters(path: Path) -> int | None:
    """Parameter count from a safetensors header (no tensor is read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            total = 0
            for key in f.keys():  # noqa: SIM118 - safe_open API
                n = 1
                for d in f.get_slice(key).get_shape():
                    n *= int(d)
                total += n
            return total
    except Exception:  # noqa: BLE001 - a listing never fails on one bad file
        return None


def default_build_parameters(spec: ModelSpec, scale: int) -> int | None:
    """Parameters of ``spec`` built with default hyperparameters; ``None`` when the
    architecture cannot be built without weights.

    A plain CPU build: for these sizes it is cheaper than the meta device, whose first
    use imports seconds' worth of torch internals.
    """
    if not spec.needs_weights:
        return 0
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            return count_parameters(spec.build(scale, None, {}))
    except Exception:  # noqa: BLE001 - "cheap where possible", else unknown
        return None


def cached_weights(*, cache: Path | None = None, catalog: Catalog | None = None) -> list[dict]:
    """Weights in the user cache: catalog downloads and imports, each with its model."""
    folder = download.weights_cache_dir(cache)
    if not folder.is_dir():
        return []
    catalog = catalog if catalog is not None else load_catalog()
    try:
        records = download.read_registry(cache)
    except download.DownloadError as exc:
        log.warning("%s", exc.one_line())
        records = {}
    out: list[dict] = []
    seen: set[str] = set()
    for entry in catalog.entries:
        path = folder / entry.filename
        if path.is_file():
            rec = records.get(entry.url, {})
            out.append(
                {
                    "kind": "download",
                    "label": entry.id,
                    "model": entry.model,
                    "scale": entry.scale,
                    "path": str(path),
                    "sha256": rec.get("sha256"),
                    "downloaded": rec.get("last_downloaded"),
                    "licence": entry.licence,
                    "url": entry.url,
                }
            )
            seen.add(path.name)
    for url, rec in records.items():  # downloads of entries the catalog no longer has
        path = folder / str(rec.get("file", ""))
        if path.name not in seen and path.is_file():
            out.append(
                {
                    "kind": "download",
                    "label": str(rec.get("id", path.name)),
                    "model": rec.get("model"),
                    "scale": rec.get("scale"),
                    "path": str(path),
                    "sha256": rec.get("sha256"),
                    "downloaded": rec.get("last_downloaded"),
                    "licence": None,
                    "url": url,
                }
            )
            seen.add(path.name)
    for weights in sorted(folder.glob("*.safetensors")):
        if weights.name in seen or weights.name.startswith("."):  # "." : an import under way
            continue
        card = _card(weights)
        if not card.get("imported"):
            continue
        out.append(
            {
                "kind": "import",
                "label": weights.stem,
                "model": card.get("model"),
                "scale": card.get("scale"),
                "path": str(weights),
                "sha256": card.get("weights_sha256"),
                "imported": card.get("imported"),
                "licence": card.get("licence"),
                "source_file": card.get("source_file"),
            }
        )
    return out


# ----------------------------------------------------------------------------------------
# vsr models list
# ----------------------------------------------------------------------------------------


def list_models(*, cache: Path | None = None) -> list[dict[str, Any]]:
    """One row per registered model (registry order), JSON-ready."""
    catalog = load_catalog()
    cached = cached_weights(cache=cache, catalog=catalog)
    rows = []
    for spec in list_specs():
        builtin = builtin_weights(spec)
        # of the built-in weights where there are some, else of a default build
        params: dict[str, int | None] = {}
        origin = "built-in weights" if builtin else "default build"
        slow = False
        for s in builtin or spec.scales:
            if builtin:
                n = _card(builtin[s]).get("parameters") or safetensors_parameters(builtin[s])
            elif slow:
                n = None  # not cheap: one scale is enough to show the size
            else:
                t0 = time.perf_counter()
                n = default_build_parameters(spec, s)
                slow = time.perf_counter() - t0 > BUILD_BUDGET_S
            params[str(s)] = n
        rows.append(
            {
                "name": spec.name,
                "arch": spec.arch,
                "scales": list(spec.scales),
                "parameters": params,
                "parameters_from": origin if any(v is not None for v in params.values()) else None,
                "input": input_kind(spec),
                "speed": spec.speed,
                "needs_weights": spec.needs_weights,
                "builtin": sorted(builtin),
                "cached": [c["label"] for c in cached if c["model"] == spec.name],
                "catalog": [e.id for e in catalog.for_model(spec.name)],
                "licence": spec.licence,
                "description": spec.description,
            }
        )
    return rows


def list_catalog(*, cache: Path | None = None) -> list[dict[str, Any]]:
    """One row per catalog entry, with whether it is cached and whether vsr can run it."""
    catalog = load_catalog()
    present = {c["label"] for c in cached_weights(cache=cache, catalog=catalog)}
    rows = []
    for e in catalog.entries:
        row = e.to_dict()
        row["cached"] = e.id in present
        row["runnable_with"] = runnable_with(e)
        rows.append(row)
    return rows


def runnable_with(entry: CatalogEntry) -> str | None:
    """The registered model that runs ``entry``: its own, else the generic loader, else None."""
    if entry.model in REGISTRY:
        return entry.model
    return GENERIC_NAME if GENERIC_NAME in REGISTRY else None


# ----------------------------------------------------------------------------------------
# vsr models info
# ----------------------------------------------------------------------------------------


def model_info(name: str, *, cache: Path | None = None) -> dict[str, Any]:
    """Everything known about ``name``: a registered model, a catalog id or an import.

    Raises UnknownModelError listing the registered models.
    """
    catalog = load_catalog()
    cached = cached_weights(cache=cache, catalog=catalog)
    key = name.lower()
    if key in REGISTRY:
        info = _spec_info(get_spec(key), catalog, cached)
        info["cache_folder"] = str(download.weights_cache_dir(cache))
        return info
    if key in catalog.ids():
        entry = catalog.get(key)
        here = [c for c in cached if c["label"] == entry.id]
        return {
            "kind": "catalog entry",
            **entry.to_dict(),
            "runnable_with": runnable_with(entry),
            "cached": here[0] if here else None,
        }
    for c in cached:
        if c["kind"] == "import" and c["label"] == name:
            return {**c, "kind": "imported weights", "card": _card(Path(c["path"]))}
    get_spec(name)  # raises UnknownModelError with the registered names
    raise AssertionError("unreachable")


def _spec_info(spec: ModelSpec, catalog: Catalog, cached: list[dict]) -> dict[str, Any]:
    builtin = []
    for s, path in builtin_weights(spec).items():
        card = _card(path)
        builtin.append(
            {
                "scale": s,
                "path": str(path),
                "parameters": card.get("parameters") or safetensors_parameters(path),
                "metrics": card.get("metrics", {}),
                "iterations": card.get("iterations"),
                "licence": card.get("licence"),
                "recipe": card.get("recipe"),
            }
        )
    return {
        "kind": "model",
        "name": spec.name,
        "arch": spec.arch,
        "description": spec.description,
        "scales": list(spec.scales),
        "input": input_kind(spec),
        "channels": spec.channels,
        "size_multiple": spec.size_multiple,
        "fp16": spec.fp16,
        "bf16": spec.bf16,
        "speed": spec.speed,
        "licence": spec.licence,
        "needs_weights": spec.needs_weights,
        "detects_foreign_layouts": spec.detect is not None,
        "builtin": builtin,
        "cached": [c for c in cached if c["model"] == spec.name],
        "catalog": [e.to_dict() for e in catalog.for_model(spec.name)],
    }
