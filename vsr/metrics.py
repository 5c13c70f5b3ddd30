"""Quality metrics with the protocol of the SR literature (DESIGN.md section 7).

- ``imresize``: MATLAB-compatible bicubic resize (a = -0.5, antialiased when shrinking),
  the way every published LR test image was made.
- ``rgb_to_y``: BT.601 limited-range luma as MATLAB's ``rgb2ycbcr`` computes it.
- ``psnr`` / ``ssim`` on Y, with ``scale`` pixels shaved from each border.
"""

from __future__ import annotations

import math

import numpy as np


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * (
        (ax > 1) & (ax <= 2)
    )


def _contributions(in_len: int, out_len: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Weights (out_len, taps) and source indices (out_len, taps), MATLAB's algorithm."""
    kernel_width = 4.0
    antialias = scale < 1
    if antialias:
        kernel_width /= scale
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    taps = int(math.ceil(kernel_width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :] - 1
    dist = u[:, None] - idx - 1
    w = scale * _cubic(dist * scale) if antialias else _cubic(dist)
    w = w / w.sum(axis=1, keepdims=True)
    # mirror-symmetric border handling, as MATLAB
    aux = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    idx = aux[np.mod(idx.astype(np.int64), 2 * in_len)]
    keep = np.any(w != 0, axis=0)
    return w[:, keep], idx[:, keep]


def _resize_axis(img: np.ndarray, axis: int, out_len: int, scale: float) -> np.ndarray:
    w, idx = _contributions(img.shape[axis], out_len, scale)
    moved = np.moveaxis(img, axis, 0)
    out = np.einsum("ot,ot...->o...", w, moved[idx])
    return np.moveaxis(out, 0, axis)


def imresize(img: np.ndarray, scale: float) -> np.ndarray:
    """MATLAB ``imresize(img, scale, 'bicubic')`` on float64 data (HxW or HxWxC).

    Returns float64; round and clip yourself when the input was uint8 (as MATLAB does).
    """
    img = np.asarray(img, dtype=np.float64)
    h, w = img.shape[:2]
    out_h, out_w = int(math.ceil(h * scale)), int(math.ceil(w * scale))
    # MATLAB resizes the dimension with the smaller scale first; here both are equal.
    out = _resize_axis(img, 0, out_h, scale)
    return _resize_axis(out, 1, out_w, scale)


def imresize_uint8(img: np.ndarray, scale: float) -> np.ndarray:
    return np.clip(np.round(imresize(img, scale)), 0, 255).astype(np.uint8)


def rgb_to_y(rgb: np.ndarray) -> np.ndarray:
    """BT.601 limited-range luma in [16, 235] (float64) from RGB uint8/float in [0, 255]."""
    rgb = np.asarray(rgb, dtype=np.float64)
    if rgb.ndim == 2:
        return rgb
    return 16.0 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255.0


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2ycbcr`` on [0, 255] data, float64 output."""
    rgb = np.asarray(rgb, dtype=np.float64) / 255.0
    m = np.array([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]])
    return rgb @ m.T + np.array([16.0, 128.0, 128.0])


def ycbcr_to_rgb(ycc: np.ndarray) -> np.ndarray:
    """Inverse of ``rgb_to_ycbcr`` ([0, 255] float64 in and out, not clipped)."""
    m = np.array([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]])
    inv = np.linalg.inv(m)
    return (np.asarray(ycc, dtype=np.float64) - np.array([16.0, 128.0, 128.0])) @ inv.T * 255.0


def mod_crop(img: np.ndarray, scale: int) -> np.ndarray:
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def shave(img: np.ndarray, border: int) -> np.ndarray:
    return img[border:-border, border:-border] if border > 0 else img


def psnr(a: np.ndarray, b: np.ndarray, *, border: int = 0, peak: float = 255.0) -> float:
    """PSNR in dB between two same-size arrays on a [0, peak] scale."""
    a = shave(np.asarray(a, dtype=np.float64), border)
    b = shave(np.asarray(b, dtype=np.float64), border)
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(peak * peak / mse)


def _gaussian_filter(img: np.ndarray, win: np.ndarray) -> np.ndarray:
    """'valid' 2-D filtering with a separable window (as MATLAB's filter2(..., 'valid'))."""
    k = len(win)
    h, w = img.shape
    tmp = sum(win[i] * img[i : h - k + 1 + i, :] for i in range(k))
    return sum(win[j] * tmp[:, j : w - k + 1 + j] for j in range(k))


def ssim(a: np.ndarray, b: np.ndarray, *, border: int = 0, peak: float = 255.0) -> float:
    """SSIM (Wang et al. 2004): Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03."""
    a = shave(np.asarray(a, dtype=np.float64), border)
    b = shave(np.asarray(b, dtype=np.float64), border)
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    g /= g.sum()
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    mu_a, mu_b = _gaussian_filter(a, g), _gaussian_filter(b, g)
    saa = _gaussian_filter(a * a, g) - mu_a**2
    sbb = _gaussian_filter(b * b, g) - mu_b**2
    sab = _gaussian_filter(a * b, g) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * sab + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (saa + sbb + c2)
    return float(np.mean(num / den))
