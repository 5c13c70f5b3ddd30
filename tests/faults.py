"""Make a pipeline stage fail on purpose, through the ``vsr.pipeline.tally.checkpoint``
seam (production code has no fault parameter).

The points: ``reader`` when the second frame has been decoded, ``model`` before every
batch after the first, ``writer`` when the second frame has been written (a segmented
run: the second frame of the second segment this run writes)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from vsr.pipeline import tally


def _due(stage: str, where: dict[str, int]) -> bool:
    if stage == "reader":
        return where["frames"] == 2
    if stage == "model":
        return where["frames"] >= 1
    if "segment" in where:
        return where["segment"] == 2 and where["in_segment"] == 2
    return where["frames"] == 2


@contextlib.contextmanager
def fault_in(stage: str) -> Iterator[None]:
    """Within the block, ``stage`` (``reader``, ``model``, ``writer``) raises
    ``RuntimeError("injected fault in the <stage> stage")`` at its point."""
    assert stage in ("reader", "model", "writer"), stage

    def checkpoint(point: str, **where: int) -> None:
        if point == stage and _due(stage, where):
            raise RuntimeError(f"injected fault in the {stage} stage")

    patch = pytest.MonkeyPatch()
    patch.setattr(tally, "checkpoint", checkpoint)
    try:
        yield
    finally:
        patch.undo()
