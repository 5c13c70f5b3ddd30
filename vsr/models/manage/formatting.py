"""The text of ``vsr models list`` (tables) and ``vsr models info`` (one model, entry or
import), made from the rows and dicts of :mod:`vsr.models.manage.queries`."""

from __future__ import annotations

from pathlib import Path
from typing import Any


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


def scale_label(scale: object) -> str:
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
        lines = [f"{info['label']}: imported {info['model']} {scale_label(info['scale'])} weights"]
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
        lines.append(f"  {c['label']}  {scale_label(c['scale'])}  {name}  ({c['kind']}){sha}")
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
