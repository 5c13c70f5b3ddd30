"""Training (``vsr train``, ``vsr.train``): it learns, exports weights that load, resumes
bit-identically after SIGKILL, trains RGB models, and refuses bad configs in one line.

Tiny on purpose (2-core machine): a few generated images of 48-64 px, ESPCN x2 with
batches of four 8 px patches, single-threaded.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner, Result

from vsr.cli import app
from vsr.evaluate import load_dataset
from vsr.metrics import rgb_to_y
from vsr.models.registry import get_spec, load_model
from vsr.models.weights import read_safetensors
from vsr.train.config import TrainConfig
from vsr.train.data import PatchSampler, load_pairs
from vsr.train.loop import train_from_file
from vsr.train.validate import evaluate

REPO_ROOT = Path(__file__).resolve().parent.parent


def _image(h: int, w: int, seed: int) -> np.ndarray:
    """RGB uint8: smooth colour blobs plus a diagonal grating (detail bicubic blurs)."""
    rng = np.random.default_rng(seed)
    small = rng.random((h // 8 + 2, w // 8 + 2, 3)).astype(np.float32)
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:h, 0:w]
    img += 0.25 * np.sin(xx / (2.0 + seed % 3) + yy / 3.0)[..., None]
    return (img.clip(0, 1) * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train_data")
    for folder, count, size, seed in (("train", 3, 64, 0), ("val", 2, 48, 10)):
        (root / folder).mkdir()
        for i in range(count):
            cv2.imwrite(str(root / folder / f"im{i}.png"), _image(size, size, seed + i)[..., ::-1])
    (root / "empty").mkdir()
    return root


@pytest.fixture(autouse=True)
def _keep_threads():
    """Runs set torch's thread count (threads = 1): give the rest of the session its own."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _config(path: Path, data: Path, **over: object) -> Path:
    keys: dict[str, object] = {
        "model": "espcn",
        "scale": 2,
        "train_dirs": [str(data / "train")],
        "val_dirs": [str(data / "val")],
        "iterations": 300,
        "batch_size": 4,
        "lr_patch": 8,
        "lr": 3e-3,
        "lr_min": 1e-4,
        "val_every": 100,
        "checkpoint_every": 100,
        "threads": 1,
    }
    keys.update(over)
    lines = [f"{k} = {json.dumps(v)}" for k, v in keys.items() if v is not None]
    path.write_text("\n".join(lines) + "\n")
    return path


def _train_cli(*args: str | Path) -> Result:
    result = CliRunner().invoke(app, ["train", *map(str, args)])
    assert result.exit_code == 0, result.stderr
    return result


def test_short_run_learns_and_exports_loadable_weights(data: Path, tmp_path: Path) -> None:
    # relative folders: a config outside any project resolves them against its own folder
    (tmp_path / "images").symlink_to(data, target_is_directory=True)
    cfg = _config(
        tmp_path / "espcn_x2.toml", data, train_dirs=["images/train"], val_dirs=["images/val"]
    )
    weights = tmp_path / "out" / "espcn_x2.safetensors"
    _train_cli("--config", cfg, "--export", weights, "--quiet")

    run = tmp_path / "runs" / "espcn_x2"  # the default run folder: <root>/runs/<stem>
    report = json.loads((run / "report.json").read_text())
    pairs = load_dataset(data / "val", 2)
    torch.manual_seed(0)  # the run's seed: the same initial weights
    start, _ = evaluate(get_spec("espcn").build(2, None, {}), pairs, 2)
    final = report["results"]["val"]["psnr"]
    assert final > start + 3.0, (start, report["history"])
    assert report["iterations"] == 300 and [h["step"] for h in report["history"]] == [100, 200, 300]

    loaded = load_model("espcn", 2, weights=weights)
    psnr, _ = evaluate(loaded.module, pairs, 2)
    assert round(psnr, 3) == final  # the exported weights are the reported ones
    card = json.loads(weights.with_suffix(".json").read_text())
    assert card["iterations"] == 300 and card["recipe"] == "espcn_x2.toml"
    assert card["metrics"]["val"]["psnr"] == final and "best val PSNR" in card["selection"]


