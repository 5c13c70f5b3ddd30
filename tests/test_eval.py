"""The evaluation protocol (``vsr.evaluate``, DESIGN.md section 7) and ``vsr eval``.

Without the third-party data the protocol's parts are checked on generated images against
values derived by hand from MATLAB's documented algorithms; with ``../shared/data/val``
bicubic must reproduce the published Set5/Set14 figures (VDSR, Kim et al. 2016, Table 3)
within 0.05 dB, and the shipped ESPCN x3 its model card.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

from vsr import evaluate as ev
from vsr.cli import app
from vsr.errors import UsageError
from vsr.metrics import imresize, imresize_uint8, psnr, rgb_to_y, rgb_to_ycbcr, ssim
from vsr.models.registry import default_weights
from vsr.train import validate as loop

REPO_ROOT = Path(__file__).resolve().parent.parent

#: Bicubic Y-PSNR (dB) published in VDSR (Kim et al., CVPR 2016), Table 3.
PUBLISHED_BICUBIC = {
    ("Set5", 2): 33.66,
    ("Set5", 3): 30.39,
    ("Set5", 4): 28.42,
    ("Set14", 2): 30.24,
    ("Set14", 3): 27.55,
    ("Set14", 4): 26.00,
}


def _image(h: int, w: int, channels: int = 3, *, seed: int = 0) -> np.ndarray:
    """A smooth random uint8 image (HxW for one channel, HxWx3 RGB otherwise)."""
    rng = np.random.default_rng(seed)
    small = rng.random((h // 4 + 2, w // 4 + 2, channels)).astype(np.float32)
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    out = np.rint(img.reshape(h, w, channels) * 255).astype(np.uint8)
    return out[:, :, 0] if channels == 1 else out


def _write(path: Path, img: np.ndarray) -> Path:
    """Write an RGB (or grey) uint8 image as PNG."""
    assert cv2.imwrite(str(path), img[:, :, ::-1] if img.ndim == 3 else img)
    return path


# -- imresize: values derived by hand from MATLAB's imresize.m ------------------------
#
# MATLAB's bicubic is Keys' cubic with a = -0.5; output pixel x (1-based) samples the
# input at u = x / scale + 0.5 * (1 - 1 / scale); when shrinking, the kernel is stretched
# to scale * cubic(scale * d) (antialiasing); borders are mirrored (symmetric padding:
# index 0 -> 1, -1 -> 2, N + 1 -> N). Hence for x2 upscaling the two output phases weigh
# the inputs (k-2, k-1, k, k+1) by (-3, 29, 111, -9) / 128 and (k-1, k, k+1, k+2) by
# (-9, 111, 29, -3) / 128, and x2 downscaling weighs inputs 2k-3 .. 2k+4 (0-based) by
# (-3, -9, 29, 111, 111, 29, -9, -3) / 256. The expected values below are these sums,
# as exact fractions.


def test_imresize_x2_up_matches_matlab_phases() -> None:
    row = np.array([10, 50, 200, 120], dtype=np.float64)
    expected = [25 / 4, 935 / 64, 2005 / 64, 2725 / 32, 5635 / 32, 12435 / 64, 8945 / 64, 225 / 2]
    out = imresize(np.tile(row, (3, 1)), 2)  # constant columns: each row is the 1-D resize
    assert out.shape == (6, 8)
    np.testing.assert_allclose(out, np.tile(expected, (6, 1)), atol=1e-12)


def test_imresize_x2_down_matches_matlab_antialiased_weights() -> None:
    row = np.array([0, 0, 0, 0, 255, 255, 255, 255, 90, 30], dtype=np.float64)
    expected = [-765 / 256, 4335 / 256, 240.0, 7995 / 32, 8475 / 128]
    out = imresize(np.tile(row, (4, 1)), 0.5)
    assert out.shape == (2, 5)
    np.testing.assert_allclose(out, np.tile(expected, (2, 1)), atol=1e-12)
    # uint8 as MATLAB returns it: rounded and clipped (-2.99 -> 0)
    assert imresize_uint8(np.tile(row, (4, 1)), 0.5)[0].tolist() == [0, 17, 240, 250, 66]


def test_imresize_keeps_constants_and_sizes() -> None:
    img = np.full((9, 12, 3), 77.0)
    for scale in (1 / 2, 1 / 3, 1 / 4, 2, 3, 4):
        out = imresize(img, scale)
        assert out.shape == (math.ceil(9 * scale), math.ceil(12 * scale), 3)
        np.testing.assert_allclose(out, 77.0, atol=1e-9)


# -- colour, PSNR, SSIM ---------------------------------------------------------------


def test_y_matches_matlab_rgb2ycbcr() -> None:
    # MATLAB rgb2ycbcr: Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255 (R, G, B in 0-255);
    # on uint8 input it returns these rounded: black 16, white 235, red 81, green 145, blue 41.
    rgb = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]]])
    y = rgb_to_y(rgb)[0]
    np.testing.assert_allclose(y, [16.0, 235.0, 81.481, 144.553, 40.966], atol=1e-9)
    assert np.round(y).astype(int).tolist() == [16, 235, 81, 145, 41]
    np.testing.assert_allclose(rgb_to_ycbcr(np.array([90.0, 90.0, 90.0]))[1:], [128.0, 128.0])
    np.testing.assert_allclose(rgb_to_y(rgb), rgb_to_ycbcr(rgb)[..., 0])


def test_luma_of_grey_is_the_grey_value() -> None:
    grey = _image(20, 24, 1)
    np.testing.assert_array_equal(ev.luma(grey), grey.astype(np.float64))
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    np.testing.assert_allclose(ev.grey_of_rgb(rgb), grey, atol=1e-9)
    # the trap the protocol avoids: Y of replicated grey is 16 + 219/255 * grey
    np.testing.assert_allclose(ev.luma(rgb), 16 + grey.astype(float) * 219 / 255, atol=1e-9)


def test_psnr_and_ssim_known_values() -> None:
    a = _image(40, 48, 1).astype(np.float64) * 0.8 + 20  # within [20, 224]
    assert psnr(a, a) == math.inf
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    checker = np.where((np.indices(a.shape).sum(axis=0) % 2) == 0, 5.0, -5.0)
    # MSE 25 exactly: 10 log10(255^2 / 25)
    assert psnr(a + checker, a) == pytest.approx(10 * math.log10(255**2 / 25), abs=1e-9)
    assert psnr(a + checker, a, border=3) == pytest.approx(34.151404, abs=1e-6)
    # constant images 100 and 110: every window gives (2 * 100 * 110 + C1) / (100^2 + 110^2
    # + C1), with C1 = (0.01 * 255)^2; the structure terms are (0 + C2) / (0 + C2) = 1
    c1 = (0.01 * 255) ** 2
    expected = (2 * 100 * 110 + c1) / (100**2 + 110**2 + c1)
    assert ssim(np.full((30, 30), 110.0), np.full((30, 30), 100.0)) == pytest.approx(expected)
    noisy = a + np.random.default_rng(1).normal(0, 10, a.shape)
    assert 0 < ssim(noisy, a) < 1
    assert ssim(noisy, a) == pytest.approx(ssim(a, noisy), abs=1e-12)


# -- pairs and the protocol on generated images ----------------------------------------


def test_pair_is_mod_cropped_and_lr_is_matlab_bicubic(tmp_path: Path) -> None:
    img = _image(50, 37)
    pair = ev.make_eval_pair(_write(tmp_path / "a.png", img), 3)
    assert pair.name == "a" and not pair.grey
    np.testing.assert_array_equal(pair.hr, img[:48, :36])
    assert pair.lr.dtype == np.uint8 and pair.lr.shape == (16, 12, 3)
    np.testing.assert_array_equal(pair.lr, imresize_uint8(img[:48, :36], 1 / 3))
    np.testing.assert_allclose(pair.hr_y, rgb_to_y(img[:48, :36]))
    np.testing.assert_allclose(pair.lr_y, rgb_to_y(pair.lr))


def test_grey_image_scored_on_grey_values(tmp_path: Path) -> None:
    """A grey file is scored on its grey values; replicated to RGB it would be scored on
    Y = 16 + 219/255 grey, which is 20 log10(255/219) = 1.32 dB higher (Set14's bridge)."""
    grey = _image(48, 60, 1, seed=3)
    (tmp_path / "g").mkdir()
    (tmp_path / "c").mkdir()
    _write(tmp_path / "g" / "x.png", grey)
    _write(tmp_path / "c" / "x.png", np.repeat(grey[:, :, None], 3, axis=2))
    [g] = ev.load_dataset(tmp_path / "g", 2)
    [c] = ev.load_dataset(tmp_path / "c", 2)
    assert g.grey and not c.grey and g.hr.shape == (48, 60)
    (pg, sg), (pc, _) = ev.bicubic_scores([g], scale=2)[0], ev.bicubic_scores([c], scale=2)[0]
    assert pg == pytest.approx(psnr(imresize_uint8(g.lr, 2), grey, border=2), abs=1e-12)
    assert pc - pg == pytest.approx(20 * math.log10(255 / 219), abs=1e-9)
    assert 0 < sg < 1


def _nearest(x: torch.Tensor, scale: int = 2) -> torch.Tensor:
    return F.interpolate(x, scale_factor=scale, mode="nearest")


def test_model_y_luma_and_rgb_models(tmp_path: Path) -> None:
    rgb_pair = ev.make_eval_pair(_write(tmp_path / "c.png", _image(32, 40)), 2)
    grey_pair = ev.make_eval_pair(_write(tmp_path / "g.png", _image(32, 40, 1)), 2)
    rep = np.ones((2, 2))
    # luma model: sees the LR luma (0-1), its output is the SR luma, not rounded
    np.testing.assert_allclose(
        ev.model_y(_nearest, rgb_pair, channels=1), np.kron(rgb_pair.lr_y, rep), atol=1e-4
    )
    # RGB model: sees the LR RGB, the luma is taken from its output
    np.testing.assert_allclose(
        ev.model_y(_nearest, rgb_pair, channels=3),
        rgb_to_y(np.kron(rgb_pair.lr.astype(np.float64), rep[:, :, None])),
        atol=1e-4,
    )
    # grey image: both kinds of model give the grey values
    expected = np.kron(grey_pair.lr.astype(np.float64), rep)
    for channels in (1, 3):
        np.testing.assert_allclose(
            ev.model_y(_nearest, grey_pair, channels=channels), expected, atol=1e-4
        )
    with pytest.raises(ValueError, match="gave"):
        ev.model_y(lambda x: _nearest(x, 3), rgb_pair, channels=1)


def test_training_validation_uses_the_protocol(tmp_path: Path) -> None:
    for i in range(2):
        _write(tmp_path / f"{i}.png", _image(36, 44, seed=i))
    pairs = ev.load_dataset(tmp_path, 2)
    module = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
    got = loop.evaluate(module, pairs, 2)
    want = ev.mean_scores(ev.model_scores(module, pairs, scale=2, channels=1))
    assert got == pytest.approx(want, abs=1e-12)
    assert loop.bicubic_scores(pairs, 2) == ev.mean_scores(ev.bicubic_scores(pairs, scale=2))


def test_bad_folders_and_images(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not found"):
        ev.load_dataset(tmp_path / "nope", 2)
    with pytest.raises(UsageError, match="no images"):
        ev.load_dataset(tmp_path, 2)
    _write(tmp_path / "tiny.png", _image(16, 16))
    with pytest.raises(UsageError, match="too small"):
        ev.load_dataset(tmp_path, 4)


# -- the published figures --------------------------------------------------------------


@pytest.mark.slow
def test_bicubic_reproduces_published_figures(shared_data: Path | None) -> None:
    if shared_data is None or not (shared_data / "val" / "Set14").is_dir():
        pytest.skip("../shared/data/val (Set5, Set14) is not here")
    worst = []
    for (name, scale), published in PUBLISHED_BICUBIC.items():
        pairs = ev.load_dataset(shared_data / "val" / name, scale)
        measured, _ = ev.mean_scores(ev.bicubic_scores(pairs, scale=scale))
        worst.append((abs(measured - published), name, scale, measured, published))
    assert max(worst)[0] <= 0.05, max(worst)


# -- vsr eval -------------------------------------------------------------------------


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vsr", "eval", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
    )


@pytest.fixture(scope="module")
def two_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("evalset")
    _write(folder / "one.png", _image(48, 60, seed=1))
    _write(folder / "two.png", _image(45, 51, 1, seed=2))  # grey, odd size
    return folder


@pytest.mark.slow
def test_cli_json_bicubic(two_images: Path) -> None:
    proc = _run_cli(str(two_images), "-m", "bicubic", "-x", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["model"] == "bicubic" and report["scale"] == 2
    [ds] = report["datasets"]
    assert ds["name"] == two_images.name
    assert [i["name"] for i in ds["images"]] == ["one", "two"]
    pairs = ev.load_dataset(two_images, 2)
    for item, (bp, bs) in zip(ds["images"], ev.bicubic_scores(pairs, scale=2), strict=True):
        assert item["bicubic_psnr"] == pytest.approx(bp, abs=1e-4)
        assert item["bicubic_ssim"] == pytest.approx(bs, abs=1e-5)
        assert math.isfinite(item["psnr"]) and 0 < item["ssim"] <= 1
    mean = np.mean([i["psnr"] for i in ds["images"]])
    assert ds["mean"]["psnr"] == pytest.approx(mean, abs=1e-3)


def test_cli_table(two_images: Path) -> None:
    result = CliRunner().invoke(app, ["eval", str(two_images), "-m", "nearest", "-x", "2", "-q"])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{two_images.name}: nearest x2")
    assert [ln.split()[0] for ln in lines[2:4]] == ["one", "two"]
    assert set(lines[4]) == {"-"} and lines[5].split()[0] == "mean"


@pytest.mark.slow
@pytest.mark.skipif(
    not default_weights("espcn", 3).exists(), reason="vsr/weights/espcn_x3.safetensors absent"
)
def test_cli_espcn_x3_matches_model_card(shared_data: Path | None, two_images: Path) -> None:
    set5 = shared_data / "val" / "Set5" if shared_data is not None else None
    have_set5 = set5 is not None and set5.is_dir()
    proc = _run_cli(str(set5 if have_set5 else two_images), "-m", "espcn", "-x", "3", "--json")
    assert proc.returncode == 0, proc.stderr
    mean = json.loads(proc.stdout)["datasets"][0]["mean"]
    if not have_set5:
        assert math.isfinite(mean["psnr"])
        return
    card = json.loads(default_weights("espcn", 3).with_suffix(".json").read_text())
    assert mean["psnr"] == pytest.approx(card["metrics"]["Set5"]["psnr"], abs=0.01)
    assert mean["bicubic_psnr"] == pytest.approx(card["metrics"]["Set5"]["bicubic_psnr"], abs=0.01)


@pytest.mark.parametrize("kind", ["missing", "empty"])
def test_cli_bad_folder_exit_2_one_line(tmp_path: Path, kind: str) -> None:
    folder = tmp_path / "nope" if kind == "missing" else tmp_path
    result = CliRunner().invoke(app, ["eval", str(folder), "-m", "bicubic", "-x", "2"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vsr: error:")
    assert ("not found" if kind == "missing" else "no images") in lines[0]
