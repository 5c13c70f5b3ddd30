"""``vsr compare``: the same crop of one image or one video frame upscaled by bicubic and
by each model, side by side, so people can look rather than read.

- Input: an image file, or frame ``frame`` (0-based, in presentation order, found by
  decoding from the start) of a video. With ``gt`` (a ground-truth HR image) each panel
  gets its PSNR and SSIM on Y under the protocol of :mod:`vsr.evaluate` (BT.601 Y, border
  ``scale``, whole image), and a "ground truth" panel is added; with ``from_gt`` the input
  is made from the ground truth by MATLAB-compatible bicubic downscaling (the protocol's LR).
- Bicubic is MATLAB's ``imresize`` (a = -0.5, the protocol's baseline; ``-m bicubic``
  names it). Every other model runs as vsr runs it, in fp32: on an image as ``vsr image``
  (luma models on Y of full-range BT.601 YCbCr, chroma bicubic), on a video frame as
  ``vsr run`` (on the frame's own YUV planes, with the stream's matrix and range), and the
  result is shown as 8-bit RGB. A model's PSNR is therefore that of the 8-bit image vsr
  writes, which can differ from ``vsr eval``'s (the network's float luma) by a few
  hundredths of a dB; bicubic's is the same as there.
- Scores need whole images; without a ground truth only the crop and ``CONTEXT`` input
  pixels around it are upscaled (the panels are the same pixels, at a fraction of the cost
  on large frames).
- The crop is in input pixels (``x, y, w, h``); each panel shows the matching
  ``scale``-times region, magnified ``zoom`` times with nearest neighbour. By default the
  crop is the window (up to 384 output pixels a side) with the most detail.
- Output: a PNG grid (labels drawn with ``cv2.putText``) at ``output.with_suffix(".png")``
  and a self-contained HTML page at ``output`` with every panel embedded as base64 PNG
  (or, with ``embed`` off, written to ``<stem>_files/`` beside it and linked).
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from vsr import evaluate as protocol
from vsr.errors import InputNotFoundError, MediaError, OutputExistsError, UsageError, WeightsError
from vsr.files import atomic_write
from vsr.images import IMAGE_SUFFIXES, read_image, write_image
from vsr.media.frame import ColorInfo, Frame
from vsr.metrics import imresize_uint8, mod_crop

#: Layout of the grid (pixels): gap between panels, label bar height, panels per row.
GAP = 8
LABEL_H = 24
MAX_COLUMNS = 4
#: The default crop's largest side, in output pixels.
DEFAULT_CROP_OUT = 384
#: Input pixels of context upscaled around the crop when nothing is scored (as tiling's
#: overlap): the crop then looks as in a whole-image run, at a fraction of the cost.
CONTEXT = 16
#: Auto zoom magnifies panels until their longer side reaches this many pixels.
ZOOM_TARGET = 256
_BACKGROUND = (24, 24, 24)  # RGB
_LABEL_BG = (48, 48, 48)
_TEXT = (255, 255, 255)


@dataclass(frozen=True)
class CompareConfig:
    """What ``vsr compare`` does. ``models`` empty: bicubic and every model with built-in
    weights at ``scale``; ``weights``: (model, file) pairs; ``crop``: (x, y, w, h) in input
    pixels; ``zoom`` 0: automatic. Raises UsageError on inconsistent options."""

    input: Path | None
    output: Path
    models: tuple[str, ...] = ()
    scale: int = 3
    weights: tuple[tuple[str, Path], ...] = ()
    frame: int | None = None
    crop: tuple[int, int, int, int] | None = None
    gt: Path | None = None
    from_gt: bool = False
    device: str = "auto"
    zoom: int = 0
    embed: bool = True
    overwrite: bool = False

    def __post_init__(self) -> None:
        from vsr.models.registry import get_spec

        if self.scale < 2:
            raise UsageError(f"scale must be at least 2, got {self.scale}")
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


# -- the source -----------------------------------------------------------------------


@dataclass
class _Source:
    """The LR input as RGB uint8, and for a video frame the frame itself and its colours."""

    description: str
    rgb: np.ndarray
    frame: Frame | None = None
    color: ColorInfo | None = None


def _to_rgb8(img: np.ndarray, *, bgr: bool = True) -> np.ndarray:
    """An image (grey, grey + alpha, BGR(A) as OpenCV reads it or RGB with ``bgr`` off;
    8- or 16-bit) as RGB uint8; alpha dropped."""
    if img.dtype == np.uint16:
        img = ((img.astype(np.float64) / 257.0).round()).astype(np.uint8)
    if img.ndim == 2:
        return np.ascontiguousarray(np.repeat(img[:, :, None], 3, axis=2))
    if img.shape[2] == 2:
        return np.ascontiguousarray(np.repeat(img[:, :, :1], 3, axis=2))
    return np.ascontiguousarray(img[:, :, 2::-1] if bgr else img[:, :, :3])


def frame_to_rgb(frame: Frame, color: ColorInfo) -> np.ndarray:
    """A YUV :class:`Frame` as RGB uint8 with the stream's matrix and range (chroma
    upsampled bilinearly, as the torch backend does for RGB models)."""
    from vsr.backends.color import yuv_to_rgb

    peak = float((1 << frame.bit_depth) - 1)
    y, u, v = (torch.from_numpy(p.astype(np.float32) / peak)[None, None] for p in frame.planes)
    h, w = y.shape[-2:]
    if u.shape[-2:] != (h, w):
        u = F.interpolate(u, size=(h, w), mode="bilinear", align_corners=False)
        v = F.interpolate(v, size=(h, w), mode="bilinear", align_corners=False)
    rgb = yuv_to_rgb(torch.cat([y, u, v], 1), color, height=h, bit_depth=frame.bit_depth)
    out = rgb.clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255.0
    return np.ascontiguousarray(out.round().astype(np.uint8))


def read_frame(path: Path, index: int) -> tuple[Frame, ColorInfo]:
    """Frame ``index`` (presentation order) of the video at ``path``, decoded from the
    start. Raises InputNotFoundError, MediaError, UsageError (past the end)."""
    from vsr.media.reader import Reader

    with Reader(path, audio=False, subtitles=False) as reader:
        color = reader.info.video.color
        count = 0
        for frame in reader.frames():
            if frame.index == index:
                return frame, color
            count += 1
    raise UsageError(f"{path.name} has {count} frames; there is no frame {index}")


def _load_source(cfg: CompareConfig) -> tuple[_Source, np.ndarray | None]:
    """The LR source and the ground truth (mod-cropped HR as the protocol reads it:
    RGB, or HxW for a grey file), or None."""
    gt = None
    if cfg.gt is not None or cfg.from_gt:
        gt_path = cfg.gt if cfg.gt is not None else cfg.input
        assert gt_path is not None
        if not gt_path.exists():
            raise InputNotFoundError(f"ground truth not found: {gt_path}")
        gt = np.ascontiguousarray(mod_crop(protocol.read_hr(gt_path), cfg.scale))
        protocol.check_size(gt_path.name, gt.shape, cfg.scale)
    if cfg.from_gt:
        assert gt is not None
        lr = imresize_uint8(gt, 1 / cfg.scale)
        name = (cfg.gt or cfg.input or Path("?")).name
        lr_rgb = _to_rgb8(lr, bgr=False)
        return _Source(f"{name} (LR by MATLAB bicubic /{cfg.scale})", lr_rgb), gt
    path = cfg.input
    assert path is not None
    if not path.exists():
        raise InputNotFoundError(f"input not found: {path}")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        if cfg.frame is not None:
            raise UsageError("--frame is for video input", hint="drop --frame for an image")
        source = _Source(path.name, _to_rgb8(read_image(path)))
    else:
        index = cfg.frame or 0
        frame, color = read_frame(path, index)
        source = _Source(f"{path.name} frame {index}", frame_to_rgb(frame, color), frame, color)
    if gt is not None:
        h, w = source.rgb.shape[:2]
        if gt.shape[:2] != (h * cfg.scale, w * cfg.scale):
            raise UsageError(
                f"the ground truth is {gt.shape[1]}x{gt.shape[0]} (cropped to a multiple of "
                f"{cfg.scale}), the input x{cfg.scale} is {w * cfg.scale}x{h * cfg.scale}",
                hint="give the HR image the input was made from, or use --from-gt",
            )
    return source, gt


# -- upscaling ------------------------------------------------------------------------


def _model_names(cfg: CompareConfig) -> list[str]:
    from vsr.models.registry import default_weights, get_spec, list_specs

    if cfg.models:
        names = [get_spec(m).name for m in cfg.models]
    else:
        names = [
            s.name
            for s in list_specs()
            if s.needs_weights
            and cfg.scale in s.scales
            and default_weights(s.name, cfg.scale).exists()
        ]
    return ["bicubic", *[n for n in names if n != "bicubic"]]


def _upscale(cfg: CompareConfig, name: str, source: _Source) -> tuple[np.ndarray, str]:
    """``source`` upscaled by model ``name`` (RGB uint8) and where its weights came from."""
    from vsr.backends.torch_backend import TorchBackend
    from vsr.images import ImageUpscaler
    from vsr.models.registry import default_weights, get_spec, load_model

    if name == "bicubic":
        return imresize_uint8(source.rgb, cfg.scale), "MATLAB imresize (a = -0.5)"
    spec = get_spec(name)
    given = {get_spec(m).name: p for m, p in cfg.weights}
    weights = given.get(name)
    if weights is None and spec.needs_weights and not default_weights(name, cfg.scale).exists():
        raise WeightsError(
            f"no built-in weights for {name} x{cfg.scale}", hint=f"pass --weights-for {name}=FILE"
        )
    model = load_model(name, cfg.scale, weights=weights)
    backend = TorchBackend(model, device=cfg.device, precision="fp32", color=source.color)
    if source.frame is not None:
        assert source.color is not None
        out = backend.upscale([source.frame])[0]
        return frame_to_rgb(out, source.color), model.source
    bgr = ImageUpscaler(backend).upscale(np.ascontiguousarray(source.rgb[:, :, ::-1]))
    return np.ascontiguousarray(bgr[:, :, ::-1]), model.source


def _context_box(source: _Source, crop: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the crop and CONTEXT input pixels around it, inside the input;
    for a video frame, aligned to the chroma subsampling."""
    h, w = source.rgb.shape[:2]
    x, y, cw, ch = crop
    x0, y0 = max(0, x - CONTEXT), max(0, y - CONTEXT)
    x1, y1 = min(w, x + cw + CONTEXT), min(h, y + ch + CONTEXT)
    if source.frame is not None:
        fy, fx = _subsampling(source.frame)
        x0, y0 = x0 - x0 % fx, y0 - y0 % fy
        x1, y1 = min(w, x1 + (-x1) % fx), min(h, y1 + (-y1) % fy)
    return x0, y0, x1, y1


