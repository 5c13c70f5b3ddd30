"""Out-of-memory recovery for the torch backend: recognising the allocator's error
(:func:`is_oom`), and choosing smaller settings after one: fewer frames or tiles per
forward pass, then tiles, then smaller tiles down to ``MIN_TILE``, and only then
:class:`OutOfMemoryError` saying what was tried. The retry loops themselves are
``TorchBackend.run_model`` and ``TorchBackend.upscale``.
"""

from __future__ import annotations

import logging

import torch

from vsr.errors import VsrError

log = logging.getLogger("vsr")

#: The smallest tile (LR pixels) out-of-memory recovery goes down to.
MIN_TILE = 16


class OutOfMemoryError(VsrError, MemoryError):
    """The device ran out of memory even at one frame per pass and the smallest tiles."""


def is_oom(exc: BaseException) -> bool:
    """Whether ``exc`` is a device allocator's out-of-memory error (CUDA, MPS or CPU)."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    if not isinstance(exc, RuntimeError):
        return False
    text = str(exc).lower()
    # MPS: "MPS backend out of memory"; CPU: "DefaultCPUAllocator: can't allocate memory"
    return "out of memory" in text or "can't allocate memory" in text


class OOMFallback:
    """The settings out-of-memory recovery lowers, and how (a base of ``TorchBackend``,
    which sets these attributes). The lowered settings stay for the rest of the run."""

    device: torch.device
    tile: int
    tile_overlap: int
    tile_batch: int
    frames_per_pass: int | None
    _tried: list[str]

    def _free(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        elif self.device.type == "mps":
            torch.mps.empty_cache()

    def _lower(self, items: int, shape: tuple[int, ...]) -> None:
        """Choose smaller settings after running out of memory in a pass of ``items``
        frames or tiles (0: before any pass), or raise OutOfMemoryError.

        Every step strictly lowers frames per pass, tiles per pass or the tile size, so
        the retries end."""
        n, h, w = shape[0], shape[-2], shape[-1]
        if self.tile:
            batch = min(self.tile_batch, items) if items else self.tile_batch
            if batch > 1:
                self.tile_batch = batch // 2
                self._step(f"{batch} -> {self.tile_batch} tiles per pass")
            elif self.tile // 2 >= MIN_TILE:
                self._step(f"tiles {self.tile} -> {self.tile // 2} px")
                self.tile //= 2
            else:
                self._give_up(f"{w}x{h} input even at one {self.tile} px tile per pass")
            return
        batch = min(self.frames_per_pass or n, items or n)
        if batch > 1:
            self.frames_per_pass = batch // 2
            self._step(f"{batch} -> {self.frames_per_pass} frames per pass")
        elif max(h, w) > MIN_TILE:
            self.tile = max(MIN_TILE, 1 << (max(h, w) - 1).bit_length() - 1)
            self.tile_batch = 1
            self._step(f"whole frames -> {self.tile} px tiles (overlap {self.tile_overlap})")
        else:
            self._give_up(f"{w}x{h} input even at one frame per pass")

    def _step(self, what: str) -> None:
        self._tried.append(what)
        log.warning("out of memory on %s: retrying with %s", self.device, what)

    def _give_up(self, what: str) -> None:
        tried = "; ".join(self._tried) or "nothing smaller to try"
        raise OutOfMemoryError(
            f"out of memory on {self.device} for {what} (tried: {tried})",
            hint="use --precision fp16/bf16, a smaller model, --device cpu, or free device memory",
        )
