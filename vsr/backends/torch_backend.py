"""The torch backend: batches of YUV frames through a model on cuda, mps or cpu.

Luma-only models run on Y; chroma is resized bicubic on the same device, so the frame
never leaves YUV. RGB models get RGB made with the stream's own matrix and range (on the
device), and their output is converted back (``vsr.backends.convert``). Planewise models
(interpolation) run on every plane. Quantisation to integers happens on the device before
the copy back (``vsr.backends.transfer``, which also holds the GPU data path: pinned
staging buffers and copy streams). Luma is uploaded and its network queued before chroma
is uploaded, so the chroma copies overlap the network.

Every network call goes through :meth:`TorchBackend.run_model`, which adds the optional
x8 self-ensemble (``vsr.backends.ensemble``) and tiling (``vsr.backends.tiling``), and
recovers from running out of device memory (``vsr.backends.oom``): it halves the batch
(frames, or tiles, per forward pass) and retries, then switches to tiles (or halves the
tile size) down to ``MIN_TILE``, and only then raises :class:`OutOfMemoryError` saying
what it tried. The failed batch is redone in full: no frame is ever dropped, and the
smaller settings stay for the rest of the run.

``compile``: ``"default"`` runs the network through ``torch.compile``,
``"reduce-overhead"`` through its CUDA-graph mode. A compiler failure (no C compiler,
an unsupported op) logs one warning and the backend goes on in eager mode.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch

from vsr.backends.convert import chroma_cpu, pad_to_multiple, run_rgb
from vsr.backends.device import resolve_device, resolve_dtype
from vsr.backends.ensemble import self_ensemble as _self_ensemble
from vsr.backends.oom import OOMFallback, is_oom
from vsr.backends.options import check_compile
from vsr.backends.tiling import DEFAULT_OVERLAP, run_tiled
from vsr.backends.transfer import Download, HostTransfer, StagingPool
from vsr.media.frame import ColorInfo, Frame
from vsr.models.archs.interpolate import PolyphaseResize
from vsr.models.deploy import inference_module
from vsr.models.registry import LoadedModel

log = logging.getLogger("vsr")


class TorchBackend(HostTransfer, OOMFallback):
    """Runs ``model`` on lists of frames of one size and format (one video stream)."""

    name = "torch"  # the backend, as --backend names it

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
        compile: str = "off",
        staging: bool | None = None,
    ) -> None:
        """``tile``: core tile size in LR pixels (0: whole frames); ``tile_overlap``: LR
        pixels of context on each side of a tile (default ``DEFAULT_OVERLAP``);
        ``tile_batch``: tiles per forward pass (default 8 on a GPU, 4 on the CPU);
        ``self_ensemble``: average the x8 geometric self-ensemble; ``compile``: one of
        ``COMPILE_MODES`` (``"off"``, ``"default"``, ``"reduce-overhead"``);
        ``staging``: reused (pinned) host buffers and copy streams (``None``: on CUDA
        only; ``True`` on the CPU uses the buffers without pinning or streams)."""
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
        # inference_module: a copy with transposed convolutions as sub-pixel convolutions
        self.module = inference_module(model.module).to(self.device, self.dtype).eval()
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.module = self.module.to(memory_format=self.memory_format)  # type: ignore[call-overload]
        self.chroma_resize = PolyphaseResize(self.scale, "cubic").to(self.device, self.dtype)
        self._pin = self.device.type == "cuda"
        if staging is None:
            staging = self.device.type == "cuda"
        self.staging: StagingPool | None = StagingPool(pin=self._pin) if staging else None
        # Copy streams: uploads and downloads each on their own (each direction has its
        # own copy engine; a download waiting for the network must not hold up uploads).
        self._h2d: Any = None
        self._d2h: Any = None
        if self.staging is not None and self.device.type == "cuda":
            self._h2d = torch.cuda.Stream(device=self.device)
            self._d2h = torch.cuda.Stream(device=self.device)
        check_compile(compile)
        self.compile = compile
        self._compiled: Callable[[torch.Tensor], torch.Tensor] | None = self._make_compiled()
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
        extra += f", compiled ({self.compile})" if self._compiled is not None else ""
        return f"{self.device} {dtype}{extra}"

    # -- torch.compile ----------------------------------------------------------------------
    def _make_compiled(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        if self.compile == "off":
            return None
        try:
            return torch.compile(self.module, mode=self.compile)
        except Exception as exc:  # compiling is an optimisation: never fatal
            self._compile_failed(exc)
            return None

    def _compile_failed(self, exc: BaseException) -> None:
        self._compiled = None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        log.warning(
            "torch.compile (%s) failed, running the model eagerly: %s%s",
            self.compile,
            type(exc).__name__,
            f": {first[:200]}" if first else "",
        )

    def _call_module(self, x: torch.Tensor) -> torch.Tensor:
        """The network on a padded, laid-out batch: compiled when it can be."""
        compiled = self._compiled
        if compiled is None:
            return self.module(x)
        graphs = self.compile == "reduce-overhead" and x.device.type == "cuda"
        try:
            if graphs:
                # Each call is a new CUDA-graph iteration: it reuses the memory of the
                # previous call's output, so that output is copied out below.
                torch.compiler.cudagraph_mark_step_begin()
            y = compiled(x)
        except Exception as exc:
            if is_oom(exc):
                raise
            # Compiling happens on the first call (and on new shapes); an error in the
            # model itself comes back from the eager call below.
            self._compile_failed(exc)
            return self.module(x)
        return y.clone() if graphs else y

    # -- the model ----------------------------------------------------------------------
    def _run(self, x: torch.Tensor) -> torch.Tensor:
        x, h, w = pad_to_multiple(x, self.spec.size_multiple)
        y = self._call_module(x.contiguous(memory_format=self.memory_format))
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
            x, h, w = pad_to_multiple(x, self.spec.size_multiple)
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
        pending: list[Download] = []
        try:
            # Order matters on CUDA only (for overlap, not correctness): luma goes up and
            # its network is queued before chroma is copied and uploaded, and each result
            # starts down while the next plane is computed.
            y = self._to_device([f.planes[0] for f in frames], peak)
            if self.spec.channels == 1 and not self.spec.planewise:
                pending.append(self._start_host(self.run_model(y), peak))
                del y
                if self.device.type == "cpu":
                    cu, cv = (
                        chroma_cpu([f.planes[k] for f in frames], self.scale, peak) for k in (1, 2)
                    )
                    luma = self._finish_host(pending.pop(), np_dtype)
                    return [
                        replace(f, planes=(luma[i], cu[i], cv[i])) for i, f in enumerate(frames)
                    ]
                for k in (1, 2):
                    c = self._to_device([f.planes[k] for f in frames], peak)
                    pending.append(self._start_host(self.chroma_resize(c), peak))
                    del c
            else:
                u = self._to_device([f.planes[1] for f in frames], peak)
                v = self._to_device([f.planes[2] for f in frames], peak)
                if self.spec.planewise:
                    for plane in (y, u, v):
                        pending.append(self._start_host(self.run_model(plane), peak))
                else:
                    for plane in run_rgb(self.run_model, y, u, v, self.color, first.bit_depth):
                        pending.append(self._start_host(plane, peak))
                del y, u, v
            ys, us, vs = (self._finish_host(p, np_dtype) for p in pending)
        finally:
            for p in pending:  # after an error: give the buffers back (after their copies)
                if p.buf is not None and p.buf.busy:
                    p.buf.wait()
                    self._release(p.buf)
        return [replace(f, planes=(ys[i], us[i], vs[i])) for i, f in enumerate(frames)]
