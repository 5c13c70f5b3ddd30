"""Training and validation data from folders of HR images.

LR images are made once per image with MATLAB-compatible bicubic (``vsr.metrics.imresize``),
the protocol of the literature; patches are cut from the (LR, HR) pairs with random flips
and 90-degree rotations: luma (Y, BT.601 limited range, as the evaluation) for luma-only
models, RGB for RGB models. The draws depend only on the generator's state, so a sampler
restored with :meth:`PatchSampler.set_state` continues the exact same sequence.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vsr.errors import UsageError
from vsr.metrics import imresize_uint8, mod_crop, rgb_to_y

IMAGE_SUFFIXES = {".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp"}


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def read_rgb(path: Path) -> np.ndarray:
    """An image as RGB uint8 (greyscale images are replicated to three channels).

    Raises UsageError when the file cannot be decoded."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise UsageError(f"cannot read image {path}", hint="remove it from the folder")
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
    """(LR, HR) pairs of every image in ``folders`` (sorted by name, not recursive).

    Raises UsageError (a ValueError) when a folder does not exist or holds no image.
    """
    for folder in folders:
        if not Path(folder).is_dir():
            raise UsageError(
                f"image folder not found: {folder}",
                hint="paths in a training config are relative to the project root",
            )
    paths = [p for f in folders for p in list_images(f)]
    if limit is not None:
        paths = paths[:limit]
    if not paths:
        kinds = ", ".join(sorted(IMAGE_SUFFIXES))
        raise UsageError(
            f"no images in {', '.join(str(f) for f in folders)}", hint=f"training reads {kinds}"
        )
    return [make_pair(p, scale) for p in paths]


class PatchSampler:
    """Random (LR, HR) patches with flips and rotations, from a fixed-seed generator.

    ``channels`` 1: luma patches (N, 1, p, p) and (N, 1, p*s, p*s) from ``lr_y``/``hr_y``;
    3: RGB patches (N, 3, ...) from ``lr_rgb``/``hr_rgb``. Both consume the generator in the
    same order (image, y, x, transform per patch). float32 in [0, 1].
    """

    def __init__(
        self, pairs: list[Pair], *, scale: int, lr_patch: int, seed: int, channels: int = 1
    ) -> None:
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, not {channels}")
        self.pairs = [p for p in pairs if min(p.lr_y.shape) >= lr_patch]
        if not self.pairs:
            raise UsageError(
                f"no training image is at least {lr_patch * scale} px on each side",
                hint="lower lr_patch or add larger images",
            )
        self.scale = scale
        self.lr_patch = lr_patch
        self.channels = channels
        self.rng = np.random.default_rng(seed)
        # sample images in proportion to their area
        areas = np.array([p.lr_y.size for p in self.pairs], dtype=np.float64)
        self.weights = areas / areas.sum()

    def batch(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        p, s, c = self.lr_patch, self.scale, self.channels
        lr = np.empty((n, c, p, p), np.float32)
        hr = np.empty((n, c, p * s, p * s), np.float32)
        picks = self.rng.choice(len(self.pairs), size=n, p=self.weights)
        for i, k in enumerate(picks):
            pair = self.pairs[k]
            h, w = pair.lr_y.shape
            y = int(self.rng.integers(0, h - p + 1))
            x = int(self.rng.integers(0, w - p + 1))
            t = int(self.rng.integers(0, 8))
            if c == 1:
                a = pair.lr_y[y : y + p, x : x + p]
                b = pair.hr_y[y * s : (y + p) * s, x * s : (x + p) * s]
            else:  # (C, H, W) views of the HxWxC uint8 images
                a = pair.lr_rgb[y : y + p, x : x + p].transpose(2, 0, 1)
                b = pair.hr_rgb[y * s : (y + p) * s, x * s : (x + p) * s].transpose(2, 0, 1)
            if t & 1:
                a, b = a[..., ::-1], b[..., ::-1]
            if t & 2:
                a, b = a[..., ::-1, :], b[..., ::-1, :]
            if t & 4:
                a, b = a.swapaxes(-1, -2), b.swapaxes(-1, -2)
            if c == 1:
                lr[i, 0] = a
                hr[i, 0] = b
            else:
                lr[i] = a.astype(np.float32) / np.float32(255.0)
                hr[i] = b.astype(np.float32) / np.float32(255.0)
        return lr, hr

    def state(self) -> dict[str, Any]:
        return dict(self.rng.bit_generator.state)

    def set_state(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state
