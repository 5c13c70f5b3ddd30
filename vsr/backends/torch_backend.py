"""The torch backend: batches of YUV frames through a model on cuda, mps or cpu.

Luma-only models run on Y; chroma is resized bicubic on the same device, so the frame
never leaves YUV. RGB models get RGB made with the stream's own matrix and range (on the
device), and their output is converted back. Planewise models (interpolation) run on
every plane. Quantisation to integers happens on the device before the copy back.

Every network call goes through :meth:`TorchBackend.run_model`, which adds the optional
x8 self-ensemble (``vsr.backends.ensemble``) and tiling (``vsr.backends.tiling``), and
recovers from running out of device memory: it halves the batch (frames, or tiles, per
forward pass) and retries, then switches to tiles (or halves the tile size) down to
``MIN_TILE``, and only then raises :class:`OutOfMemoryError` saying what it tried. The
failed batch is redone in full: no frame is ever dropped, and the smaller settings stay
for the rest of the run.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch
import torch.nn.functional as F

from vsr.backends.device import resolve_device, resolve_dtype
from vsr.backends.ensemble import self_ensemble as _self_ensemble
from vsr.backends.tiling import DEFAULT_OVERLAP, run_tiled
from vsr.errors import VsrError
from vsr.media.frame import ColorInfo, Frame
from vsr.models.archs.interpolate import PolyphaseResize
from vsr.models.registry import LoadedModel

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


class TorchBackend:
    """Runs ``model`` on lists of frames of one size and format (one video stream)."""

    def __init__(
        self,
        model: LoadedModel,
        *,
        device: str = "auto",
        precision: str = "auto",
        color: ColorInfo | None = None,
        threads: int | None = None,
        channels_last: bool = True,
        tile: int = 0,
        tile_overlap: int | None = None,
        tile_batch: int | None = None,
        self_ensemble: bool = False,
    ) -> None:
        """``tile``: core tile size in LR pixels (0: whole frames); ``tile_overlap``: LR
        pixels of context on each side of a tile (default ``DEFAULT_OVERLAP``);
        ``tile_batch``: tiles per forward pass (default 8 on a GPU, 4 on the CPU);
        ``self_ensemble``: average the x8 geometric self-ensemble."""
        self.model = model
        self.spec = model.spec
        self.scale = model.scale
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(precision, self.device, fp16=self.spec.fp16, bf16=self.spec.bf16)
        self.color = color or ColorInfo()
        if self.device.type == "cpu":
            torch.set_num_threads(threads or os.cpu_count() or 1)
        elif self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        # channels_last: about twice as fast for these convolutions on CPU (oneDNN) and
        # the layout tensor cores want on CUDA.
        self.module = model.module.to(self.device, self.dtype).eval()
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.module = self.module.to(memory_format=self.memory_format)  # type: ignore[call-overload]
        self.chroma_resize = PolyphaseResize(self.scale, "cubic").to(self.device, self.dtype)
        self._pin = self.device.type == "cuda"
        if tile < 0 or (tile_overlap is not None and tile_overlap < 0):
            raise ValueError("tile and tile_overlap must be at least 0")
        self.self_ensemble = self_ensemble
        self.tile_overlap = DEFAULT_OVERLAP if tile_overlap is None else tile_overlap
        # Mutable: out-of-memory recovery lowers them for the rest of the run.
        self.tile = tile
        self.tile_batch = tile_batch or (4 if self.device.type == "cpu" else 8)
        self.frames_per_pass: int | None = None  # None: as many as upscale() is given
        self._inflight = (0, False)  # (items, tiled) of the forward pass in progress
        self._tried: list[str] = []

    @property
    def default_batch_size(self) -> int:
        """Frames per batch when the user gives none: 1 on the CPU (larger batches only
        spill the caches there), 8 on a GPU (enough work per launch)."""
        return 1 if self.device.type == "cpu" else 8

    @property
    def description(self) -> str:
        dtype = str(self.dtype).replace("torch.", "")
        extra = f", tiles {self.tile}+{self.tile_overlap}" if self.tile else ""
        extra += ", x8 self-ensemble" if self.self_ensemble else ""
        return f"{self.device} {dtype}{extra}"

    # -- host <-> device ------------------------------------------------------------
    def _to_device(self, planes: list[np.ndarray], peak: float) -> torch.Tensor:
        """Stack same-shape planes into (N, 1, H, W) on the device, scaled to [0, 1]."""
        arr = np.stack(planes)
        if arr.dtype == np.uint16:
            arr = arr.astype(np.int16)  # 10-bit fits; torch has no uint16 arithmetic
        host = torch.from_numpy(arr)
        if self._pin:
            host = host.pin_memory()
        x = host.to(self.device, non_blocking=self._pin)
        return (x.to(self.dtype) * (1.0 / peak)).unsqueeze(1)

    @staticmethod
    def _to_host(x: torch.Tensor, peak: float, out_dtype: np.dtype) -> np.ndarray:
        """Quantise on the device, then copy (N, 1, H, W) back as integer planes."""
        q = (x.float() * peak).round_().clamp_(0, peak)
        q = q.to(torch.uint8 if peak == 255 else torch.int16)
        return q[:, 0].cpu().numpy().astype(out_dtype, copy=False)

    # -- the model ----------------------------------------------------------------------
    def _pad(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        m = self.spec.size_multiple
        h, w = x.shape[-2:]
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        return x, h, w

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        x, h, w = self._pad(x)
        y = self.module(x.contiguous(memory_format=self.memory_format))
        return y[..., : h * self.scale, : w * self.scale]

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """One forward pass (8 with the self-ensemble) on a batch of frames or tiles."""
        self._inflight = (int(x.shape[0]), self.tile > 0)
        return _self_ensemble(self._run, x) if self.self_ensemble else self._run(x)

    def _run_once(self, x: torch.Tensor) -> torch.Tensor:
        if self.tile:
            # Pad the whole frame as an untiled pass would, then tile it: the windows that
            # meet the frame's end see the same replicated border, and every window is a
            # multiple of the size requirement.
            x, h, w = self._pad(x)
            y = run_tiled(
                self._forward,
                x,
                scale=self.scale,
                tile=self.tile,
                overlap=self.tile_overlap,
                multiple=self.spec.size_multiple,
                batch=self.tile_batch,
            )
            return y[..., : h * self.scale, : w * self.scale]
        step = self.frames_per_pass or x.shape[0]
        if step >= x.shape[0]:
            return self._forward(x)
        out: torch.Tensor | None = None
        for i in range(0, x.shape[0], step):
            y = self._forward(x[i : i + step])
            if out is None:
                out = y.new_empty((x.shape[0], *y.shape[1:]))
            out[i : i + step] = y
            del y
        assert out is not None
        return out

    @torch.inference_mode()
    def run_model(self, x: torch.Tensor) -> torch.Tensor:
        """The network on ``x`` (N, C, H, W) in [0, 1]: moved to the device and dtype,
        padded to ``size_multiple``, tiled and self-ensembled as configured.

        Returns (N, C', H*scale, W*scale) in the backend's dtype, not clamped. On running
        out of device memory it lowers frames/tiles per pass, then the tile size, and
        retries; raises OutOfMemoryError when even one ``MIN_TILE`` tile does not fit.
        """
        x = x.to(self.device, self.dtype)
        while True:
            self._inflight = (0, False)
            try:
                return self._run_once(x)
            except RuntimeError as exc:  # torch.cuda.OutOfMemoryError is one
                if not is_oom(exc):
                    raise
                items = self._inflight[0]
            # Outside the except block: the traceback and the tensors it holds are gone.
            self._free()
            self._lower(items, tuple(x.shape))

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

    @torch.inference_mode()
    def upscale(self, frames: list[Frame]) -> list[Frame]:
        """Upscale a batch of frames of one size/format; returns new frames, same order.

        Out of memory outside the network itself (transfers, colour conversion, chroma)
        halves the frames per call and redoes them: every frame is returned. Raises
        OutOfMemoryError when one frame does not fit.
        """
        out: list[Frame] = []
        i = 0
        while i < len(frames):
            n = min(self.frames_per_pass or len(frames), len(frames) - i)
            try:
                out += self._upscale(frames[i : i + n])
                i += n
                continue
            except RuntimeError as exc:
                if not is_oom(exc):
                    raise
            self._free()
            if n == 1:
                f = frames[i]
                self._give_up(f"{f.width}x{f.height} frames outside the network")
            self.frames_per_pass = n // 2
            self._step(f"{n} -> {self.frames_per_pass} frames per call")
        return out

    def _upscale(self, frames: list[Frame]) -> list[Frame]:
        first = frames[0]
        peak = float((1 << first.bit_depth) - 1)
        np_dtype = first.planes[0].dtype
        y = self._to_device([f.planes[0] for f in frames], peak)
        u = self._to_device([f.planes[1] for f in frames], peak)
        v = self._to_device([f.planes[2] for f in frames], peak)
        if self.spec.planewise:
            y, u, v = self.run_model(y), self.run_model(u), self.run_model(v)
        elif self.spec.channels == 1:
            y = self.run_model(y)
            u, v = self.chroma_resize(u), self.chroma_resize(v)
        else:
            y, u, v = self._run_rgb(y, u, v, first.bit_depth)
        ys = self._to_host(y, peak, np_dtype)
        us = self._to_host(u, peak, np_dtype)
        vs = self._to_host(v, peak, np_dtype)
        return [
            Frame(f.index, f.pts, f.time_base, (ys[i], us[i], vs[i]), f.pix_fmt)
            for i, f in enumerate(frames)
        ]

    def _run_rgb(
        self, y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, bit_depth: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        from vsr.backends.color import rgb_to_yuv, yuv_to_rgb

        h, w = y.shape[-2:]
        sub = (h // u.shape[-2] if u.shape[-2] else 1, w // u.shape[-1] if u.shape[-1] else 1)
        if u.shape[-2:] != y.shape[-2:]:
            u = F.interpolate(u, size=(h, w), mode="bilinear", align_corners=False)
            v = F.interpolate(v, size=(h, w), mode="bilinear", align_corners=False)
        rgb = yuv_to_rgb(torch.cat([y, u, v], 1), self.color, height=h, bit_depth=bit_depth)
        rgb = rgb.clamp_(0, 1)
        out = self.run_model(rgb).clamp_(0, 1)
        yuv = rgb_to_yuv(out, self.color, height=h, bit_depth=bit_depth)
        y2, u2, v2 = yuv[:, 0:1], yuv[:, 1:2], yuv[:, 2:3]
        if sub != (1, 1):
            u2 = F.avg_pool2d(u2, sub, ceil_mode=True)
            v2 = F.avg_pool2d(v2, sub, ceil_mode=True)
        return y2, u2, v2
