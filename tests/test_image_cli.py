"""``vsr image``: single images and folders, colour handling, alpha, 16-bit, errors.

Most runs go through Typer's CliRunner in this process (fast); one runs ``python -m vsr``
to check what a user sees when one file of several is broken.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from vsr.backends.torch_backend import TorchBackend
from vsr.cli import app
from vsr.errors import MediaError
from vsr.images import ImageUpscaler, write_image
from vsr.media.color import rgb_to_yuv, yuv_to_rgb
from vsr.media.frame import ColorInfo
from vsr.models.archs.interpolate import PolyphaseResize
from vsr.models.registry import LoadedModel, get_spec
from vsr.models.weights import write_safetensors

BT601_FULL = ColorInfo("bt470bg", "pc")


def _image(h: int, w: int, channels: int = 3, *, seed: int = 0, deep: bool = False) -> np.ndarray:
    """A smooth random image (HxW for one channel), uint8 or uint16."""
    rng = np.random.default_rng(seed)
    small = rng.random((h // 3 + 2, w // 3 + 2, channels)).astype(np.float32)
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    img = img.reshape(h, w, channels)
    peak = 65535 if deep else 255
    out = np.rint(img * peak).astype(np.uint16 if deep else np.uint8)
    return out[:, :, 0] if channels == 1 else out


def _cli(*args: str):
    return CliRunner().invoke(app, ["image", *args])


def _diff(a: np.ndarray, b: np.ndarray) -> int:
    assert a.shape == b.shape, (a.shape, b.shape)
    return int(np.abs(a.astype(np.int64) - b.astype(np.int64)).max())


def _bicubic(plane: np.ndarray, scale: int) -> np.ndarray:
    """The project's bicubic (= cv2 INTER_CUBIC) in float64 on an (H, W) plane."""
    x = torch.from_numpy(np.ascontiguousarray(plane, dtype=np.float32))[None, None]
    return PolyphaseResize(scale, "cubic")(x)[0, 0].double().numpy()


@pytest.fixture(scope="module")
def espcn_weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(7)
    module = get_spec("espcn").build(2, None, {}).eval()
    path = tmp_path_factory.mktemp("w") / "espcn_random_x2.safetensors"
    write_safetensors(path, module.state_dict(), {"arch": "espcn", "scale": 2})
    return path, module


# -- one image --------------------------------------------------------------------------


def test_single_png_default_name_and_bicubic_pixels(tmp_path):
    img = _image(23, 31)
    src = tmp_path / "photo.png"
    cv2.imwrite(str(src), img)
    result = _cli(str(src), "-m", "bicubic", "-x", "2")
    assert result.exit_code == 0, result.stderr
    out = tmp_path / "photo_bicubic_x2.png"
    assert result.stdout.strip() == str(out)
    got = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert got.shape == (46, 62, 3) and got.dtype == np.uint8
    ref = cv2.resize(img.astype(np.float32), None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    assert _diff(got, np.clip(np.rint(ref), 0, 255)) <= 1
    assert not [p for p in tmp_path.iterdir() if ".vsr-tmp" in p.name]


def test_luma_model_runs_on_bt601_full_range_y_with_bicubic_chroma(tmp_path, espcn_weights):
    weights, module = espcn_weights
    img = _image(18, 22, seed=1)
    src = tmp_path / "c.png"
    cv2.imwrite(str(src), img)
    result = _cli(str(src), "-m", "espcn", "-x", "2", "--weights", str(weights))
    assert result.exit_code == 0, result.stderr
    got = cv2.imread(str(tmp_path / "c_espcn_x2.png"), cv2.IMREAD_UNCHANGED)
    # reference in float64: YCbCr (BT.601 full), the network on Y, Cb/Cr bicubic, back
    y, cb, cr = (p / 255.0 for p in rgb_to_yuv(img[:, :, ::-1] / 255.0, BT601_FULL))
    with torch.inference_mode():
        y2 = module(torch.from_numpy(y.astype(np.float32))[None, None])[0, 0].double().numpy()
    rgb = yuv_to_rgb(y2 * 255, _bicubic(cb, 2) * 255, _bicubic(cr, 2) * 255, BT601_FULL)
    ref = np.rint(rgb[:, :, ::-1] * 255)
    assert _diff(got, ref) <= 1

    grey = _image(18, 22, 1, seed=2)
    cv2.imwrite(str(tmp_path / "g.png"), grey)
    result = _cli(str(tmp_path / "g.png"), "-m", "espcn", "-x", "2", "--weights", str(weights))
    assert result.exit_code == 0, result.stderr
    got = cv2.imread(str(tmp_path / "g_espcn_x2.png"), cv2.IMREAD_UNCHANGED)
    assert got.ndim == 2  # grey stays grey
    with torch.inference_mode():
        ref = module(torch.from_numpy(grey / np.float32(255))[None, None])[0, 0].numpy()
    assert _diff(got, np.clip(np.rint(ref * 255), 0, 255)) <= 1


def test_rgb_model_runs_on_rgb_and_grey_stays_grey():
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 12, 3, padding=1), torch.nn.PixelShuffle(2))
    spec = get_spec("bicubic")
    from dataclasses import replace

    spec = replace(spec, name="rgbnet", channels=3, planewise=False)
    upscaler = ImageUpscaler(TorchBackend(LoadedModel(net.eval(), spec, 2, "t"), device="cpu"))
    img = _image(10, 13, seed=4)
    got = upscaler.upscale(img)
    with torch.inference_mode():
        x = torch.from_numpy(img[:, :, ::-1] / np.float32(255)).permute(2, 0, 1)[None]
        ref = net(x)[0].permute(1, 2, 0).numpy()[:, :, ::-1]
    assert got.shape == (20, 26, 3)
    assert _diff(got, np.clip(np.rint(ref * 255), 0, 255)) <= 1
    assert upscaler.upscale(img[:, :, 0]).shape == (20, 26)


