"""``vsr models pull``: download a catalog entry and say how to run it."""

from __future__ import annotations

from pathlib import Path

from vsr.models import download
from vsr.models.catalog import load_catalog
from vsr.models.manage.queries import runnable_with


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
