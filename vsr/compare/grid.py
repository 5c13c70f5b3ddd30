"""The pictures of ``vsr compare``: the default crop and zoom, the PNG grid of labelled
panels, and the HTML page."""

from __future__ import annotations

import html
import math

import cv2
import numpy as np

from vsr import evaluate as protocol
from vsr.compare.config import CompareConfig, CompareReport, Panel
from vsr.errors import MediaError

#: Layout of the grid (pixels): gap between panels, label bar height, panels per row.
GAP = 8
LABEL_H = 24
MAX_COLUMNS = 4
#: The default crop's largest side, in output pixels.
DEFAULT_CROP_OUT = 384
#: Auto zoom magnifies panels until their longer side reaches this many pixels.
ZOOM_TARGET = 256
_BACKGROUND = (24, 24, 24)  # RGB
_LABEL_BG = (48, 48, 48)
_TEXT = (255, 255, 255)


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