def test_alpha_is_kept_and_resized_bicubic(tmp_path, espcn_weights):
    img = _image(16, 20, 4, seed=5)
    cv2.imwrite(str(tmp_path / "t.png"), img)
    weights, _ = espcn_weights
    result = _cli(str(tmp_path / "t.png"), "-m", "espcn", "-x", "2", "--weights", str(weights))
    assert result.exit_code == 0, result.stderr
    got = cv2.imread(str(tmp_path / "t_espcn_x2.png"), cv2.IMREAD_UNCHANGED)
    assert got.shape == (32, 40, 4)
    ref = np.clip(np.rint(_bicubic(img[:, :, 3] / 255.0, 2) * 255), 0, 255)
    assert _diff(got[:, :, 3], ref) <= 1


def test_grey_with_alpha_is_upscaled_and_written_as_bgra(tmp_path):
    from vsr.models.registry import load_model

    upscaler = ImageUpscaler(TorchBackend(load_model("nearest", 2), device="cpu"))
    img = _image(5, 6, 2, seed=8)
    out = upscaler.upscale(img)
    assert out.shape == (10, 12, 2)
    assert (out[:, :, 0] == np.repeat(np.repeat(img[:, :, 0], 2, 0), 2, 1)).all()
    write_image(tmp_path / "ga.png", out)  # no encoder takes two channels
    got = cv2.imread(str(tmp_path / "ga.png"), cv2.IMREAD_UNCHANGED)
    assert got.shape == (10, 12, 4) and (got[:, :, 1] == out[:, :, 0]).all()
    assert (got[:, :, 3] == out[:, :, 1]).all()


def test_sixteen_bit_png_stays_sixteen_bit(tmp_path):
    img = _image(12, 15, seed=6, deep=True)
    cv2.imwrite(str(tmp_path / "d.png"), img)
    result = _cli(str(tmp_path / "d.png"), "-m", "bicubic", "-x", "2")
    assert result.exit_code == 0, result.stderr
    got = cv2.imread(str(tmp_path / "d_bicubic_x2.png"), cv2.IMREAD_UNCHANGED)
    assert got.dtype == np.uint16 and got.shape == (24, 30, 3)
    ref = np.stack([_bicubic(img[:, :, c] / 65535.0, 2) for c in range(3)], -1)
    assert _diff(got, np.clip(np.rint(ref * 65535), 0, 65535)) <= 2  # float32 maths
    # a format without 16-bit samples is refused, not silently truncated
    result = _cli(
        str(tmp_path / "d.png"), "-m", "bicubic", "-x", "2", "-o", str(tmp_path / "d.jpg")
    )
    assert result.exit_code == 2 and "16-bit" in result.stderr
    assert not (tmp_path / "d.jpg").exists()


def test_float_tiff_is_refused_clearly(tmp_path):
    cv2.imwrite(str(tmp_path / "f.tiff"), np.zeros((8, 8, 3), np.float32))
    result = _cli(str(tmp_path / "f.tiff"), "-m", "bicubic", "-x", "2")
    assert result.exit_code == 2
    assert "8- and 16-bit" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_tiles_and_self_ensemble_match_the_plain_run(tmp_path):
    img = _image(30, 41, seed=7)
    src = tmp_path / "s.png"
    cv2.imwrite(str(src), img)
    outs = {}
    for name, flags in (
        ("plain", []),
        ("tiled", ["--tile", "8", "--tile-overlap", "4"]),
        ("ens", ["--self-ensemble"]),
    ):
        out = tmp_path / f"{name}.png"
        result = _cli(str(src), "-m", "bicubic", "-x", "2", "-o", str(out), *flags)
        assert result.exit_code == 0, result.stderr
        outs[name] = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert _diff(outs["plain"], outs["tiled"]) <= 1
    assert _diff(outs["plain"], outs["ens"]) <= 1


# -- folders ------------------------------------------------------------------------------


