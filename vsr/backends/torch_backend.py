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

The GPU data path (``staging``, on by default on CUDA): planes are copied into reused
pinned host buffers (:class:`StagingPool`) and uploaded on a copy stream; the compute
stream waits for each upload (``wait_stream``), so correctness never depends on timing.
Luma is uploaded and its network queued before chroma is uploaded, so the chroma copies
overlap the network. Results are quantised on the device and downloaded on a second copy
stream into pinned buffers; the host waits on each buffer's event before reading it,
then copies the planes out (the buffers are reused, the frames are not). On the CPU (and
with ``staging=False``) this is the plain path: ``np.stack``, ``.to(device)``, ``.cpu()``.

``compile``: ``"default"`` runs the network through ``torch.compile``,
``"reduce-overhead"`` through its CUDA-graph mode. A compiler failure (no C compiler,
an unsupported op) logs one warning and the backend goes on in eager mode.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from vsr.backends.device import resolve_device, resolve_dtype
from vsr.backends.ensemble import self_ensemble as _self_ensemble
from vsr.backends.tiling import DEFAULT_OVERLAP, run_tiled
from vsr.config import check_compile
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


@dataclass(eq=False)
class StagingBuffer:
    """One host buffer of a :class:`StagingPool`: a (pinned) tensor, its numpy view and
    the CUDA event recorded after the last asynchronous copy from or to it."""

    tensor: torch.Tensor
    event: Any = None  # torch.cuda.Event once a copy has been recorded, else None
    busy: bool = False  # handed out and not yet released
    pooled: bool = True  # False: a one-off buffer (every pooled one was busy)

    @property
    def array(self) -> np.ndarray:
        """The numpy view of the buffer (same memory)."""
        return self.tensor.numpy()

    def record(self, stream: Any) -> None:
        """Mark the copies queued so far on ``stream`` as the buffer's pending use."""
        if self.event is None:
            self.event = torch.cuda.Event()
        self.event.record(stream)

    def ready(self) -> bool:
        """Whether no copy from/to the buffer is pending (never blocks)."""
        return self.event is None or bool(self.event.query())

    def wait(self) -> None:
        """Block the host until the pending copy (if any) is done."""
        if self.event is not None:
            self.event.synchronize()


class StagingPool:
    """Reused host buffers keyed by (shape, dtype); pinned when ``pin`` (CUDA).

    :meth:`acquire` returns a free buffer of that key whose last copy is done, else a
    new one while the key has fewer than ``per_key`` buffers, else waits for the oldest
    free one. A buffer stays ``busy`` (never handed out again) until :meth:`release`;
    when every buffer of a key is busy, a one-off buffer is returned. At most
    ``max_keys`` keys are kept: the least recently used one is dropped (after its
    pending copies) to make room.
    """

    def __init__(self, *, pin: bool, per_key: int = 3, max_keys: int = 8) -> None:
        if per_key < 1 or max_keys < 1:
            raise ValueError("per_key and max_keys must be at least 1")
        self.pin = pin
        self.per_key = per_key
        self.max_keys = max_keys
        self._buffers: OrderedDict[tuple[tuple[int, ...], torch.dtype], list[StagingBuffer]]
        self._buffers = OrderedDict()
        self.allocations = 0  # buffers made so far (pooled and one-off)

    def __len__(self) -> int:
        """Pooled buffers held now."""
        return sum(len(v) for v in self._buffers.values())

    def key_order(self) -> list[tuple[tuple[int, ...], torch.dtype]]:
        """Keys held now, least recently used first."""
        return list(self._buffers)

    def _new(self, shape: tuple[int, ...], dtype: torch.dtype, pooled: bool) -> StagingBuffer:
        self.allocations += 1
        tensor = torch.empty(shape, dtype=dtype, pin_memory=self.pin)
        return StagingBuffer(tensor, busy=True, pooled=pooled)

    def acquire(self, shape: tuple[int, ...], dtype: torch.dtype) -> StagingBuffer:
        """A buffer of ``shape`` and ``dtype`` that nothing reads or writes now (busy
        until released)."""
        key = (tuple(int(n) for n in shape), dtype)
        bufs = self._buffers.get(key)
        if bufs is None:
            self._evict()
            bufs = self._buffers[key] = []
        self._buffers.move_to_end(key)
        free = [b for b in bufs if not b.busy]
        buf = next((b for b in free if b.ready()), None)
        if buf is None and len(bufs) < self.per_key:
            buf = self._new(key[0], dtype, pooled=True)
            bufs.append(buf)
            return buf
        if buf is None and free:
            buf = free[0]
            buf.wait()
        if buf is None:
            return self._new(key[0], dtype, pooled=False)
        # least recently handed out last: the next acquire prefers the other buffers
        bufs.remove(buf)
        bufs.append(buf)
        buf.busy = True
        return buf

    def release(self, buf: StagingBuffer) -> None:
        """Give ``buf`` back; a copy recorded on its event may still be pending."""
        buf.busy = False

    def _evict(self) -> None:
        while len(self._buffers) >= self.max_keys:
            key = next((k for k, v in self._buffers.items() if not any(b.busy for b in v)), None)
            if key is None:
                return  # everything is in use: grow past the bound rather than block
            for buf in self._buffers.pop(key):
                buf.wait()  # never free host memory an async copy still uses