def _subsampling(frame: Frame) -> tuple[int, int]:
    """(vertical, horizontal) chroma subsampling factors of ``frame`` (1 or 2)."""
    luma, chroma = frame.planes[0].shape, frame.planes[1].shape
    return max(1, round(luma[0] / chroma[0])), max(1, round(luma[1] / chroma[1]))


def _crop_source(source: _Source, box: tuple[int, int, int, int]) -> _Source:
    x0, y0, x1, y1 = box
    h, w = source.rgb.shape[:2]
    if box == (0, 0, w, h):
        return source
    rgb = np.ascontiguousarray(source.rgb[y0:y1, x0:x1])
    frame = source.frame
    if frame is not None:
        fy, fx = _subsampling(frame)
        y, u, v = frame.planes
        cy0, cy1, cx0, cx1 = y0 // fy, -(-y1 // fy), x0 // fx, -(-x1 // fx)
        planes = (
            np.ascontiguousarray(y[y0:y1, x0:x1]),
            np.ascontiguousarray(u[cy0:cy1, cx0:cx1]),
            np.ascontiguousarray(v[cy0:cy1, cx0:cx1]),
        )
        frame = Frame(frame.index, frame.pts, frame.time_base, planes, frame.pix_fmt)
    return _Source(source.description, rgb, frame, source.color)


