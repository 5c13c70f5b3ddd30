"""The evaluation protocol of the SR literature (DESIGN.md section 7), and ``vsr eval``.

One implementation, used by ``vsr eval`` and by training validation
(``vsr.train.validate.evaluate`` / ``bicubic_scores``):

1. **HR**: the image file as stored, 8-bit. A colour file is RGB (an alpha channel is
   dropped); a single-channel (greyscale) file stays one channel. HR is cropped to a
   multiple of ``scale`` (``mod_crop``: the right and bottom rows go).
2. **LR**: MATLAB ``imresize(hr, 1/scale, 'bicubic')`` (Keys a = -0.5, antialiased,
   symmetric borders; ``vsr.metrics.imresize``) on the uint8 HR, rounded and clipped to
   uint8 as MATLAB returns it, on every channel the HR has.
3. **Luma** ("Y"): for RGB, MATLAB ``rgb2ycbcr``'s Y (BT.601, limited range [16, 235])
   computed in float64 and *not* rounded; for a greyscale file, the grey values themselves
   (0-255), *not* converted. This last point is what the published figures do: the
   SRCNN/VDSR/DRCN evaluation scripts convert only images with three channels
   (``if size(im, 3) > 1, im = rgb2ycbcr(im); im = im(:, :, 1); end``) and use grey images
   as they are. Replicating a grey image to RGB and taking ``rgb2ycbcr``'s Y instead would
   compress its range by 219/255 and raise its PSNR by exactly 20 log10(255/219) = 1.32 dB;
   Set14's ``bridge.png`` is grey, so the mean of Set14 would rise by 1.32 / 14 = 0.094 dB
   (bicubic x3: 27.634 instead of the published 27.55).
4. **Super-resolved image**: luma models (``channels`` 1, and the interpolation models)
   run on the luma of the LR image, in [0, 1]; RGB models run on the LR RGB (a grey image
   replicated to three channels) and the luma of their output is taken (for a grey image:
   the full-range BT.601 luma 0.299 R + 0.587 G + 0.114 B, which gives back the grey value
   when the output is grey). The output is clamped to [0, 1] and scaled to 0-255 but *not*
   rounded to 8 bits (as training validation always did; rounding would lower a 32 dB
   PSNR by about 0.01 dB).
5. **Bicubic**, reported beside every model: MATLAB ``imresize(lr, scale, 'bicubic')`` of
   the same uint8 LR, rounded to uint8 (a bicubic image as the published tables made it),
   then its luma as in 3.
6. **Scores**: on the luma, with ``scale`` pixels shaved from each border. PSNR in dB
   with peak 255 (float64 MSE); SSIM of Wang et al. 2004 (Gaussian window 11, sigma 1.5,
   K1 0.01, K2 0.03, L 255, 'valid' filtering, the mean of the SSIM map). A data set's
   figure is the mean of the per-image figures (not the PSNR of the mean MSE).

With these choices bicubic gives Set5 / Set14 x2 33.68 / 30.24, x3 30.41 / 27.54 and x4
28.43 / 26.00 dB, against 33.66 / 30.24, 30.39 / 27.55 and 28.42 / 26.00 published (VDSR,
Kim et al. 2016, Table 3): within 0.025 dB everywhere. The published code (SRCNN's) goes
further from the images: it converts HR to Y rounded to uint8 first and resizes that Y
(LR not rounded); that reproduces the tables to 0.01 dB but cannot feed an RGB model, so
the LR here is an RGB image and the remaining differences (at most +0.022 dB, Set5 x2)
come from that.

One known difference from MATLAB is left as it is: ``imresize_uint8`` rounds exact halves
to even (``np.round``) where MATLAB's ``uint8`` rounds them away from zero. Only x2 makes
exact halves (about 2 LR pixels in 10,000 on Set5/Set14); the figures above change by less
than 0.0001 dB, and the same function makes the training data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from vsr.backends.options import InferenceOptions
from vsr.errors import UsageError
from vsr.metrics import imresize_uint8, mod_crop, psnr, rgb_to_y, ssim

if TYPE_CHECKING:
    from vsr.backends.torch_backend import TorchBackend

#: A network as the protocol calls it: (1, C, h, w) float in [0, 1] -> (1, C', h*s, w*s).
UpscaleFn = Callable[[torch.Tensor], torch.Tensor]

#: SSIM's window: the shaved luma must be at least this many pixels on each side.
SSIM_WINDOW = 11

PROTOCOL = (
    "HR mod-cropped to the scale; LR by MATLAB-compatible bicubic (antialiased) from the "
    "uint8 HR, rounded to uint8; Y = MATLAB rgb2ycbcr (BT.601 limited) in float64, grey "
    "images on their grey values; border of `scale` pixels shaved; PSNR (peak 255) and SSIM "
    "(Gaussian 11, sigma 1.5); means over images; bicubic = MATLAB imresize of the same LR"
)


# -- images and pairs -----------------------------------------------------------------


def read_hr(path: Path) -> np.ndarray:
    """An 8-bit image as uint8: HxW for a greyscale file, HxWx3 RGB otherwise (alpha
    dropped). Raises MediaError (unreadable) or UsageError (not 8-bit)."""
    from vsr.images import read_image  # OpenCV reading with vsr's error messages

    img = read_image(Path(path))
    if img.dtype != np.uint8:
        raise UsageError(
            f"{Path(path).name} has {img.dtype} samples; evaluation takes 8-bit images",
            hint="convert it to 8-bit PNG",
        )
    if img.ndim == 3 and img.shape[2] == 2:  # grey + alpha
        return np.ascontiguousarray(img[:, :, 0])
    if img.ndim == 3:
        return np.ascontiguousarray(img[:, :, 2::-1])  # BGR(A) -> RGB
    return img


def luma(img: np.ndarray) -> np.ndarray:
    """The protocol's luma in [0, 255] (float64): MATLAB ``rgb2ycbcr``'s Y for RGB
    (HxWx3), the values themselves for grey (HxW)."""
    img = np.asarray(img)
    if img.ndim == 2:
        return img.astype(np.float64)
    return rgb_to_y(img)


def grey_of_rgb(rgb: np.ndarray) -> np.ndarray:
    """Full-range BT.601 luma of RGB in [0, 255] (float64): the grey value a grey image
    replicated to RGB had, used for RGB models' outputs on grey images."""
    rgb = np.asarray(rgb, dtype=np.float64)
    return (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 219.0


@dataclass(frozen=True)
class EvalPair:
    """One test image under the protocol: HR (mod-cropped) and its LR, uint8, with the
    luma of each (float64, 0-255)."""

    name: str
    hr: np.ndarray  # uint8, HxW (grey) or HxWx3 (RGB)
    lr: np.ndarray  # uint8, same channels, 1/scale the size
    hr_y: np.ndarray
    lr_y: np.ndarray

    @property
    def grey(self) -> bool:
        return self.hr.ndim == 2


def check_size(name: str, shape: tuple[int, ...], scale: int) -> None:
    """Raise UsageError when an image of ``shape`` is too small to score at ``scale``."""
    h, w = shape[:2]
    smallest = scale * math.ceil((2 * scale + SSIM_WINDOW) / scale)
    if min(h - h % scale, w - w % scale) - 2 * scale < SSIM_WINDOW:
        raise UsageError(
            f"{name} ({w}x{h}) is too small to evaluate at x{scale}",
            hint=f"images need at least {smallest} pixels on each side",
        )


def make_eval_pair(path: Path, scale: int) -> EvalPair:
    """HR and LR of the image at ``path`` under the protocol (see the module docstring).

    Raises MediaError (unreadable) or UsageError (not 8-bit, too small for ``scale``).
    """
    path = Path(path)
    img = read_hr(path)
    check_size(path.name, img.shape, scale)
    hr = np.ascontiguousarray(mod_crop(img, scale))
    lr = imresize_uint8(hr, 1 / scale)
    return EvalPair(name=path.stem, hr=hr, lr=lr, hr_y=luma(hr), lr_y=luma(lr))


def load_dataset(folder: Path | str, scale: int) -> list[EvalPair]:
    """The protocol's pairs for every image in ``folder`` (not recursive; sorted by name).

    Raises UsageError when the folder does not exist, is not a folder or holds no images.
    """
    from vsr.train.data import IMAGE_SUFFIXES, list_images

    folder = Path(folder)
    if not folder.exists():
        raise UsageError(f"dataset folder not found: {folder}")
    if not folder.is_dir():
        raise UsageError(f"not a folder: {folder}", hint="give a folder of HR test images")
    paths = list_images(folder)
    if not paths:
        kinds = ", ".join(sorted(IMAGE_SUFFIXES))
        raise UsageError(f"no images in {folder}", hint=f"evaluation reads {kinds}")
    return [make_eval_pair(p, scale) for p in paths]


# -- the super-resolved luma and the scores -------------------------------------------


def bicubic_y(pair: EvalPair, scale: int) -> np.ndarray:
    """Luma of MATLAB ``imresize(lr, scale, 'bicubic')``, rounded to uint8 first."""
    return luma(imresize_uint8(pair.lr, scale))


def model_y(fn: UpscaleFn, pair: EvalPair, *, channels: int) -> np.ndarray:
    """Luma (float64, 0-255, not rounded) of ``fn``'s output for ``pair``'s LR.

    ``channels`` 1: ``fn`` gets the LR luma; 3: the LR RGB (grey replicated). Raises
    ValueError when the output is not the HR's size.
    """
    if channels == 1:
        x = torch.from_numpy((pair.lr_y / 255.0).astype(np.float32))[None, None]
    elif channels == 3:
        rgb = np.repeat(pair.lr[:, :, None], 3, axis=2) if pair.grey else pair.lr
        x = torch.from_numpy(rgb.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    else:
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    with torch.inference_mode():
        out = fn(x).float().clamp(0, 1)[0].cpu().numpy().astype(np.float64) * 255.0
    if out.shape[1:] != pair.hr_y.shape or out.shape[0] != channels:
        raise ValueError(
            f"{pair.name}: the model gave {tuple(out.shape)} for an HR of {pair.hr_y.shape} "
            f"with {channels} channel(s)"
        )
    if channels == 1:
        return out[0]
    rgb_out = np.moveaxis(out, 0, -1)
    return grey_of_rgb(rgb_out) if pair.grey else rgb_to_y(rgb_out)


def score(sr_y: np.ndarray, hr_y: np.ndarray, *, scale: int) -> tuple[float, float]:
    """(PSNR dB, SSIM) of two lumas, ``scale`` pixels shaved from each border."""
    return psnr(sr_y, hr_y, border=scale), ssim(sr_y, hr_y, border=scale)


def model_scores(
    fn: UpscaleFn, pairs: Sequence[EvalPair], *, scale: int, channels: int
) -> list[tuple[float, float]]:
    """(PSNR, SSIM) of ``fn`` for each pair."""
    return [score(model_y(fn, p, channels=channels), p.hr_y, scale=scale) for p in pairs]


def bicubic_scores(pairs: Sequence[EvalPair], *, scale: int) -> list[tuple[float, float]]:
    """(PSNR, SSIM) of bicubic for each pair."""
    return [score(bicubic_y(p, scale), p.hr_y, scale=scale) for p in pairs]


def mean_scores(scores: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Mean PSNR and mean SSIM over images."""
    return float(np.mean([s[0] for s in scores])), float(np.mean([s[1] for s in scores]))


# -- vsr eval -------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalConfig:
    """What ``vsr eval`` does: the model stage (``inference``; fp32 unless asked, as the
    published scores are) scored on every data set folder."""

    datasets: tuple[Path, ...]
    inference: InferenceOptions = field(default_factory=lambda: InferenceOptions(precision="fp32"))

    def __post_init__(self) -> None:
        if not self.datasets:
            raise UsageError("no dataset folder given")
        if self.inference.scale < 2:
            raise UsageError(f"scale must be an integer of at least 2, got {self.inference.scale}")
        if self.inference.backend == "opencv":
            raise UsageError(
                "vsr eval runs the torch or openvino backend", hint="drop --backend opencv"
            )


@dataclass
class ImageScores:
    name: str
    psnr: float
    ssim: float
    bicubic_psnr: float
    bicubic_ssim: float

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "psnr": round(self.psnr, 4),
            "ssim": round(self.ssim, 5),
            "bicubic_psnr": round(self.bicubic_psnr, 4),
            "bicubic_ssim": round(self.bicubic_ssim, 5),
            "gain_db": round(self.psnr - self.bicubic_psnr, 4),
        }


@dataclass
class DatasetResult:
    name: str
    path: str
    images: list[ImageScores] = field(default_factory=list)

    def mean(self) -> ImageScores:
        def avg(key: str) -> float:
            return float(np.mean([getattr(i, key) for i in self.images]))

        keys = ("psnr", "ssim", "bicubic_psnr", "bicubic_ssim")
        return ImageScores("mean", *(avg(k) for k in keys))

    def to_dict(self) -> dict:
        mean = self.mean().to_dict()
        del mean["name"]
        return {
            "name": self.name,
            "path": self.path,
            "images": [i.to_dict() for i in self.images],
            "mean": mean,
        }


@dataclass
class EvalReport:
    model: str
    scale: int
    weights: str
    device: str
    self_ensemble: bool
    datasets: list[DatasetResult] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "scale": self.scale,
            "weights": self.weights,
            "device": self.device,
            "self_ensemble": self.self_ensemble,
            "protocol": PROTOCOL,
            "datasets": [d.to_dict() for d in self.datasets],
        }

    def format(self) -> str:
        """One table per data set: per image and mean, the model beside bicubic."""
        blocks = []
        label = self.model + (" (x8 self-ensemble)" if self.self_ensemble else "")
        for ds in self.datasets:
            width = max(7, *(len(i.name) for i in ds.images))
            head = (
                f"{ds.name}: {label} x{self.scale}, weights {self.weights}, {self.device}; "
                f"Y (BT.601), border {self.scale}; bicubic: MATLAB imresize of the same LR"
            )
            cols = (
                f"{'image':<{width}}  {'PSNR':>8} {'SSIM':>7}  {'bicubic':>8} {'SSIM':>7}"
                f"  {'gain':>7}"
            )
            rows = [head, cols]
            for i in [*ds.images, ds.mean()]:
                if i.name == "mean":
                    rows.append("-" * len(cols))
                rows.append(
                    f"{i.name:<{width}}  {i.psnr:8.3f} {i.ssim:7.4f}  {i.bicubic_psnr:8.3f} "
                    f"{i.bicubic_ssim:7.4f}  {i.psnr - i.bicubic_psnr:+7.3f}"
                )
            blocks.append("\n".join(rows))
        return "\n\n".join(blocks)


@dataclass
class EvalJob:
    """Everything checked and loaded: the data sets' pairs and the backend."""

    cfg: EvalConfig
    sets: list[tuple[Path, list[EvalPair]]]
    backend: TorchBackend
    weights: str

    @property
    def total_images(self) -> int:
        return sum(len(pairs) for _, pairs in self.sets)


def prepare_eval(cfg: EvalConfig) -> EvalJob:
    """Read every data set folder, then load the model and its backend.

    Raises UsageError (folders, images, options), UnknownModelError, WeightsError,
    DeviceError.
    """
    from vsr.backends.build import build_backend
    from vsr.backends.torch_backend import TorchBackend

    sets = [(Path(d), load_dataset(d, cfg.inference.scale)) for d in cfg.datasets]
    backend = build_backend(cfg.inference)
    assert isinstance(backend, TorchBackend)
    return EvalJob(cfg, sets, backend, backend.model.source)


def execute_eval(job: EvalJob, *, progress: Callable[[int], object] | None = None) -> EvalReport:
    """Score the model and bicubic on every image; ``progress(1)`` after each image."""
    backend, scale = job.backend, job.cfg.inference.scale
    channels = 1 if backend.spec.planewise else backend.spec.channels

    def fn(x: torch.Tensor) -> torch.Tensor:
        return backend.run_model(x)

    report = EvalReport(
        model=backend.spec.name,
        scale=scale,
        weights=job.weights,
        device=backend.description,
        self_ensemble=job.cfg.inference.self_ensemble,
    )
    for folder, pairs in job.sets:
        result = DatasetResult(name=folder.resolve().name, path=str(folder))
        for pair in pairs:
            p, s = score(model_y(fn, pair, channels=channels), pair.hr_y, scale=scale)
            bp, bs = score(bicubic_y(pair, scale), pair.hr_y, scale=scale)
            result.images.append(ImageScores(pair.name, p, s, bp, bs))
            if progress is not None:
                progress(1)
        report.datasets.append(result)
    return report


def run_eval(cfg: EvalConfig, *, progress: Callable[[int], object] | None = None) -> EvalReport:
    """``execute_eval(prepare_eval(cfg))``: ``cfg.inference.model`` and bicubic scored on every data
    set folder of ``cfg``. Raises as :func:`prepare_eval`."""
    return execute_eval(prepare_eval(cfg), progress=progress)
