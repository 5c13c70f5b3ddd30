"""Inference-only rewrites of a network: transposed convolutions as sub-pixel convolutions.

A transposed convolution with stride ``s`` equals an ordinary convolution at the low
resolution that produces ``s*s*C_out`` channels, followed by ``PixelShuffle(s)``: every
output pixel ``s*q + r`` (per axis, phase ``r`` in ``0..s-1``) of the transposed convolution
only reads the taps of the kernel ``W`` congruent to ``r + pad`` modulo ``s``. Per axis::

    out[s*q + r] = b + sum_j x[q - j] * W[s*j + r + pad]      (0 <= s*j + r + pad < k)

Over all phases ``j`` runs from ``j_min = ceil((1 - s - pad) / s)`` to
``j_max = floor((k - 1 - pad) / s)``. A cross-correlation kernel of ``T = j_max - j_min + 1``
taps with left padding ``P = j_max`` and ``K_r[t] = W[s*(P - t) + r + pad]`` (zero where that
index is outside the kernel) gives ``out_r[q] = sum_t x[q + t - P] * K_r[t]``, the phase-``r``
samples; phase ``r`` of output channel ``c`` becomes channel ``c*s*s + ry*s + rx`` of the
convolution, which is PixelShuffle's order. The transposed convolution's output length
``(H - 1)*s - 2*pad + k + output_padding`` is ``s*H + e`` with ``e = k - 2*pad +
output_padding - s`` whatever ``H`` is; when ``e != 0`` the convolution computes
``ceil(e / s)`` extra (or fewer) samples per phase through its right padding and the
shuffled result is cropped by ``s*ceil(e / s) - e`` at the end.

On the CPU (oneDNN, and OpenVINO, whose ConvolutionBackpropData is slow) the sub-pixel form is
several times faster: FSRCNN's 9x9 stride-2 deconvolution becomes a 5x5 convolution to 4
channels. The rewrite is exact up to float rounding (the sums are the same products in
another order).

Only layers with ``groups == 1``, ``dilation == 1``, equal strides on both axes and no hooks
are rewritten; any other is kept. :func:`inference_module` never modifies the caller's
module (training and weight export use the original): it returns a rewritten copy. A parent
that calls a transposed convolution with ``output_size=`` cannot use the rewritten copy.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.parameter import UninitializedParameter

__all__ = ["inference_module", "subpixel_from_deconv"]


class _CropEnd(nn.Module):
    """Drops the last ``h`` rows and ``w`` columns."""

    def __init__(self, h: int, w: int) -> None:
        super().__init__()
        self.h = h
        self.w = w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., : x.shape[-2] - self.h, : x.shape[-1] - self.w]

    def extra_repr(self) -> str:
        return f"h={self.h}, w={self.w}"


def _axis_plan(k: int, s: int, pad: int, out_pad: int) -> tuple[int, int, int, int] | None:
    """``(T, P, R, crop)`` for one axis: taps, left and right padding (negative: cropping)
    of the input, and samples cropped at the end of the output; None without any tap."""
    j_min = -((s - 1 + pad) // s)  # ceil((1 - s - pad) / s)
    j_max = (k - 1 - pad) // s
    taps = j_max - j_min + 1
    if taps < 1:
        return None
    extra = k - 2 * pad + out_pad - s  # output length - s*H, the same for every H
    more = -(-extra // s)  # ceil(extra / s): samples per phase beyond H
    left = j_max
    right = more + taps - 1 - left
    return taps, left, right, s * more - extra


def _expressible(layer: nn.Module) -> bool:
    if not isinstance(layer, nn.ConvTranspose2d):
        return False
    if type(layer).forward is not nn.ConvTranspose2d.forward:  # a subclass with its own call
        return False
    if layer._forward_hooks or layer._forward_pre_hooks:  # e.g. the old weight_norm
        return False
    if isinstance(layer.weight, UninitializedParameter):  # LazyConvTranspose2d before use
        return False
    return (
        layer.groups == 1
        and tuple(layer.dilation) == (1, 1)
        and layer.padding_mode == "zeros"
        and layer.stride[0] == layer.stride[1]
        and all(isinstance(p, int) for p in layer.padding)
    )


def subpixel_from_deconv(layer: nn.ConvTranspose2d) -> nn.Module | None:
    """An ``nn.Sequential`` (optional padding, ``Conv2d``, ``PixelShuffle``, optional crop)
    computing what ``layer`` computes, or None when ``layer`` is not expressible that way
    (groups, dilation, unequal strides, hooks, a subclass, uninitialised weights)."""
    if not _expressible(layer):
        return None
    s = int(layer.stride[0])
    kh, kw = (int(v) for v in layer.kernel_size)
    pad_h, pad_w = (int(v) for v in layer.padding)  # ints: _expressible checked
    out_h, out_w = (int(v) for v in layer.output_padding)
    plan_h, plan_w = _axis_plan(kh, s, pad_h, out_h), _axis_plan(kw, s, pad_w, out_w)
    if plan_h is None or plan_w is None:
        return None
    (th, ph, rh, ch), (tw, pw, rw, cw) = plan_h, plan_w
    weight = layer.weight.detach()  # (C_in, C_out, kH, kW)
    c_in, c_out = int(weight.shape[0]), int(weight.shape[1])
    kernel = weight.new_zeros(c_out, s, s, c_in, th, tw)
    for ry in range(s):
        for ty in range(th):
            iy = s * (ph - ty) + ry + pad_h
            if not 0 <= iy < kh:
                continue
            for rx in range(s):
                for tx in range(tw):
                    ix = s * (pw - tx) + rx + pad_w
                    if 0 <= ix < kw:
                        kernel[:, ry, rx, :, ty, tx] = weight[:, :, iy, ix].t()
    symmetric = ph == rh >= 0 and pw == rw >= 0
    conv = nn.Conv2d(
        c_in,
        c_out * s * s,
        (th, tw),
        padding=(ph, pw) if symmetric else 0,
        bias=layer.bias is not None,
        device=weight.device,
        dtype=weight.dtype,
    )
    with torch.no_grad():
        conv.weight.copy_(kernel.reshape(c_out * s * s, c_in, th, tw))
        if layer.bias is not None and conv.bias is not None:
            conv.bias.copy_(layer.bias.detach().repeat_interleave(s * s))
    conv.weight.requires_grad_(layer.weight.requires_grad)
    if conv.bias is not None and layer.bias is not None:
        conv.bias.requires_grad_(layer.bias.requires_grad)
    parts: list[nn.Module] = []
    if not symmetric:
        parts.append(nn.ZeroPad2d((pw, rw, ph, rh)))  # negative values crop
    parts.append(conv)
    if s > 1:
        parts.append(nn.PixelShuffle(s))
    if ch or cw:
        parts.append(_CropEnd(ch, cw))
    return nn.Sequential(*parts).train(layer.training)


def inference_module(module: nn.Module) -> nn.Module:
    """A copy of ``module`` with every expressible ``nn.ConvTranspose2d`` replaced by its
    sub-pixel equivalent (:func:`subpixel_from_deconv`); ``module`` itself, unchanged, when it
    has none. The caller's module is never modified."""
    if not any(_expressible(m) for m in module.modules()):
        return module
    if isinstance(module, nn.ConvTranspose2d):
        replaced = subpixel_from_deconv(module)
        return module if replaced is None else replaced
    out = copy.deepcopy(module)
    done: dict[int, nn.Module] = {}  # one replacement per layer, shared where it was shared
    for parent in list(out.modules()):
        for name, child in list(parent._modules.items()):  # named_children() dedups
            if not isinstance(child, nn.ConvTranspose2d):
                continue
            replacement = done.get(id(child)) or subpixel_from_deconv(child)
            if replacement is not None:
                done[id(child)] = replacement
                setattr(parent, name, replacement)
    return out