# -- crop, grid, page -----------------------------------------------------------------


def auto_crop(rgb: np.ndarray, scale: int) -> tuple[int, int, int, int]:
    """The window of at most ``DEFAULT_CROP_OUT / scale`` input pixels a side with the
    largest mean gradient magnitude (the most detail to look at)."""
    h, w = rgb.shape[:2]
    side = max(8, DEFAULT_CROP_OUT // scale)
    cw, ch = min(w, side), min(h, side)
    if (cw, ch) == (w, h):
        return 0, 0, w, h
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    mag = np.abs(cv2.Sobel(grey, cv2.CV_32F, 1, 0)) + np.abs(cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    integral = cv2.integral(mag, sdepth=cv2.CV_64F)
    sums = (
        integral[ch:, cw:] - integral[:-ch, cw:] - integral[ch:, :-cw] + integral[:-ch, :-cw]
    )  # sums[y, x]: the window whose top-left corner is (x, y)
    y, x = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(x), int(y), cw, ch


def auto_zoom(crop_w: int, crop_h: int, scale: int) -> int:
    """Nearest-neighbour magnification until the panel's longer side reaches ZOOM_TARGET."""
    return max(1, min(8, ZOOM_TARGET // (max(crop_w, crop_h) * scale)))


def grid_size(panels: int, panel_w: int, panel_h: int) -> tuple[int, int]:
    """(width, height) of the grid of ``panels`` panels of ``panel_w`` x ``panel_h``."""
    cols = min(panels, MAX_COLUMNS)
    rows = math.ceil(panels / cols)
    return cols * panel_w + (cols + 1) * GAP, rows * (LABEL_H + panel_h) + (rows + 1) * GAP


def _fit_text(text: str, width: int) -> tuple[str, float]:
    font = cv2.FONT_HERSHEY_SIMPLEX
    for size in (0.5, 0.45, 0.4, 0.35):
        if cv2.getTextSize(text, font, size, 1)[0][0] <= width - 8:
            return text, size
    while len(text) > 1 and cv2.getTextSize(text + "~", font, 0.35, 1)[0][0] > width - 8:
        text = text[:-1]
    return text + "~", 0.35


def draw_grid(panels: list[Panel], zoom: int) -> np.ndarray:
    """The panels' crops magnified ``zoom`` times, MAX_COLUMNS per row, each under a label
    bar with its caption (RGB uint8, size :func:`grid_size`)."""
    ph, pw = panels[0].crop.shape[0] * zoom, panels[0].crop.shape[1] * zoom
    width, height = grid_size(len(panels), pw, ph)
    grid = np.empty((height, width, 3), np.uint8)
    grid[:] = _BACKGROUND
    cols = min(len(panels), MAX_COLUMNS)
    for i, panel in enumerate(panels):
        r, c = divmod(i, cols)
        x = GAP + c * (pw + GAP)
        y = GAP + r * (LABEL_H + ph + GAP)
        grid[y : y + LABEL_H, x : x + pw] = _LABEL_BG
        text, size = _fit_text(panel.caption(), pw)
        bar = np.ascontiguousarray(grid[y : y + LABEL_H, x : x + pw])
        cv2.putText(
            bar, text, (4, LABEL_H - 8), cv2.FONT_HERSHEY_SIMPLEX, size, _TEXT, 1, cv2.LINE_AA
        )
        grid[y : y + LABEL_H, x : x + pw] = bar
        img = panel.crop
        if zoom > 1:
            img = cv2.resize(img, (pw, ph), interpolation=cv2.INTER_NEAREST)
        grid[y + LABEL_H : y + LABEL_H + ph, x : x + pw] = img
    return grid


def _png(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))
    if not ok:
        raise MediaError("cannot encode a PNG")
    return buf.tobytes()


def _overview(rgb: np.ndarray, crop: tuple[int, int, int, int]) -> np.ndarray:
    """The whole input with the crop outlined, at most 480 px wide."""
    img = rgb.copy()
    x, y, w, h = crop
    cv2.rectangle(img, (x, y), (x + w - 1, y + h - 1), (255, 40, 40), max(1, img.shape[1] // 320))
    if img.shape[1] > 480:
        size = (480, max(1, round(img.shape[0] * 480 / img.shape[1])))
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    return img


def _page(
    cfg: CompareConfig,
    report: CompareReport,
    images: dict[str, str],
) -> str:
    """The HTML page; ``images`` maps "grid", "overview" and "panel<i>" to a src."""
    esc = html.escape
    x, y, w, h = report.crop
    scored = any(p.psnr is not None for p in report.panels)
    rows = []
    for p in report.panels:
        cells = [f"<td>{esc(p.label)}</td>", f"<td>{esc(p.weights)}</td>"]
        if scored:
            cells += [
                f"<td class=n>{'' if p.psnr is None else f'{p.psnr:.3f}'}</td>",
                f"<td class=n>{'' if p.ssim is None else f'{p.ssim:.4f}'}</td>",
            ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    head = "<th>panel</th><th>weights or file</th>" + (
        "<th>PSNR (Y, dB)</th><th>SSIM (Y)</th>" if scored else ""
    )
    figures = "\n".join(
        f'<figure><img src="{images[f"panel{i}"]}" alt="{esc(p.label)}" '
        f'width="{p.crop.shape[1] * report.zoom}"><figcaption>{esc(p.caption())}'
        "</figcaption></figure>"
        for i, p in enumerate(report.panels)
    )
    note = (
        f"<p>Scores on the whole image against {esc(str(cfg.gt or cfg.input))}: "
        f"{esc(protocol.PROTOCOL)}.</p>"
        if scored
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>vsr compare: {esc(report.source)} x{report.scale}</title>
<style>
body {{ font-family: sans-serif; background: #181818; color: #eee; margin: 1.5em; }}
img {{ image-rendering: pixelated; display: block; }}
figure {{ display: inline-block; margin: 0 12px 12px 0; vertical-align: top; }}
figcaption {{ font-size: 14px; padding: 4px 0; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #444; padding: 4px 10px; text-align: left; }}
td.n {{ text-align: right; font-variant-numeric: tabular-nums; }}
a {{ color: #8cf; }}
</style></head><body>
<h1>{esc(report.source)}, x{report.scale}</h1>
<p>Crop {w}x{h} at ({x}, {y}) of the input, shown x{report.scale} and magnified
x{report.zoom} (nearest neighbour).</p>
<table><tr>{head}</tr>
{chr(10).join(rows)}
</table>
{note}
<h2>Side by side</h2>
{figures}
<h2>Where the crop is</h2>
<img src="{images["overview"]}" alt="input with the crop outlined">
<h2>Grid</h2>
<img src="{images["grid"]}" alt="all panels in one image">
</body></html>
"""


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, text)


def _check_outputs(cfg: CompareConfig) -> None:
    targets = [cfg.output, cfg.grid_path] + ([] if cfg.embed else [cfg.files_dir])
    inputs = {p.resolve() for p in (cfg.input, cfg.gt) if p is not None}
    for target in targets:
        if target.resolve() in inputs:
            raise OutputExistsError(f"output is an input: {target}", hint="choose another -o")
        if target.exists() and not cfg.overwrite:
            raise OutputExistsError(f"output exists: {target}", hint="pass --overwrite to replace")
    if not cfg.output.parent.is_dir():
        raise UsageError(f"output folder does not exist: {cfg.output.parent}")


def compare(cfg: CompareConfig) -> CompareReport:
    """Upscale, crop, score (with a ground truth), write the grid and the page.

    Raises UsageError (options, sizes, frame past the end), OutputExistsError,
    InputNotFoundError, UnknownModelError, WeightsError, MediaError, DeviceError.
    """
    _check_outputs(cfg)
    names = _model_names(cfg)
    source, gt = _load_source(cfg)
    h, w = source.rgb.shape[:2]
    crop = cfg.crop or auto_crop(source.rgb, cfg.scale)
    x, y, cw, ch = crop
    if x + cw > w or y + ch > h:
        raise UsageError(f"crop {cw}x{ch} at ({x}, {y}) goes past the {w}x{h} input")
    s = cfg.scale
    gt_y = protocol.luma(gt) if gt is not None else None
    # Scores need whole images; otherwise only the crop and some context are upscaled.
    box = (0, 0, w, h) if gt is not None else _context_box(source, crop)
    region = _crop_source(source, box)
    cx, cy = (x - box[0]) * s, (y - box[1]) * s
    panels = []
    for name in names:
        image, weights = _upscale(cfg, name, region)
        panel = Panel(name, name, weights, image, image[cy : cy + ch * s, cx : cx + cw * s])
        if gt is not None and gt_y is not None:
            sr_y = protocol.grey_of_rgb(image) if gt.ndim == 2 else protocol.luma(image)
            panel.psnr, panel.ssim = protocol.score(sr_y, gt_y, scale=s)
        panels.append(panel)
    if gt is not None:
        gt_rgb = _to_rgb8(gt, bgr=False)
        gt_crop = gt_rgb[y * s : (y + ch) * s, x * s : (x + cw) * s]
        panels.append(Panel("ground truth", "", str(cfg.gt or cfg.input), gt_rgb, gt_crop))
    zoom = cfg.zoom or auto_zoom(cw, ch, s)
    grid = draw_grid(panels, zoom)
    report = CompareReport(
        source=source.description,
        scale=s,
        crop=crop,
        zoom=zoom,
        html=cfg.output,
        grid=cfg.grid_path,
        grid_size=(grid.shape[1], grid.shape[0]),
        panels=panels,
    )
    write_image(cfg.grid_path, np.ascontiguousarray(grid[:, :, ::-1]))
    shown = {f"panel{i}": p.crop for i, p in enumerate(panels)}
    shown["overview"] = _overview(source.rgb, crop)
    images: dict[str, str] = {}
    if cfg.embed:
        for key, img in shown.items():
            images[key] = "data:image/png;base64," + base64.b64encode(_png(img)).decode("ascii")
        images["grid"] = "data:image/png;base64," + base64.b64encode(_png(grid)).decode("ascii")
    else:
        cfg.files_dir.mkdir(exist_ok=True)
        for key, img in shown.items():
            label = panels[int(key[5:])].label if key.startswith("panel") else ""
            stem = f"{key}_{label}" if label else key
            path = cfg.files_dir / f"{''.join(c if c.isalnum() else '_' for c in stem)}.png"
            write_image(path, np.ascontiguousarray(img[:, :, ::-1]))
            report.files.append(path)
            images[key] = f"{cfg.files_dir.name}/{path.name}"
        images["grid"] = cfg.grid_path.name
    _write_text(cfg.output, _page(cfg, report, images))
    return report
