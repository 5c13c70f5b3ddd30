"""The image engine: ``run_images(config) -> ImageReport`` for single images and folders.

- Inputs: files (PNG, JPEG, WebP, BMP, TIFF) and folders, searched recursively. Output
  names follow the video rule, ``<stem>_<model>_x<scale><ext>``, beside the input by
  default; ``-o`` is a file for one input file, otherwise a folder in which each input
  folder's tree is mirrored. Every output is checked before anything runs: an existing
  output (without ``overwrite``), an output that is an input, or two inputs meeting at one
  output are refused up front.
- Pixels: 8- and 16-bit, grey, grey + alpha, colour, colour + alpha. Luma-only models run
  on Y of YCbCr (BT.601, full range), with Cb/Cr resized bicubic; RGB models run on RGB;
  interpolation models on every channel. Alpha is resized bicubic. Grey stays grey (one
  channel); 16-bit stays 16-bit (PNG, TIFF). The colour maths is float32 on the device,
  with one rounding at the end.
- JPEG EXIF orientation is applied on reading (the output has no EXIF, so it is written
  upright); other formats are read as stored.
- Each output is written to a temporary name beside it and renamed into place, so a
  failure never leaves a partial file at the output path.
- One image's failure is logged and the others go on; the report counts the failures.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from vsr.backends.build import build_backend
from vsr.backends.color import rgb_to_yuv, yuv_to_rgb
from vsr.backends.options import InferenceOptions
from vsr.backends.torch_backend import TorchBackend
from vsr.errors import (
    InputNotFoundError,
    MediaError,
    OutputExistsError,
    UsageError,
    VsrError,
    one_line,
)
from vsr.files import atomic_write
from vsr.media.frame import ColorInfo
from vsr.models.archs.interpolate import PolyphaseResize

log = logging.getLogger("vsr")

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})
#: Formats that store 16 bits per channel (as OpenCV writes them).
DEEP_SUFFIXES = frozenset({".png", ".tif", ".tiff"})
#: Formats that store an alpha channel.
ALPHA_SUFFIXES = frozenset({".png", ".webp", ".bmp", ".tif", ".tiff"})
_JPEG = frozenset({".jpg", ".jpeg"})
#: YCbCr for images: BT.601, full range (JFIF).
IMAGE_YCBCR = ColorInfo(matrix="bt470bg", range="pc")


@dataclass(frozen=True)
class ImageConfig:
    """What ``vsr image`` does. Inputs are files or folders; the model stage runs in torch
    (``inference``)."""

    inputs: tuple[Path, ...]
    output: Path | None = None
    inference: InferenceOptions = field(default_factory=InferenceOptions)
    overwrite: bool = False

    def __post_init__(self) -> None:
        if not self.inputs:
            raise UsageError("no input given")
        if self.inference.backend == "opencv":
            raise UsageError(
                "vsr image runs the torch or openvino backend", hint="drop --backend opencv"
            )

    def output_name(self, src: Path) -> str:
        opts = self.inference
        return f"{src.stem}_{opts.model}_x{opts.scale}{src.suffix}"


@dataclass
class ImageResult:
    input: str
    output: str
    ok: bool
    error: str | None = None
    input_size: tuple[int, int] | None = None  # (width, height)
    output_size: tuple[int, int] | None = None
    channels: int | None = None
    bit_depth: int | None = None
    seconds: float = 0.0


@dataclass
class ImageReport:
    model: str
    scale: int
    weights: str
    device: str
    images: list[ImageResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        return sum(not r.ok for r in self.images)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ok"] = len(self.images) - self.failed
        d["failed"] = self.failed
        return d

    def summary(self) -> str:
        done = len(self.images) - self.failed
        failed = f", {self.failed} failed" if self.failed else ""
        return (
            f"{done} image(s) upscaled x{self.scale} with {self.model}{failed} "
            f"in {self.seconds:.1f} s on {self.device}"
        )


# -- planning -------------------------------------------------------------------------


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def plan(cfg: ImageConfig) -> list[tuple[Path, Path]]:
    """(input, output) pairs for ``cfg``, checked before anything runs.

    Folders are searched recursively (sorted; hidden files, vsr's temporary files, files
    inside the output folder and this model's earlier outputs, ``*_<model>_x<scale>.*``,
    are skipped). Raises InputNotFoundError, OutputExistsError or UsageError (unsupported
    file type, no images, ``-o`` a file for several inputs, two inputs with one output).
    """
    for src in cfg.inputs:
        if not src.exists():
            raise InputNotFoundError(f"input not found: {src}")
        if src.is_file() and not _is_image(src):
            kinds = ", ".join(sorted(IMAGE_SUFFIXES))
            raise UsageError(f"not a supported image: {src}", hint=f"vsr image reads {kinds}")
    single = len(cfg.inputs) == 1 and cfg.inputs[0].is_file()
    out = cfg.output
    out_file: Path | None = None
    out_dir: Path | None = None
    if out is not None:
        if single and not out.is_dir() and out.suffix:
            if not _is_image(out):
                raise UsageError(
                    f"unsupported output image type: {out.name}",
                    hint=f"use one of {', '.join(sorted(IMAGE_SUFFIXES))}",
                )
            if not out.parent.is_dir():
                raise UsageError(f"output folder does not exist: {out.parent}")
            out_file = out
        elif (out.exists() and not out.is_dir()) or (not out.exists() and _is_image(out)):
            raise UsageError(
                f"-o {out} names a file, but the input is a folder or several images",
                hint="give a folder for the outputs",
            )
        else:
            out_dir = out
    skip_dir = out_dir.resolve() if out_dir is not None and out_dir.exists() else None
    own_suffix = f"_{cfg.inference.model}_x{cfg.inference.scale}"

    pairs: list[tuple[Path, Path]] = []
    for src in cfg.inputs:
        if src.is_file():
            if out_file is not None:
                dst = out_file
            elif out_dir is not None:
                dst = out_dir / cfg.output_name(src)
            else:
                dst = src.with_name(cfg.output_name(src))
            pairs.append((src, dst))
            continue
        found = 0
        for path in sorted(src.rglob("*")):
            rel = path.relative_to(src)
            if (
                not path.is_file()
                or not _is_image(path)
                or any(part.startswith(".") for part in rel.parts)
                or path.stem.endswith(own_suffix)
                or (skip_dir is not None and path.resolve().is_relative_to(skip_dir))
            ):
                continue
            found += 1
            base = path.parent if out_dir is None else out_dir / rel.parent
            pairs.append((path, base / cfg.output_name(path)))
        if not found:
            raise UsageError(
                f"no images in {src}", hint=f"vsr image reads {', '.join(sorted(IMAGE_SUFFIXES))}"
            )
    _check_outputs(pairs, overwrite=cfg.overwrite)
    return pairs


def _check_outputs(pairs: list[tuple[Path, Path]], *, overwrite: bool) -> None:
    inputs = {src.resolve() for src, _ in pairs}
    seen: dict[Path, Path] = {}
    existing: list[Path] = []
    for src, dst in pairs:
        key = dst.resolve()
        if key in inputs:
            raise OutputExistsError(
                f"output is an input: {dst}", hint="choose another output with -o"
            )
        if key in seen:
            raise UsageError(
                f"{seen[key]} and {src} would both be written to {dst}",
                hint="give them separately or rename one",
            )
        seen[key] = src
        if dst.exists() and not overwrite:
            existing.append(dst)
    if existing:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise OutputExistsError(
            f"output exists: {existing[0]}{more}", hint="pass --overwrite to replace"
        )


# -- reading and writing --------------------------------------------------------------


def read_image(path: Path) -> np.ndarray:
    """An image as OpenCV holds it: HxW (grey), HxWx3 (BGR) or HxWx4 (BGRA); uint8 or
    uint16. JPEG EXIF orientation is applied. Raises MediaError (unreadable) or
    UsageError (a pixel type vsr does not handle, e.g. float TIFF)."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise MediaError(f"cannot read {path}: {exc.strerror or exc}") from None
    flags = cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH
    if path.suffix.lower() not in _JPEG:
        flags = cv2.IMREAD_UNCHANGED  # keeps alpha (but ignores EXIF orientation)
    img = cv2.imdecode(data, flags) if data.size else None
    if img is None:
        raise MediaError(f"cannot decode {path}: not a readable image or damaged")
    if img.dtype not in (np.uint8, np.uint16):
        raise UsageError(
            f"{path.name} has {img.dtype} samples; vsr handles 8- and 16-bit images",
            hint="convert it to 8- or 16-bit PNG first",
        )
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 3 and img.shape[2] not in (2, 3, 4):
        raise UsageError(f"{path.name} has {img.shape[2]} channels; vsr handles 1 to 4")
    return img


