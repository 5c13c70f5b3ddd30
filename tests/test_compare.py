"""``vsr compare``: crops of bicubic and models side by side, as a PNG grid and an HTML page,
on a generated image (with a ground truth) and on a frame of a generated clip."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner, Result

from vsr.backends.options import InferenceOptions
from vsr.cli import app
from vsr.compare import CompareConfig, compare
from vsr.compare.grid import GAP, LABEL_H, MAX_COLUMNS
from vsr.metrics import imresize_uint8, psnr, rgb_to_y
from vsr.models.registry import default_weights

SCALE = 3
HAVE_ESPCN = default_weights("espcn", SCALE).exists()
MODELS = ["bicubic", "nearest"] + (["espcn"] if HAVE_ESPCN else [])


def _hr(h: int = 96, w: int = 120) -> np.ndarray:
    """RGB uint8 with edges and texture (sizes multiples of SCALE)."""
    rng = np.random.default_rng(7)
    small = rng.random((h // 6, w // 6, 3)).astype(np.float32)
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:h, 0:w]
    img[(xx // 10 + yy // 10) % 2 == 0] *= 0.5
    return (img.clip(0, 1) * 255).round().astype(np.uint8)


def _write_rgb(path: Path, rgb: np.ndarray) -> Path:
    cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]))
    return path


def _cli(*args: str | Path | int) -> Result:
    return CliRunner().invoke(app, ["compare", *map(str, args)])


def _model_args() -> list[str]:
    return [a for m in MODELS for a in ("-m", m)]


def _expected_grid(panels: int, panel_w: int, panel_h: int) -> tuple[int, int]:
    cols = min(panels, MAX_COLUMNS)
    rows = -(-panels // cols)
    return cols * panel_w + (cols + 1) * GAP, rows * (LABEL_H + panel_h) + (rows + 1) * GAP


def _embedded_pngs(page: str) -> list[np.ndarray]:
    found = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    images = [cv2.imdecode(np.frombuffer(base64.b64decode(s), np.uint8), 1) for s in found]
    assert all(img is not None for img in images)
    return [img for img in images if img is not None]


def test_image_with_ground_truth(tmp_path: Path) -> None:
    hr = _hr()
    gt = _write_rgb(tmp_path / "hr.png", hr)
    lr_rgb = imresize_uint8(hr, 1 / SCALE)
    lr = _write_rgb(tmp_path / "lr.png", lr_rgb)
    out = tmp_path / "report.html"
    result = _cli(
        lr,
        *_model_args(),
        "-x",
        SCALE,
        "--gt",
        gt,
        "--crop",
        "4,2,20,16",
        "--zoom",
        2,
        "-o",
        out,
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    labels = [p["label"] for p in report["panels"]]
    assert labels == [*MODELS, "ground truth"]

    # the grid: one panel per upscaler plus the ground truth, crop x scale x zoom each
    grid = cv2.imread(str(tmp_path / "report.png"))
    assert grid is not None
    pw, ph = 20 * SCALE * 2, 16 * SCALE * 2
    assert (grid.shape[1], grid.shape[0]) == _expected_grid(len(labels), pw, ph)
    assert tuple(report["grid_size"]) == (grid.shape[1], grid.shape[0])

    # the page embeds every panel (at crop x scale), the overview and the grid
    page = out.read_text()
    pngs = _embedded_pngs(page)
    assert len(pngs) == len(labels) + 2
    assert all(p.shape[:2] == (16 * SCALE, 20 * SCALE) for p in pngs[: len(labels)])
    for label in labels:
        assert f"<figcaption>{label}" in page
    assert 'src="report.png"' not in page  # self-contained

    # PSNR on Y: bicubic's is vsr.metrics' on the same images (MATLAB bicubic of the LR)
    bicubic = psnr(rgb_to_y(imresize_uint8(lr_rgb, SCALE)), rgb_to_y(hr), border=SCALE)
    assert report["panels"][0]["psnr"] == round(bicubic, 4)
    assert f"{bicubic:.3f}" in page and f"bicubic  {bicubic:.2f} dB" in page
    assert report["panels"][-1]["psnr"] is None
    nearest = report["panels"][1]["psnr"]
    assert nearest is not None and nearest < bicubic


def test_from_gt_api_scores_exactly(tmp_path: Path) -> None:
    hr = _hr(72, 84)
    gt = _write_rgb(tmp_path / "hr.png", hr)
    cfg = CompareConfig(
        input=None,
        output=tmp_path / "r.html",
        models=tuple(MODELS),
        inference=InferenceOptions(scale=SCALE),
        gt=gt,
        from_gt=True,
    )
    report = compare(cfg)
    lr = imresize_uint8(hr, 1 / SCALE)
    bicubic = imresize_uint8(lr, SCALE)
    assert np.array_equal(report.panels[0].image, bicubic)
    assert report.panels[0].psnr == psnr(rgb_to_y(bicubic), rgb_to_y(hr), border=SCALE)
    assert report.crop == (0, 0, 28, 24)  # small input: the whole image
    if HAVE_ESPCN:
        espcn = report.panels[MODELS.index("espcn")]
        nearest = report.panels[1].psnr
        assert (
            espcn.psnr is not None and nearest is not None and espcn.psnr > nearest
        )  # beats nearest


def test_video_frame_panels_beside_the_page(clip_mp4: Path, tmp_path: Path) -> None:
    out = tmp_path / "clip.html"
    result = _cli(clip_mp4, *_model_args(), "--frame", 5, "--no-embed", "-o", out, "-q")
    assert result.exit_code == 0, result.stderr
    files = sorted((tmp_path / "clip_files").iterdir())
    assert len(files) == len(MODELS) + 1  # the panels and the overview
    page = out.read_text()
    for f in files:
        assert f'src="clip_files/{f.name}"' in page
    assert 'src="clip.png"' in page and "base64" not in page
    # 128x96 frame at x3: the default crop is the whole frame, 384x288 panels, zoom 1
    grid = cv2.imread(str(tmp_path / "clip.png"))
    assert grid is not None
    assert (grid.shape[1], grid.shape[0]) == _expected_grid(len(MODELS), 384, 288)
    panel = cv2.imread(str(tmp_path / "clip_files" / "panel0_bicubic.png"))
    assert panel is not None and panel.shape == (288, 384, 3)
    assert "PSNR" not in page  # no ground truth, no scores


def test_video_frame_with_ground_truth_and_auto_crop(clip_mp4: Path, tmp_path: Path) -> None:
    """A frame scored against an HR image: here its own x3 bicubic (sizes must agree)."""
    from vsr.compare.grid import auto_crop
    from vsr.compare.source import frame_to_rgb, read_frame

    frame, color = read_frame(clip_mp4, 2)
    rgb = frame_to_rgb(frame, color)
    gt = _write_rgb(tmp_path / "gt.png", imresize_uint8(rgb, SCALE))
    cfg = CompareConfig(
        input=clip_mp4,
        output=tmp_path / "r.html",
        models=("nearest",),
        inference=InferenceOptions(scale=SCALE),
        frame=2,
        gt=gt,
    )
    report = compare(cfg)
    assert report.panels[0].psnr == float("inf")  # bicubic is the ground truth here
    x, y, w, h = auto_crop(rgb, 4)  # x4: 96 px windows in a 128x96 frame
    assert (w, h) == (96, 96) and y == 0 and 0 <= x <= 32


def test_crop_with_context_is_the_whole_image_crop(clip_mp4: Path, tmp_path: Path) -> None:
    """Without a ground truth only the crop and its context are upscaled: the panels are
    the same pixels as when the whole image is upscaled (with a ground truth)."""
    lr = _write_rgb(tmp_path / "lr.png", _hr(66, 84))
    any_hr = _write_rgb(tmp_path / "hr.png", _hr(66 * SCALE, 84 * SCALE))
    frame_hr = _write_rgb(tmp_path / "fhr.png", _hr(96 * SCALE, 128 * SCALE))
    for source, gt, frame, crop in (
        (lr, any_hr, None, (40, 31, 25, 17)),
        (clip_mp4, frame_hr, 3, (21, 13, 30, 20)),
    ):
        panels = []
        for truth in (None, gt):
            cfg = CompareConfig(
                input=source,
                output=tmp_path / "r.html",
                models=tuple(MODELS),
                inference=InferenceOptions(scale=SCALE),
                frame=frame,
                crop=crop,
                gt=truth,
                overwrite=True,
            )
            panels.append(compare(cfg).panels)
        part, whole = panels
        assert part[0].image.shape[0] < whole[0].image.shape[0]  # only a region was upscaled
        for a, b in zip(part, whole, strict=False):  # (whole has the ground truth too)
            assert np.array_equal(a.crop, b.crop), (source.name, a.label)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--weights-for", "espcn=w.safetensors", "-m", "nearest"], "espcn is not compared"),
        (["--crop", "1,2,3"], "bad --crop"),
        (["--crop", "30,0,20,20", "-m", "nearest"], "goes past the 40x32 input"),
        (["-m", "nosuchmodel"], "unknown model"),
        (["--frame", "1", "-m", "nearest"], "--frame is for video input"),
        (["--gt", "GT", "-m", "nearest"], "the ground truth is 60x48"),
    ],
)
def test_errors_exit_2_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    lr = _write_rgb(tmp_path / "lr.png", _hr(32, 40))
    gt = _write_rgb(tmp_path / "gt.png", _hr(48, 60))
    args = [str(gt) if a == "GT" else a for a in args]
    result = _cli(lr, *args, "-o", tmp_path / "r.html")
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r.html").exists() and not (tmp_path / "r.png").exists()


def test_existing_report_needs_overwrite(tmp_path: Path) -> None:
    lr = _write_rgb(tmp_path / "lr.png", _hr(24, 30))
    (tmp_path / "lr_compare.html").write_text("mine")
    result = _cli(lr, "-m", "nearest")
    assert result.exit_code == 2 and "--overwrite" in result.stderr
    assert (tmp_path / "lr_compare.html").read_text() == "mine"
    result = _cli(lr, "-m", "nearest", "--overwrite", "-q")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "lr_compare.png").exists()