def test_folder_is_searched_recursively_and_mirrored(tmp_path):
    src = tmp_path / "in"
    (src / "sub" / "deeper").mkdir(parents=True)
    files = {
        "a.png": _image(9, 11, 4),
        "b.JPG": _image(10, 12, 1),
        "sub/c.webp": _image(8, 8),
        "sub/deeper/d.bmp": _image(7, 9),
        "e.tiff": _image(6, 10, deep=True),
    }
    for name, img in files.items():
        cv2.imwrite(str(src / name), img)
    (src / "notes.txt").write_text("not an image")
    cv2.imwrite(str(src / "a_bicubic_x2.png"), _image(4, 4))  # an earlier output: skipped
    out = tmp_path / "out"
    result = _cli(str(src), "-m", "bicubic", "-x", "2", "-o", str(out), "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] == 5 and report["failed"] == 0
    for name, img in files.items():
        stem, ext = os.path.splitext(name)
        got = cv2.imread(str(out / f"{stem}_bicubic_x2{ext}"), cv2.IMREAD_UNCHANGED)
        assert got is not None, name
        assert got.shape[:2] == (img.shape[0] * 2, img.shape[1] * 2) and got.dtype == img.dtype
        assert got.ndim == img.ndim
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == sorted(
        f"{Path(n).stem}_bicubic_x2{Path(n).suffix}" for n in files
    )


@pytest.mark.slow
def test_one_broken_image_is_reported_and_the_others_are_written(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "good.png"), _image(8, 8))
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    proc = subprocess.run(
        [sys.executable, "-m", "vsr", "image", str(src), "-m", "bicubic", "-x", "2", "-q"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "broken.png" in proc.stderr and "1 of 2 images failed" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert (src / "good_bicubic_x2.png").exists()
    assert not (src / "broken_bicubic_x2.png").exists()
    assert not [p for p in src.iterdir() if ".vsr-tmp" in p.name]


def test_existing_outputs_need_overwrite(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), _image(8, 8))
    cv2.imwrite(str(tmp_path / "b.png"), _image(8, 8, seed=1))
    (tmp_path / "b_bicubic_x2.png").write_bytes(b"keep")
    result = _cli(str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-m", "bicubic", "-x", "2")
    assert result.exit_code == 2 and "--overwrite" in result.stderr
    assert not (tmp_path / "a_bicubic_x2.png").exists()  # refused before anything ran
    assert (tmp_path / "b_bicubic_x2.png").read_bytes() == b"keep"
    args = (str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-m", "bicubic", "-x", "2")
    result = _cli(*args, "--overwrite")
    assert result.exit_code == 0, result.stderr
    assert cv2.imread(str(tmp_path / "b_bicubic_x2.png")).shape == (16, 16, 3)


def test_output_is_a_file_for_one_input_and_a_folder_for_several(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), _image(8, 8))
    cv2.imwrite(str(tmp_path / "b.jpg"), _image(8, 8))
    result = _cli(
        str(tmp_path / "a.png"), "-m", "nearest", "-x", "2", "-o", str(tmp_path / "z.webp")
    )
    assert result.exit_code == 0 and (tmp_path / "z.webp").exists()
    both = (str(tmp_path / "a.png"), str(tmp_path / "b.jpg"), "-m", "nearest", "-x", "2")
    (tmp_path / "file.png").write_bytes(b"x")
    result = _cli(*both, "-o", str(tmp_path / "file.png"))
    assert result.exit_code == 2 and "names a file" in result.stderr
    result = _cli(*both, "-o", str(tmp_path / "new.png"))  # not a folder to create
    assert result.exit_code == 2 and "names a file" in result.stderr
    assert not (tmp_path / "new.png").exists()
    result = _cli(*both, "-o", str(tmp_path / "many"))
    assert result.exit_code == 0, result.stderr
    assert {p.name for p in (tmp_path / "many").iterdir()} == {
        "a_nearest_x2.png",
        "b_nearest_x2.jpg",
    }


@pytest.mark.parametrize(
    "make,args,match",
    [
        (None, ["missing.png"], "not found"),
        ("x.gif", ["x.gif"], "not a supported image"),
        ("empty/", ["empty"], "no images"),
        ("a.png", ["a.png", "--tile", "3"], "tile"),
        ("a.png", ["a.png", "-m", "nosuchnet"], "unknown model"),
        ("a.png", ["a.png", "-o", "out.xyz"], "unsupported output"),
    ],
)
def test_usage_errors_exit_2_with_one_line(tmp_path, make, args, match):
    if make == "empty/":
        (tmp_path / "empty").mkdir()
    elif make:
        cv2.imwrite(str(tmp_path / "a.png"), _image(8, 8))
        (tmp_path / make).write_bytes((tmp_path / "a.png").read_bytes())
    args = [str(tmp_path / a) if i == 0 else a for i, a in enumerate(args)]
    if "-o" in args:
        args[args.index("-o") + 1] = str(tmp_path / args[args.index("-o") + 1])
    result = _cli(*args, "-x", "2", *([] if "-m" in args else ["-m", "bicubic"]))
    assert result.exit_code == 2, result.stderr
    assert match in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_write_is_atomic(tmp_path, monkeypatch):
    dst = tmp_path / "o.png"

    def fail(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(MediaError, match="No space left"):
        write_image(dst, _image(4, 4))
    assert list(tmp_path.iterdir()) == []