def check_format(path: Path, img: np.ndarray, *, source: Path | None = None) -> None:
    """Raise UsageError when ``path``'s format cannot hold ``img`` (16-bit or alpha)."""
    suffix = path.suffix.lower()
    of = f" of {source.name}" if source is not None else ""
    if img.dtype == np.uint16 and suffix not in DEEP_SUFFIXES:
        raise UsageError(
            f"{path.name}: {suffix} cannot store the 16-bit samples{of}",
            hint="write .png or .tiff to keep 16 bits",
        )
    if img.ndim == 3 and img.shape[2] in (2, 4) and suffix not in ALPHA_SUFFIXES:
        raise UsageError(
            f"{path.name}: {suffix} cannot store the alpha channel{of}",
            hint="write .png, .webp or .tiff to keep transparency",
        )


def write_image(path: Path, img: np.ndarray) -> None:
    """Encode ``img`` by ``path``'s suffix and write it atomically (temp name + rename).

    Raises UsageError when the format cannot hold the image (16-bit or alpha), MediaError
    when encoding or writing fails. Nothing is left at ``path`` or beside it on failure.
    """
    check_format(path, img)
    suffix = path.suffix.lower()
    if img.ndim == 3 and img.shape[2] == 2:  # no encoder takes grey + alpha: write BGRA
        img = np.dstack([img[:, :, 0], img[:, :, 0], img[:, :, 0], img[:, :, 1]])
    params: list[int] = []
    if suffix in _JPEG:
        params = [cv2.IMWRITE_JPEG_QUALITY, 95]
    try:
        ok, buf = cv2.imencode(suffix, img, params)
    except cv2.error as exc:
        raise MediaError(f"cannot encode {path.name}: {str(exc).strip()}") from None
    if not ok:
        raise MediaError(f"cannot encode {path.name} as {suffix}")
    try:
        atomic_write(path, buf.tobytes())
    except OSError as exc:
        raise MediaError(f"cannot write {path}: {exc.strerror or exc}") from None


