"""Training and validation data from folders of HR images.

LR images are made once per image with MATLAB-compatible bicubic (``vsr.metrics.imresize``),
the protocol of the literature; patches are cut from the (LR, HR) luma pairs with random
flips and 90-degree rotations.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vsr.metrics import imresize_uint8, mod_crop, rgb_to_y

IMAGE_SUFFIXES = {".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp"}


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def read_rgb(path: Path) -> np.ndarray:
    """An image as RGB uint8 (greyscale images are replicated to three channels)."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"cannot read image {path}")
    return np.ascontiguousarray(img[:, :, ::-1])


@dataclass
class Pair:
    name: str
    lr_y: np.ndarray  # float32 in [0, 1]
    hr_y: np.ndarray  # float32 in [0, 1]
    lr_rgb: np.ndarray  # uint8
    hr_rgb: np.ndarray  # uint8


def make_pair(path: Path, scale: int) -> Pair:
    hr = mod_crop(read_rgb(path), scale)
    lr = imresize_uint8(hr, 1 / scale)
    return Pair(
        name=path.stem,
        lr_y=(rgb_to_y(lr) / 255.0).astype(np.float32),
        hr_y=(rgb_to_y(hr) / 255.0).astype(np.float32),
        lr_rgb=lr,
        hr_rgb=hr,
    )


def load_pairs(folders: list[Path], scale: int, *, limit: int | None = None) -> list[Pair]:
    paths = [p for f in folders for p in list_images(f)]
    if limit is not None:
        paths = paths[:limit]
    if not paths:
        raise ValueError(f"no images in {', '.join(str(f) for f in folders)}")
    return [make_pair(p, scale) for p in paths]


class PatchSampler:
    """Random (LR, HR) luma patches with flips and rotations, from a fixed-seed generator."""

    def __init__(self, pairs: list[Pair], *, scale: int, lr_patch: int, seed: int) -> None:
        self.pairs = [p for p in pairs if min(p.lr_y.shape) >= lr_patch]
        if not self.pairs:
            raise ValueError(f"no training image is at least {lr_patch * scale} px")
        self.scale = scale
        self.lr_patch = lr_patch
        self.rng = np.random.default_rng(seed)
        # sample images in proportion to their area
        areas = np.array([p.lr_y.size for p in self.pairs], dtype=np.float64)
        self.weights = areas / areas.sum()

    def batch(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        p, s = self.lr_patch, self.scale
        lr = np.empty((n, 1, p, p), np.float32)
        hr = np.empty((n, 1, p * s, p * s), np.float32)
        picks = self.rng.choice(len(self.pairs), size=n, p=self.weights)
        for i, k in enumerate(picks):
            pair = self.pairs[k]
            h, w = pair.lr_y.shape
            y = int(self.rng.integers(0, h - p + 1))
            x = int(self.rng.integers(0, w - p + 1))
            a = pair.lr_y[y : y + p, x : x + p]
            b = pair.hr_y[y * s : (y + p) * s, x * s : (x + p) * s]
            t = int(self.rng.integers(0, 8))
            if t & 1:
                a, b = a[:, ::-1], b[:, ::-1]
            if t & 2:
                a, b = a[::-1], b[::-1]
            if t & 4:
                a, b = a.T, b.T
            lr[i, 0] = a
            hr[i, 0] = b
        return lr, hr

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state