def _checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _assert_identical(a: object, b: object, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            _assert_identical(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_identical(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.mark.slow
def test_run_killed_after_a_checkpoint_resumes_bit_identical(data: Path, tmp_path: Path) -> None:
    cfg = _config(tmp_path / "cfg.toml", data, checkpoint_every=50, ema=0.99)
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    train_from_file(cfg, out=whole, export=whole / "w.safetensors", progress=False)

    proc = subprocess.Popen(
        [sys.executable, "-m", "vsr", "train", "--config", str(cfg), "--out", str(broken), "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    ckpt = broken / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, err.decode()
    step = _checkpoint(ckpt)["step"]
    assert 50 <= step < 300, "the run ended before it could be killed"

    _train_cli("--config", cfg, "--out", broken, "--resume", "--export", broken / "w.safetensors")
    a, b = _checkpoint(whole / "checkpoint.pt"), _checkpoint(ckpt)
    assert a["step"] == b["step"] == 300 and a["ema"] is not None
    for key in ("model", "opt", "ema", "sampler", "torch_rng", "best", "history", "loss_avg"):
        _assert_identical(a[key], b[key], key)
    wa, _ = read_safetensors(whole / "w.safetensors")
    wb, _ = read_safetensors(broken / "w.safetensors")
    _assert_identical(wa, wb, "exported")
    # the export is the EMA's weights (the best validated), not the raw weights
    _assert_identical(wa, torch.load(whole / "best.pt", weights_only=True), "best")


def test_rgb_model_trains_through_the_same_loop(data: Path, tmp_path: Path) -> None:
    cfg = _config(
        tmp_path / "edsr.toml", data, model="edsr", iterations=3, batch_size=2, val_every=3
    )
    weights = tmp_path / "edsr_x2.safetensors"
    report = train_from_file(cfg, out=tmp_path / "run", export=weights, progress=False)
    assert report["iterations"] == 3 and "val" in report["results"]
    loaded = load_model("edsr", 2, weights=weights)
    assert loaded.spec.channels == 3
    psnr, _ = evaluate(loaded.module, load_dataset(data / "val", 2), 2, channels=3)
    assert round(psnr, 3) == report["results"]["val"]["psnr"]
    assert json.loads(weights.with_suffix(".json").read_text())["input"] == "RGB"


def test_rgb_patches_are_the_luma_patches_in_colour(data: Path) -> None:
    """Same seed, same draws: the luma sampler's patches are the Y of the RGB sampler's."""
    pairs = load_pairs([data / "train"], 2)
    luma = PatchSampler(pairs, scale=2, lr_patch=8, seed=3).batch(16)
    rgb = PatchSampler(pairs, scale=2, lr_patch=8, seed=3, channels=3).batch(16)
    for y, c in zip(luma, rgb, strict=True):
        assert c.shape == (16, 3, *y.shape[2:])
        y_of_c = rgb_to_y(np.moveaxis(c, 1, -1).astype(np.float64) * 255.0) / 255.0
        np.testing.assert_allclose(y_of_c, y[:, 0], atol=1e-5)


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"epochs": 3}, "unknown key 'epochs'"),
        ({"iterations": "many"}, "iterations must be an integer"),
        ({"model": "espcnn"}, "unknown model 'espcnn'"),
        ({"model": "bicubic"}, "has no weights to train"),
        ({"ema": 1.5}, "ema must be in [0, 1)"),
        ({"train_dirs": ["/nonexistent/train"]}, "image folder not found"),
        ({"train_dirs": ["EMPTY"]}, "no images in"),
        ({"lr_patch": 40}, "no training image is at least 80 px"),
        ({"scales": [2, 3]}, "train one scale per recipe"),
        ({"scales": "2"}, "scales must be a list of integers"),
        ({"init": "weights:/nonexistent.safetensors"}, "init weights not found"),
        ({"init": "bicubic+noise"}, "init 'bicubic+noise' is not available"),
    ],
)
def test_config_errors_exit_2_with_one_line(
    data: Path, tmp_path: Path, over: dict, message: str
) -> None:
    if over.get("train_dirs") == ["EMPTY"]:
        over = {"train_dirs": [str(data / "empty")]}
    cfg = _config(tmp_path / "bad.toml", data, **over)
    result = CliRunner().invoke(app, ["train", "--config", str(cfg), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


def test_existing_checkpoint_needs_resume_and_missing_config_is_exit_2(
    data: Path, tmp_path: Path
) -> None:
    cfg = _config(tmp_path / "cfg.toml", data)
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "checkpoint.pt").write_bytes(b"not touched")
    result = CliRunner().invoke(app, ["train", "--config", str(cfg), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "--resume" in result.stderr
    assert (tmp_path / "r" / "checkpoint.pt").read_bytes() == b"not touched"
    result = CliRunner().invoke(app, ["train", "--config", str(tmp_path / "none.toml")])
    assert result.exit_code == 2 and "config not found" in result.stderr


def test_shipped_recipes_are_valid() -> None:
    names = set()
    for path in sorted((REPO_ROOT / "configs" / "train").glob("*.toml")):
        cfg = TrainConfig.from_toml(path)
        assert cfg.channels == (3 if cfg.model == "edsr" else 1), path.name
        names.add(path.stem)
    script = (REPO_ROOT / "scripts" / "train_shipped.sh").read_text()
    for name in names:  # every recipe is in a lane of the script that trains them all
        assert f" {name}:" in script or f"lane {name}:" in script, name


@pytest.mark.slow
def test_multi_scale_vdsr_run_serves_every_scale_and_resumes(data: Path, tmp_path: Path) -> None:
    """``scales`` trains one VDSR on x2/x3/x4 in turn; the file loads at each scale, and a
    run stopped at a checkpoint resumes to the same weights (every scale's sampler state)."""
    over = dict(model="vdsr", scale=3, scales=[2, 3, 4], iterations=6, batch_size=2)
    over.update(lr_patch=8, val_every=3, checkpoint_every=3, init="bicubic", lr=1e-4, lr_min=1e-5)
    cfg = _config(tmp_path / "vdsr.toml", data, **over)
    weights = tmp_path / "vdsr.safetensors"
    _train_cli("--config", cfg, "--out", tmp_path / "full", "--export", weights, "--quiet")
    card = json.loads(weights.with_suffix(".json").read_text())
    assert card["initialisation"] == "bicubic"
    pairs = {s: load_dataset(data / "val", s) for s in (2, 3, 4)}
    for s in (2, 3, 4):  # one file, every scale; x3 is the validated one in the card
        loaded = load_model("vdsr", s, weights=weights)
        psnr, _ = evaluate(loaded.module, pairs[s], s)
        assert math.isfinite(psnr) and loaded.scale == s
        if s == 3:
            assert round(psnr, 3) == card["metrics"]["val"]["psnr"]
    import vsr.train.checkpoint as loop

    real_save = loop._save_atomic

    def save_then_stop(obj: object, path: Path) -> None:  # dies after the first checkpoint
        real_save(obj, path)
        if path.name == "checkpoint.pt":
            raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(loop, "_save_atomic", save_then_stop)
        with pytest.raises(KeyboardInterrupt):
            train_from_file(cfg, out=tmp_path / "half", progress=False)
    assert _checkpoint(tmp_path / "half" / "checkpoint.pt")["step"] == 3
    train_from_file(cfg, out=tmp_path / "half", resume=True, progress=False)
    a = _checkpoint(tmp_path / "full" / "checkpoint.pt")
    b = _checkpoint(tmp_path / "half" / "checkpoint.pt")
    _assert_identical(a["model"], b["model"], "model")
    assert set(b["sampler"]) == {"multi", "2", "3", "4"}


def test_weights_init_continues_from_a_file(data: Path, tmp_path: Path) -> None:
    """``init = "weights:F"`` starts from F (matched by name and shape): a run of one step
    at a tiny rate from trained weights scores what those weights score."""
    first = tmp_path / "first.safetensors"
    _train_cli(
        "--config",
        _config(tmp_path / "a.toml", data, iterations=100),
        "--out",
        tmp_path / "a",
        "--export",
        first,
        "--quiet",
    )
    trained = json.loads(first.with_suffix(".json").read_text())["metrics"]["val"]["psnr"]
    cfg = _config(
        tmp_path / "b.toml",
        data,
        iterations=1,
        lr=1e-9,
        lr_min=1e-9,
        val_every=1,
        init=f"weights:{first}",
    )
    second = tmp_path / "second.safetensors"
    _train_cli("--config", cfg, "--out", tmp_path / "b", "--export", second, "--quiet")
    again = json.loads(second.with_suffix(".json").read_text())["metrics"]["val"]["psnr"]
    assert abs(again - trained) < 0.01


@pytest.mark.slow
def test_scripts_train_wrapper(data: Path, tmp_path: Path) -> None:
    """The flags scripts/train_shipped.sh uses, through the script."""
    cfg = _config(tmp_path / "cfg.toml", data, iterations=4, val_every=2, checkpoint_every=2)
    weights = tmp_path / "w.safetensors"
    args = ["--resume", "--threads", "1", "--no-progress", "--export", str(weights)]
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "train.py"), str(cfg), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("val: ") and weights.exists()
    assert (tmp_path / "runs" / "cfg" / "report.json").exists()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_training(data: Path, tmp_path: Path) -> None:
    cfg = _config(tmp_path / "cfg.toml", data, iterations=20, val_every=10, ema=0.9)
    report = train_from_file(cfg, out=tmp_path / "run", device="cuda", progress=False)
    assert report["device"].startswith("cuda") and report["iterations"] == 20
    state = _checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert state["cuda_rng"] is not None
    # resuming on the GPU continues (bit-exactness is a CPU guarantee)
    more = train_from_file(
        cfg, out=tmp_path / "run", iterations=30, device="cuda", resume=True, progress=False
    )
    assert more["iterations"] == 30
