"""The logic behind ``vsr models``: list, info, pull and import.

Everything works from the registry as it is (``list_specs()``), the catalog data and the
user cache; nothing here names a particular model.

- Built-in weights: ``vsr/weights/<model>_x<scale>.safetensors`` + model card ``.json``.
- Cached weights: ``<cache>/weights/``: catalog downloads under their upstream file names
  (hashes in ``<cache>/registry.json``) and imports as ``<name>.safetensors`` + ``<name>.json``.
"""

from __future__ import annotations

import json
import logging
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
from vsr.models.catalog import Catalog, CatalogEntry, load_catalog
from vsr.models.registry import (
    REGISTRY,
    count_parameters,
    default_weights,
    get_spec,
    list_specs,
    load_model,
)
from vsr.models.spec import ModelSpec

log = logging.getLogger("vsr")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
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


def human_count(n: int | None) -> str:
    if n is None:
        return "-"
    if n < 1000:
        return str(n)
    if n < 1_000_000:
        return f"{n / 1e3:.1f}k"
    return f"{n / 1e6:.1f}M"


def _params_cell(row: dict[str, Any]) -> str:
    values = [v for v in row["parameters"].values() if v is not None]
    if not values:
        return "-"
    lo, hi = human_count(min(values)), human_count(max(values))
    cell = lo if lo == hi else f"{lo}-{hi}"
    if row["parameters_from"] == "default build" and row["needs_weights"]:
        cell += "*"
    return cell


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    head = "  ".join(c.ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()
    return "\n".join([head, *lines])


def format_list(rows: list[dict[str, Any]]) -> str:
    header = ["NAME", "ARCH", "SCALES", "PARAMS", "INPUT", "SPEED", "BUILT-IN", "CACHED", "LICENCE"]
    body = []
    for r in rows:
        if not r["needs_weights"]:
            builtin = "(none needed)"
        else:
            builtin = " ".join(f"x{s}" for s in r["builtin"]) or "-"
        cached = r["cached"]
        cached_cell = ", ".join(cached[:2]) + (f" +{len(cached) - 2}" if len(cached) > 2 else "")
        body.append(
            [
                r["name"],
                r["arch"],
                " ".join(f"x{s}" for s in r["scales"]),
                _params_cell(r),
                r["input"],
                r["speed"],
                builtin,
                cached_cell or "-",
                _short(r["licence"], 44),
            ]
        )
    notes = [
        "",
        "* parameters of a default build (no built-in weights); - unknown until weights load.",
        "Details: vsr models info NAME; downloadable weights: vsr models list --catalog.",
    ]
    return _table(header, body) + "\n" + "\n".join(notes)


def format_catalog(rows: list[dict[str, Any]]) -> str:
    header = ["ID", "MODEL", "SCALE", "FILE", "CACHED", "HASH", "LICENCE"]
    body = []
    for r in rows:
        model = r["model"] if r["runnable_with"] == r["model"] else f"{r['model']} (not yet)"
        if r["sha256"]:
            check = "sha256"
        elif r["sha256_prefix"]:
            check = "in name"
        else:
            check = "recorded"
        body.append(
            [
                r["id"],
                model,
                f"x{r['scale']}",
                r["file"],
                "yes" if r["cached"] else "-",
                check,
                _short(r["licence"], 40),
            ]
        )
    notes = [
        "",
        "HASH: sha256 = published by upstream; in name = sha256 prefix in the file name;",
        "recorded = none published: the first download's sha256 is recorded and enforced.",
        "Download: vsr models pull ID.",
    ]
    return _table(header, body) + "\n" + "\n".join(notes)


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


def _x(scale: object) -> str:
    return "any scale" if scale == "any" else f"x{scale}"


def _hash_note(e: dict[str, Any]) -> str:
    if e.get("sha256"):
        return f"sha256 {e['sha256']} (published upstream)"
    if e.get("sha256_prefix"):
        return f"sha256 prefix {e['sha256_prefix']} (in the upstream file name)"
    return "no published hash: the first download's sha256 is recorded and enforced"


def _metrics_line(metrics: dict[str, Any]) -> str:
    parts = []
    for set_name, m in metrics.items():
        if isinstance(m, dict) and "psnr" in m:
            gain = f", {m['gain_db']:+.2f} dB" if "gain_db" in m else ""
            bic = f" (bicubic {m['bicubic_psnr']:.2f}{gain})" if "bicubic_psnr" in m else ""
            ssim = f" / {m['ssim']:.4f}" if "ssim" in m else ""
            parts.append(f"{set_name} {m['psnr']:.2f} dB{ssim}{bic}")
    return "; ".join(parts)


def format_info(info: dict[str, Any]) -> str:
    if info["kind"] == "catalog entry":
        lines = [f"{info['id']}: {info['model']} x{info['scale']} weights (catalog entry)"]
        lines += _entry_lines(info, indent="  ")
        runner = info["runnable_with"]
        lines.append(
            f"  runs with     -m {runner}"
            if runner
            else "  runs with     (no registered model yet)"
        )
        c = info["cached"]
        lines.append(
            f"  cached        {c['path']}"
            if c
            else f"  cached        no (vsr models pull {info['id']})"
        )
        return "\n".join(lines)
    if info["kind"] == "imported weights":
        lines = [f"{info['label']}: imported {info['model']} {_x(info['scale'])} weights"]
        for k in ("path", "source_file", "licence", "imported"):
            lines.append(f"  {k.replace('_', ' '):<13} {info.get(k)}")
        card = info.get("card", {})
        lines.append(f"  source sha256 {card.get('source_sha256')}")
        lines.append(f"  parameters    {human_count(card.get('parameters'))}")
        lines.append(
            f"  run with      vsr run INPUT -m {info['model']} "
            f"-x {card.get('validated_scale', info['scale'])} "
            f"--weights {info['path']}"
        )
        return "\n".join(lines)

    precision = ", ".join(["fp32"] + [p for p in ("fp16", "bf16") if info[p]])
    lines = [
        f"{info['name']}: {info['description']}",
        f"  architecture  {info['arch']}",
        f"  scales        {', '.join(f'x{s}' for s in info['scales'])}",
        f"  input         {info['input']}",
        f"  size multiple {info['size_multiple']}",
        f"  precision     {precision}",
        f"  speed         {info['speed']}",
        f"  licence       {info['licence']}",
    ]
    if not info["needs_weights"]:
        lines.append("  weights       none needed")
        return "\n".join(lines)
    lines.append("built-in weights (vsr/weights):")
    for b in info["builtin"]:
        lines.append(
            f"  x{b['scale']}  {Path(b['path']).name}  {human_count(b['parameters'])} params"
        )
        if metrics := _metrics_line(b["metrics"]):
            lines.append(f"      {metrics}")
        if b.get("iterations"):
            lines.append(f"      {b['iterations']:,} iterations; recipe {b.get('recipe')}")
    if not info["builtin"]:
        lines.append("  none")
    lines.append(f"cached weights ({info['cache_folder']}):")
    for c in info["cached"]:
        sha = f"  sha256 {c['sha256'][:16]}..." if c.get("sha256") else ""
        name = Path(c["path"]).name
        lines.append(f"  {c['label']}  {_x(c['scale'])}  {name}  ({c['kind']}){sha}")
    if not info["cached"]:
        lines.append("  none")
    lines.append("catalog (download with: vsr models pull ID):")
    for e in info["catalog"]:
        lines.append(f"  {e['id']}  x{e['scale']}")
        lines += _entry_lines(e, indent="      ")
    if not info["catalog"]:
        lines.append("  none")
    return "\n".join(lines)


def _entry_lines(e: dict[str, Any], *, indent: str) -> list[str]:
    lines = [
        f"{indent}url           {e['url']}",
        f"{indent}source        {e['source']}",
        f"{indent}licence       {e['licence']}",
        f"{indent}hash          {_hash_note(e)}",
    ]
    if e.get("notes"):
        lines.append(f"{indent}notes         {e['notes']}")
    return lines


# ----------------------------------------------------------------------------------------
# vsr models pull
# ----------------------------------------------------------------------------------------


def pull(
    entry_id: str, *, cache: Path | None = None, force: bool = False, progress: bool = True
) -> download.PullResult:
    """Download catalog entry ``entry_id`` (see :func:`vsr.models.download.pull`)."""
    entry = load_catalog().get(entry_id)
    return download.pull(entry, cache=cache, force=force, progress=progress)


def pull_summary(result: download.PullResult) -> str:
    e = result.entry
    state = "already present" if result.already_present else "downloaded"
    if result.resumed_from:
        state += f" (resumed at {result.resumed_from} bytes)"
    lines = [f"{e.id}: {state}, {result.size:,} bytes, verified: {result.verified}"]
    runner = runnable_with(e)
    if runner:
        lines.append(f"run with: vsr run INPUT -m {runner} -x {e.scale} --weights {result.path}")
    else:
        lines.append(f"vsr cannot run {e.model} weights yet (no such model registered)")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------
# vsr models import
# ----------------------------------------------------------------------------------------


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
            f"imported {self.model} {_x(self.scale)} weights ({self.parameters:,} parameters,"
            f" found by {self.detected_by}); licence: {self.card['licence']}\n"
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


__all__ = [
    "GENERIC_NAME",
    "ImportResult",
    "cached_weights",
    "format_catalog",
    "format_info",
    "format_list",
    "import_weights",
    "list_catalog",
    "list_models",
    "model_info",
    "pull",
    "pull_summary",
    "runnable_with",
]
