"""Planes between the host and the device for the torch backend.

The plain path (the CPU, and ``staging=False``): ``np.stack``, ``.to(device)``,
``.cpu()``. The GPU data path (``staging``, on by default on CUDA): planes are copied into
reused pinned host buffers (:class:`StagingPool`) and uploaded on a copy stream; the
compute stream waits for each upload (``wait_stream``), so correctness never depends on
timing. Results are quantised on the device and downloaded on a second copy stream into
pinned buffers; the host waits on each buffer's event before reading it, then copies the
planes out (the buffers are reused, the frames are not).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


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
class Download:
    """Quantised planes on their way to the host: still on the device (``tensor``, the
    plain path) or being copied into a staging buffer (``buf``)."""

    tensor: torch.Tensor | None = None
    buf: StagingBuffer | None = None


class HostTransfer:
    """Uploads and downloads of planes (a base of ``TorchBackend``, which sets these
    attributes: ``staging`` None is the plain path; ``_h2d``/``_d2h`` are the CUDA copy
    streams, None elsewhere)."""

    device: torch.device
    dtype: torch.dtype
    staging: StagingPool | None
    _pin: bool
    _h2d: Any
    _d2h: Any

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
        q = HostTransfer._quantise(x, peak)
        return q.cpu().numpy().astype(out_dtype, copy=False)

    def _start_host(self, x: torch.Tensor, peak: float) -> Download:
        """Quantise ``x`` on the device and queue its copy to the host."""
        if self.staging is None:
            return Download(tensor=self._quantise(x, peak))
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
        return Download(buf=buf)

    def _finish_host(self, pending: Download, out_dtype: np.dtype) -> np.ndarray:
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
