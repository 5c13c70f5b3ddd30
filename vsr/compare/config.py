"""What ``vsr compare`` is asked (``CompareConfig``) and what it reports (``Panel``,
``CompareReport``), with the parsers of its command-line values."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vsr.backends.options import InferenceOptions
from vsr.errors import UsageError


@dataclass(frozen=True)
class CompareConfig:
    """What ``vsr compare`` does. ``models`` empty: bicubic and every model with built-in
    weights at the scale; ``inference``: the scale and how every model runs (fp32 unless
    asked, as ``vsr eval``), its ``model`` and ``weights`` replaced per model;
    ``weights``: (model, file) pairs; ``crop``: (x, y, w, h) in input pixels; ``zoom`` 0:
    automatic. Raises UsageError on inconsistent options."""

    input: Path | None
    output: Path
    models: tuple[str, ...] = ()
    inference: InferenceOptions = field(default_factory=lambda: InferenceOptions(precision="fp32"))
    weights: tuple[tuple[str, Path], ...] = ()
    frame: int | None = None
    crop: tuple[int, int, int, int] | None = None
    gt: Path | None = None
    from_gt: bool = False
    zoom: int = 0
    embed: bool = True
    overwrite: bool = False

    def __post_init__(self) -> None:
        from vsr.models.registry import get_spec

        if self.scale < 2:
            raise UsageError(f"scale must be at least 2, got {self.scale}")
        if self.inference.backend == "opencv":
            raise UsageError(
                "vsr compare runs the torch or openvino backend", hint="drop --backend opencv"
            )
        if self.from_gt:
            if self.gt is None and self.input is None:
                raise UsageError("--from-gt needs a ground truth", hint="give --gt HR_IMAGE")
            if self.gt is not None and self.input is not None and self.gt != self.input:
                raise UsageError(
                    "with --from-gt the input is made from --gt",
                    hint="give only --gt, or the HR image as INPUT",
                )
            if self.frame is not None:
                raise UsageError("--frame is for video input, not --from-gt")
        elif self.input is None:
            raise UsageError(
                "no input given", hint="give an image or video, or --gt with --from-gt"
            )
        names = [get_spec(m).name for m in self.models]  # unknown names: UnknownModelError
        if len(set(names)) != len(names):
            raise UsageError("a model is listed twice", hint="give each -m once")
        for name, _path in self.weights:
            if get_spec(name).name not in names:
                raise UsageError(
                    f"--weights-for {name}: {name} is not compared", hint=f"add -m {name}"
                )
        if self.crop is not None and (min(self.crop[2:]) < 1 or min(self.crop[:2]) < 0):
            raise UsageError(f"bad crop {self.crop}: need x, y >= 0 and w, h >= 1")
        if self.frame is not None and self.frame < 0:
            raise UsageError(f"--frame must be at least 0, got {self.frame}")
        if self.zoom < 0:
            raise UsageError(f"zoom must be at least 0 (automatic), got {self.zoom}")
        if self.output.suffix.lower() not in (".html", ".htm"):
            raise UsageError(f"-o {self.output}: the report is an .html file")

    @property
    def scale(self) -> int:
        return self.inference.scale

    @property
    def grid_path(self) -> Path:
        return self.output.with_suffix(".png")

    @property
    def files_dir(self) -> Path:
        return self.output.with_name(self.output.stem + "_files")


@dataclass
class Panel:
    """One upscaler's result (RGB uint8): ``image``, the upscaled image (with a ground
    truth) or the upscaled crop with CONTEXT input pixels around it (without), and
    ``crop``, the compared region."""

    label: str
    model: str
    weights: str
    image: np.ndarray
    crop: np.ndarray
    psnr: float | None = None
    ssim: float | None = None

    def caption(self) -> str:
        if self.psnr is None:
            return self.label
        return f"{self.label}  {self.psnr:.2f} dB"


@dataclass
class CompareReport:
    source: str
    scale: int
    crop: tuple[int, int, int, int]
    zoom: int
    html: Path
    grid: Path
    grid_size: tuple[int, int]  # (width, height)
    panels: list[Panel] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)  # panel files when not embedded

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "scale": self.scale,
            "crop": list(self.crop),
            "zoom": self.zoom,
            "html": str(self.html),
            "grid": str(self.grid),
            "grid_size": list(self.grid_size),
            "panels": [
                {
                    "label": p.label,
                    "model": p.model,
                    "weights": p.weights,
                    "psnr": None if p.psnr is None else round(p.psnr, 4),
                    "ssim": None if p.ssim is None else round(p.ssim, 5),
                }
                for p in self.panels
            ],
        }

    def summary(self) -> str:
        scored = [f"{p.label} {p.psnr:.2f} dB" for p in self.panels if p.psnr is not None]
        x, y, w, h = self.crop
        text = f"{len(self.panels)} panels of {self.source}, crop {w}x{h}+{x}+{y} x{self.scale}"
        return text + (f"; PSNR (Y): {', '.join(scored)}" if scored else "")


def parse_crop(text: str) -> tuple[int, int, int, int]:
    """``"X,Y,W,H"`` -> ints; raises UsageError."""
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"bad --crop {text!r}", hint="give X,Y,W,H in input pixels") from None
    return x, y, w, h


def parse_weights_for(items: list[str]) -> tuple[tuple[str, Path], ...]:
    """``["espcn=FILE", ...]`` -> ((model, path), ...); raises UsageError."""
    out = []
    for item in items:
        name, sep, file = item.partition("=")
        if not sep or not name or not file:
            raise UsageError(f"bad --weights-for {item!r}", hint="give MODEL=FILE")
        out.append((name.strip(), Path(file)))
    return tuple(out)