# -- pixels ---------------------------------------------------------------------------


class ImageUpscaler:
    """Upscales OpenCV images (see :func:`read_image`) with a :class:`TorchBackend`."""

    def __init__(self, backend: TorchBackend) -> None:
        self.backend = backend
        self.spec = backend.spec
        self.scale = backend.scale
        self.device = backend.device
        # Chroma and alpha: bicubic in float32 whatever the model's dtype.
        self.bicubic = PolyphaseResize(self.scale, "cubic").to(self.device)

    def _model(self, x: torch.Tensor) -> torch.Tensor:
        return self.backend.run_model(x).float()

    @torch.inference_mode()
    def upscale(self, img: np.ndarray) -> np.ndarray:
        """``img`` upscaled: same layout (channels, order) and dtype, ``scale`` times the size."""
        peak = 65535.0 if img.dtype == np.uint16 else 255.0
        planes = img[:, :, None] if img.ndim == 2 else img
        channels = planes.shape[2]
        x = torch.from_numpy(np.ascontiguousarray(planes)).to(self.device)
        x = x.permute(2, 0, 1)[None].float().mul_(1.0 / peak)  # (1, C, H, W)
        colour, alpha = (x[:, :3], x[:, 3:]) if channels >= 3 else (x[:, :1], x[:, 1:])
        if colour.shape[1] == 3:
            colour = colour.flip(1)  # BGR -> RGB
        out = self._colour(colour)
        if alpha.shape[1]:
            out = torch.cat([out, self.bicubic(alpha)], 1)
        if channels >= 3:
            out = torch.cat([out[:, :3].flip(1), out[:, 3:]], 1)  # RGB -> BGR
        q = out.clamp_(0, 1).mul_(peak).round_().to(torch.int32)
        arr = q[0].permute(1, 2, 0).cpu().numpy().astype(img.dtype)
        return arr[:, :, 0] if img.ndim == 2 else arr

    def _colour(self, rgb: torch.Tensor) -> torch.Tensor:
        """Grey (1 channel) or RGB (3) in [0, 1] -> upscaled, same channels."""
        grey = rgb.shape[1] == 1
        if self.spec.planewise:
            return self._model(rgb)
        if self.spec.channels == 1:
            if grey:
                return self._model(rgb)
            h = rgb.shape[-2]
            ycc = rgb_to_yuv(rgb, IMAGE_YCBCR, height=h)
            y = self._model(ycc[:, :1])
            return yuv_to_rgb(torch.cat([y, self.bicubic(ycc[:, 1:])], 1), IMAGE_YCBCR, height=h)
        out = self._model(rgb.expand(-1, 3, -1, -1) if grey else rgb)
        if grey:
            return rgb_to_yuv(out.clamp(0, 1), IMAGE_YCBCR, height=rgb.shape[-2])[:, :1]
        return out