@dataclass(eq=False)
class _Download:
    """Quantised planes on their way to the host: still on the device (``tensor``, the
    plain path) or being copied into a staging buffer (``buf``)."""

    tensor: torch.Tensor | None = None
    buf: StagingBuffer | None = None


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
        self.module = model.module.to(self.device, self.dtype).eval()
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

    # -- host <-> device ------------------------------------------------------------
    def _to_device(self, planes: list[np.ndarray], peak: float) -> torch.Tensor:
        """Stack same-shape planes into (N, 1, H, W) on the device, scaled to [0, 1].

        With staging, the planes are copied into a reused (pinned) buffer and, on CUDA,
        uploaded on the copy stream; the compute stream waits for the upload."""
        if self.staging is None:
            arr = np.stack(planes)
            if arr.dtype == np.uint16:
                arr = arr.astype(np.int16)  # 10-bit fits; torch has no uint16 arithmetic
            host = torch.from_numpy(arr)
            if self._pin:
                host = host.pin_memory()
            x = host.to(self.device, non_blocking=self._pin)
        else:
            x = self._upload(planes)
        return (x.to(self.dtype) * (1.0 / peak)).unsqueeze(1)

    def _upload(self, planes: list[np.ndarray]) -> torch.Tensor:
        assert self.staging is not None
        src = planes[0].dtype
        # 10-bit fits int16; torch has no uint16 arithmetic
        dtype = torch.int16 if src == np.uint16 else torch.from_numpy(np.empty(0, src)).dtype
        buf = self.staging.acquire((len(planes), *planes[0].shape), dtype)
        try:
            view = buf.array
            for i, plane in enumerate(planes):
                np.copyto(view[i], plane, casting="unsafe")  # uint16 -> int16: 10-bit fits
            if self._h2d is None:
                # CPU (and MPS): a synchronous copy; on the CPU ``x`` is the buffer
                # itself, and the caller's dtype conversion copies it before it is reused.
                return buf.tensor.to(self.device)
            compute = torch.cuda.current_stream(self.device)
            with torch.cuda.stream(self._h2d):
                x = buf.tensor.to(self.device, non_blocking=True)
            buf.record(self._h2d)  # the buffer is not refilled before this copy is done
            compute.wait_stream(self._h2d)
            x.record_stream(compute)  # allocated on the copy stream, used on compute
            return x
        finally:
            self._release(buf)

    def _release(self, buf: StagingBuffer) -> None:
        if self.staging is not None and buf.pooled:
            self.staging.release(buf)
        buf.busy = False  # a one-off buffer is simply dropped

    @staticmethod
    def _quantise(x: torch.Tensor, peak: float) -> torch.Tensor:
        """(N, 1, H, W) in [0, 1] -> (N, H, W) integer code values, on the device:
        round half to even (as ``np.rint``), clamp to [0, peak]; uint8 for 8-bit,
        int16 (which holds 10-bit) otherwise."""
        q = (x.float() * peak).round_().clamp_(0, peak)
        return q.to(torch.uint8 if peak == 255 else torch.int16)[:, 0]

    @staticmethod
    def _to_host(x: torch.Tensor, peak: float, out_dtype: np.dtype) -> np.ndarray:
        """Quantise on the device, then copy (N, 1, H, W) back as integer planes (the
        plain path, in one step)."""
        q = TorchBackend._quantise(x, peak)
        return q.cpu().numpy().astype(out_dtype, copy=False)

    def _start_host(self, x: torch.Tensor, peak: float) -> _Download:
        """Quantise ``x`` on the device and queue its copy to the host."""
        if self.staging is None:
            return _Download(tensor=self._quantise(x, peak))
        q = self._quantise(x, peak).contiguous()
        buf = self.staging.acquire(tuple(q.shape), q.dtype)
        try:
            if self._d2h is None:
                buf.tensor.copy_(q)
            else:
                self._d2h.wait_stream(torch.cuda.current_stream(self.device))
                with torch.cuda.stream(self._d2h):
                    buf.tensor.copy_(q, non_blocking=True)
                q.record_stream(self._d2h)  # q's memory is not reused before the copy
                buf.record(self._d2h)
        except BaseException:
            self._release(buf)
            raise
        return _Download(buf=buf)

    def _finish_host(self, pending: _Download, out_dtype: np.dtype) -> np.ndarray:
        """Wait for a queued download and return the planes in memory of their own."""
        if pending.buf is None:
            assert pending.tensor is not None
            return pending.tensor.cpu().numpy().astype(out_dtype, copy=False)
        buf = pending.buf
        try:
            buf.wait()
            return buf.array.astype(out_dtype, copy=True)  # the buffer will be reused
        finally:
            self._release(buf)

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
        pending: list[_Download] = []
        try:
            # Order matters on CUDA only (for overlap, not correctness): luma goes up and
            # its network is queued before chroma is copied and uploaded, and each result
            # starts down while the next plane is computed.
            y = self._to_device([f.planes[0] for f in frames], peak)
            if self.spec.channels == 1 and not self.spec.planewise:
                pending.append(self._start_host(self.run_model(y), peak))
                del y
                if self.device.type == "cpu":
                    cu, cv = (self._chroma_cpu([f.planes[k] for f in frames], peak) for k in (1, 2))
                    luma = self._finish_host(pending.pop(), np_dtype)
                    return [
                        Frame(f.index, f.pts, f.time_base, (luma[i], cu[i], cv[i]), f.pix_fmt)
                        for i, f in enumerate(frames)
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
                    for plane in self._run_rgb(y, u, v, first.bit_depth):
                        pending.append(self._start_host(plane, peak))
                del y, u, v
            ys, us, vs = (self._finish_host(p, np_dtype) for p in pending)
        finally:
            for p in pending:  # after an error: give the buffers back (after their copies)
                if p.buf is not None and p.buf.busy:
                    p.buf.wait()
                    self._release(p.buf)
        return [
            Frame(f.index, f.pts, f.time_base, (ys[i], us[i], vs[i]), f.pix_fmt)
            for i, f in enumerate(frames)
        ]

    def _chroma_cpu(self, planes: list[np.ndarray], peak: float) -> list[np.ndarray]:
        """Chroma on the CPU: OpenCV's bicubic (``INTER_CUBIC``, a = -0.75, replicated
        borders) straight on the integer planes, the kernel ``chroma_resize`` computes in
        float (within one code value of it), about eight times faster on the CPU."""
        out = []
        for plane in planes:
            h, w = plane.shape
            up = cv2.resize(plane, (w * self.scale, h * self.scale), interpolation=cv2.INTER_CUBIC)
            if plane.dtype == np.uint16:
                np.minimum(up, np.uint16(peak), out=up)  # 10-bit: cubic overshoots 1023
            out.append(up)
        return out

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
