"""Tiled inference: overlapping low-resolution tiles, run in batches, cropped and stitched.

Every output pixel comes from exactly one tile, from that tile's *core*. Around its core a
tile carries ``overlap`` real neighbouring pixels on each side (fewer only where the
frame itself ends), so the network sees the same context as it would on the whole frame;
what it makes of that margin is cropped away. When ``overlap`` covers the network's
receptive field (ESPCN: 4 LR pixels, FSRCNN: about 8, bicubic: 2, Lanczos-3: 3) the
stitched result equals the untiled one up to float summation order, with no seams and no
blending weights. Deeper networks need a larger ``--tile-overlap``; with a smaller one
the seams are the network's border effects, cropped at least ``overlap`` pixels away.

All windows of a frame have one size, so tiles of several frames batch into one forward
pass. A window is the whole frame along an axis the tile covers; otherwise its size is a
multiple of the model's ``size_multiple``. The torch backend pads the whole frame to that
multiple first (replicate, bottom/right, as an untiled pass does) and tiles the padded
frame, so every window meets the requirement and the border is the untiled one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

#: Default overlap in LR pixels: covers ESPCN, FSRCNN and the interpolation kernels.
DEFAULT_OVERLAP = 16


@dataclass(frozen=True)
class AxisPlan:
    """Windows along one axis: ``size`` each, starting at ``starts[k]``; window ``k``
    provides the output of the core ``[cores[k][0], cores[k][1])`` (LR coordinates)."""

    size: int
    starts: tuple[int, ...]
    cores: tuple[tuple[int, int], ...]


def plan_axis(length: int, *, tile: int, overlap: int, multiple: int = 1) -> AxisPlan:
    """Split ``[0, length)`` into cores of at most ``tile`` pixels and one window size.

    Cores are near-equal (no sliver at the end). Each window holds its core plus at least
    ``overlap`` pixels on each side, except where it meets the end of the axis; windows
    never leave ``[0, length)``. Raises ValueError for a tile below 1 or a negative
    overlap.
    """
    if tile < 1 or overlap < 0 or multiple < 1:
        raise ValueError(f"bad tiling: tile {tile}, overlap {overlap}, multiple {multiple}")
    n = -(-length // tile)
    if n <= 1:
        return AxisPlan(length, (0,), ((0, length),))
    bounds = [round(k * length / n) for k in range(n + 1)]
    core = max(b - a for a, b in zip(bounds, bounds[1:], strict=False))
    size = core + 2 * overlap
    size = min(-(-size // multiple) * multiple, length)
    starts, cores = [], []
    for a, b in zip(bounds, bounds[1:], strict=False):
        starts.append(min(max(a - overlap, 0), length - size))
        cores.append((a, b))
    return AxisPlan(size, tuple(starts), tuple(cores))


@dataclass(frozen=True)
class TilePlan:
    rows: AxisPlan
    cols: AxisPlan

    @property
    def count(self) -> int:
        """Windows per frame."""
        return len(self.rows.starts) * len(self.cols.starts)


def plan_tiles(height: int, width: int, *, tile: int, overlap: int, multiple: int = 1) -> TilePlan:
    return TilePlan(
        plan_axis(height, tile=tile, overlap=overlap, multiple=multiple),
        plan_axis(width, tile=tile, overlap=overlap, multiple=multiple),
    )


def run_tiled(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    scale: int,
    tile: int,
    overlap: int,
    multiple: int = 1,
    batch: int = 1,
) -> torch.Tensor:
    """Apply ``fn`` ((n, C, h, w) -> (n, C', h*scale, w*scale)) to ``x`` (N, C, H, W)
    tile by tile, ``batch`` windows (of any frames) per call, and stitch the cores.

    Returns (N, C', H*scale, W*scale) in the dtype and on the device ``fn`` returns.
    Raises ValueError when ``fn`` does not scale its input by ``scale``.
    """
    n_frames, _, height, width = x.shape
    plan = plan_tiles(height, width, tile=tile, overlap=overlap, multiple=multiple)
    wh, ww = plan.rows.size, plan.cols.size
    jobs = [
        (f, ys, yc, xs, xc)
        for f in range(n_frames)
        for ys, yc in zip(plan.rows.starts, plan.rows.cores, strict=True)
        for xs, xc in zip(plan.cols.starts, plan.cols.cores, strict=True)
    ]
    out: torch.Tensor | None = None
    s = scale
    for i in range(0, len(jobs), max(1, batch)):
        chunk = jobs[i : i + max(1, batch)]
        windows = torch.stack([x[f, :, ys : ys + wh, xs : xs + ww] for f, ys, _, xs, _ in chunk])
        y = fn(windows)
        if y.shape[-2:] != (wh * s, ww * s):
            raise ValueError(
                f"the model made {tuple(y.shape[-2:])} from a {wh}x{ww} tile, not x{s}"
            )
        if out is None:
            out = y.new_empty((n_frames, y.shape[1], height * s, width * s))
        for k, (f, ys, (y0, y1), xs, (x0, x1)) in enumerate(chunk):
            out[f, :, y0 * s : y1 * s, x0 * s : x1 * s] = y[
                k, :, (y0 - ys) * s : (y1 - ys) * s, (x0 - xs) * s : (x1 - xs) * s
            ]
        del windows, y
    assert out is not None
    return out