# -- the engine -----------------------------------------------------------------------


@dataclass
class ImageJob:
    cfg: ImageConfig
    pairs: list[tuple[Path, Path]]
    backend: TorchBackend
    weights: str


def prepare(cfg: ImageConfig) -> ImageJob:
    """Plan the outputs, load the model and the backend. Nothing is written.

    Raises UsageError (paths, model, options), WeightsError, DeviceError.
    """
    pairs = plan(cfg)
    backend = build_backend(cfg.inference)
    assert isinstance(backend, TorchBackend)
    return ImageJob(cfg, pairs, backend, backend.model.source)


def upscale_file(upscaler: ImageUpscaler, src: Path, dst: Path) -> ImageResult:
    """Read, upscale and write one image. Raises what reading/upscaling/writing raise."""
    t0 = time.perf_counter()
    img = read_image(src)
    check_format(dst, img, source=src)  # before the work, not after it
    out = upscaler.upscale(img)
    write_image(dst, out)
    return ImageResult(
        input=str(src),
        output=str(dst),
        ok=True,
        input_size=(img.shape[1], img.shape[0]),
        output_size=(out.shape[1], out.shape[0]),
        channels=1 if img.ndim == 2 else img.shape[2],
        bit_depth=16 if img.dtype == np.uint16 else 8,
        seconds=round(time.perf_counter() - t0, 3),
    )


def execute(job: ImageJob, *, progress: Callable[[int], None] | None = None) -> ImageReport:
    """Upscale every planned image. With one image its error is raised; with several,
    each failure is logged and recorded in the report, and the rest go on."""
    upscaler = ImageUpscaler(job.backend)
    opts = job.cfg.inference
    report = ImageReport(opts.model, opts.scale, job.weights, job.backend.description)
    t0 = time.perf_counter()
    for src, dst in job.pairs:
        if len(job.pairs) == 1:
            report.images.append(upscale_file(upscaler, src, dst))
        else:
            try:
                report.images.append(upscale_file(upscaler, src, dst))
            except (VsrError, OSError, ValueError, RuntimeError, cv2.error) as exc:
                text = one_line(exc)
                log.error("%s: %s", src, text)
                log.debug("traceback for %s", src, exc_info=True)
                report.images.append(ImageResult(str(src), str(dst), ok=False, error=text))
        if progress is not None:
            progress(1)
    report.seconds = round(time.perf_counter() - t0, 3)
    return report


def run_images(cfg: ImageConfig, *, progress: Callable[[int], None] | None = None) -> ImageReport:
    """``prepare`` then ``execute``."""
    return execute(prepare(cfg), progress=progress)
