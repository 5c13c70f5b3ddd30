"""Device and precision choice."""

from __future__ import annotations

import torch

from vsr.backends.options import PRECISIONS
from vsr.errors import DeviceError, UsageError

__all__ = ["PRECISIONS", "resolve_device", "resolve_dtype"]


def resolve_device(name: str) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu. Raises DeviceError if unavailable."""
    name = name.lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UsageError(
            f"unknown device {name!r}", hint="use auto, cpu, cuda, cuda:N or mps"
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError("CUDA is not available here", hint="use --device cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(
                f"no {name}: this machine has {torch.cuda.device_count()} CUDA device(s)",
                hint="use --device cuda:0",
            )
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise DeviceError("MPS is not available here", hint="use --device cpu or auto")
    elif dev.type != "cpu":
        raise UsageError(f"unsupported device {name!r}", hint="use auto, cpu, cuda, cuda:N or mps")
    return dev


def resolve_dtype(precision: str, device: torch.device, *, fp16: bool, bf16: bool) -> torch.dtype:
    """``auto``: fp16 on CUDA/MPS when the model supports it, fp32 otherwise (and on CPU)."""
    precision = precision.lower()
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}", hint="use auto, fp32, fp16 or bf16")
    if precision == "auto":
        return torch.float16 if device.type in ("cuda", "mps") and fp16 else torch.float32
    if precision == "fp32":
        return torch.float32
    if precision == "fp16":
        if device.type == "cpu":
            raise UsageError("fp16 needs a GPU", hint="use --precision fp32 or bf16 on the CPU")
        if not fp16:
            raise UsageError("this model does not support fp16", hint="use --precision fp32")
        return torch.float16
    if not bf16:
        raise UsageError("this model does not support bf16", hint="use --precision fp32")
    return torch.bfloat16
