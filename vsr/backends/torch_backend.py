"""The torch backend: batches of YUV frames through a model on cuda, mps or cpu.

Luma-only models run on Y; chroma is resized bicubic on the same device, so the frame
never leaves YUV. RGB models get RGB made with the stream's own matrix and range (on the
device), and their output is converted back. Planewise models (interpolation) run on
every plane. Quantisation to integers happens on the device before the copy back.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch
import torch.nn.functional as F

from vsr.backends.device import resolve_device, resolve_dtype
from vsr.media.frame import ColorInfo, Frame
from vsr.models.archs.interpolate import PolyphaseResize
from vsr.models.registry import LoadedModel

log = logging.getLogger("vsr")


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
    ) -> None:
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
        self.module = self.module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.chroma_resize = PolyphaseResize(self.scale, "cubic").to(self.device, self.dtype)
        self._pin = self.device.type == "cuda"

    @property
    def default_batch_size(self) -> int:
        """Frames per batch when the user gives none: 1 on the CPU (larger batches only
        spill the caches there), 8 on a GPU (enough work per launch)."""
        return 1 if self.device.type == "cpu" else 8

    @property
    def description(self) -> str:
        dtype = str(self.dtype).replace("torch.", "")
        return f"{self.device} {dtype}"

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
        y = self.module(x.contiguous(memory_format=torch.channels_last))
        return y[..., : h * self.scale, : w * self.scale]

    @torch.inference_mode()
    def upscale(self, frames: list[Frame]) -> list[Frame]:
        """Upscale a batch of frames of one size/format; returns new frames, same order."""
        if not frames:
            return []
        first = frames[0]
        peak = float((1 << first.bit_depth) - 1)
        np_dtype = first.planes[0].dtype
        y = self._to_device([f.planes[0] for f in frames], peak)
        u = self._to_device([f.planes[1] for f in frames], peak)
        v = self._to_device([f.planes[2] for f in frames], peak)
        if self.spec.planewise:
            y, u, v = self._run(y), self._run(u), self._run(v)
        elif self.spec.channels == 1:
            y = self._run(y)
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
        out = self._run(rgb).clamp_(0, 1)
        yuv = rgb_to_yuv(out, self.color, height=h, bit_depth=bit_depth)
        y2, u2, v2 = yuv[:, 0:1], yuv[:, 1:2], yuv[:, 2:3]
        if sub != (1, 1):
            u2 = F.avg_pool2d(u2, sub, ceil_mode=True)
            v2 = F.avg_pool2d(v2, sub, ceil_mode=True)
        return y2, u2, v2
