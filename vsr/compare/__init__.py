"""``vsr compare``: the same crop of one image or one video frame upscaled by bicubic and
by each model, side by side, so people can look rather than read.

- Input: an image file, or frame ``frame`` (0-based, in presentation order, found by
  decoding from the start) of a video. With ``gt`` (a ground-truth HR image) each panel
  gets its PSNR and SSIM on Y under the protocol of :mod:`vsr.evaluate` (BT.601 Y, border
  ``scale``, whole image), and a "ground truth" panel is added; with ``from_gt`` the input
  is made from the ground truth by MATLAB-compatible bicubic downscaling (the protocol's LR).
- Bicubic is MATLAB's ``imresize`` (a = -0.5, the protocol's baseline; ``-m bicubic``
  names it). Every other model runs as vsr runs it, in fp32 unless ``inference.precision``
  says otherwise: on an image as ``vsr image``
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
from dataclasses import replace
from pathlib import Path

import numpy as np

from vsr import evaluate as protocol
from vsr.backends.build import build_backend
from vsr.compare.config import CompareConfig, CompareReport, Panel, parse_crop, parse_weights_for
from vsr.compare.grid import _overview, _page, _png, auto_crop, auto_zoom, draw_grid
from vsr.compare.source import _load_source, _Source, _to_rgb8, frame_to_rgb
from vsr.errors import OutputExistsError, UsageError, WeightsError
from vsr.files import atomic_write
from vsr.images import write_image
from vsr.media.frame import Frame
from vsr.metrics import imresize_uint8

__all__ = ["CompareConfig", "CompareReport", "Panel", "compare", "parse_crop", "parse_weights_for"]

#: Input pixels of context upscaled around the crop when nothing is scored (as tiling's
#: overlap): the crop then looks as in a whole-image run, at a fraction of the cost.
CONTEXT = 16


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
    from vsr.models.registry import default_weights, get_spec

    if name == "bicubic":
        return imresize_uint8(source.rgb, cfg.scale), "MATLAB imresize (a = -0.5)"
    spec = get_spec(name)
    given = {get_spec(m).name: p for m, p in cfg.weights}
    weights = given.get(name)
    if weights is None and spec.needs_weights and not default_weights(name, cfg.scale).exists():
        raise WeightsError(
            f"no built-in weights for {name} x{cfg.scale}", hint=f"pass --weights-for {name}=FILE"
        )
    opts = replace(cfg.inference, model=name, weights=weights)
    backend = build_backend(opts, color=source.color)
    assert isinstance(backend, TorchBackend)
    model = backend.model
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
