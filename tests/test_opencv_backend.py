"""``--backend opencv``: cv2.dnn_superres on the .pb itself, the reference for the torch path.

The weights are the real ``ESPCN_x2.pb`` from ``shared/data/weights/opencv`` when it is
there, else a synthetic ESPCN graph with random weights (``tests/pbgraph.py``).

Tolerances, torch path vs OpenCV backend:

- grey full-range frames: Y within 1 level, chroma exactly neutral in both. There the
  colour round trip is lossless (R = G = B = Y; OpenCV's YCrCb is BT.601 full range), so
  only the float summation order of the two convolution engines differs, as in
  test_opencv_pb.py;
- the sample clip (BT.601 limited range, as most video): mean |dY| below 1.5 levels and
  99 % of pixels within 10 levels; chroma mean below 3. The OpenCV path converts each frame
  to 8-bit BGR and back (two 8-bit RGB roundings, OpenCV's own 8-bit YCrCb), its network
  sees full-range BT.601 luma instead of the stream's limited-range Y (a 255/219 contrast
  change the non-linear network does not undo exactly), chroma is resized bilinearly
  (full resolution) instead of bicubically (chroma resolution), and out-of-gamut results
  are clipped in RGB. (Measured on this clip with the real ESPCN_x2: Y mean 0.90 levels,
  99th percentile 7, max 13 at hard saturated edges; chroma mean 1.32, 99th percentile
  12, max 36.) With the synthetic graph only the run itself is checked here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from opencv_reference import upsample_like_opencv
from pbgraph import espcn_graph
from typer.testing import CliRunner

from vsr.backends.build import build_backend
from vsr.backends.opencv_backend import (
    OPENCV_PB_REQUIREMENT,
    OpenCVBackend,
    bgr_to_yuv,
    opencv_pb_problem,
    yuv_to_bgr,
)
from vsr.backends.options import InferenceOptions
from vsr.backends.torch_backend import TorchBackend
from vsr.cli import app
from vsr.config import RunConfig
from vsr.errors import UsageError
from vsr.media.frame import ColorInfo, Frame
from vsr.media.sample import make_sample_clip
from vsr.models.registry import load_model
from vsr.pipeline.engine import run

REAL_PB = Path(__file__).resolve().parents[1].parent / "shared/data/weights/opencv/ESPCN_x2.pb"


@pytest.fixture(scope="module")
def pb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if REAL_PB.is_file():
        return REAL_PB
    path = tmp_path_factory.mktemp("pb") / "espcn_synthetic_x2.pb"
    path.write_bytes(espcn_graph(2, seed=3)[0])
    return path


@pytest.fixture(scope="module")
def small_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cv")
    return make_sample_clip(folder / "small.mp4", width=96, height=64, frames=8, audio=False)


def _planes(path: Path) -> list[list[np.ndarray]]:
    out = []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            out.append(
                [
                    np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, : p.width]
                    for p in f.planes
                ]
            )
    return out


def _grey_frames(n: int, h: int, w: int) -> list[Frame]:
    rng = np.random.default_rng(5)
    out = []
    for i in range(n):
        yy, xx = np.mgrid[0:h, 0:w]
        y = 128 + 90 * np.sin(xx / 3.0 + i) * np.cos(yy / 5.0) + rng.normal(0, 6, (h, w))
        c = np.full(((h + 1) // 2, (w + 1) // 2), 128, np.uint8)
        planes = (np.clip(np.rint(y), 0, 255).astype(np.uint8), c, c.copy())
        out.append(Frame(i, i, Fraction(1, 25), planes, "yuv420p"))
    return out


@pytest.mark.opencv_pb
def test_grey_full_range_frames_agree_within_one_level(pb):
    color = ColorInfo("bt470bg", "pc")
    model = load_model("espcn", 2, weights=pb)
    frames = _grey_frames(2, 30, 41)
    ours = TorchBackend(model, device="cpu", color=color).upscale(frames)
    ref = OpenCVBackend(model, weights=pb, color=color).upscale(frames)
    for a, b, src in zip(ours, ref, frames, strict=True):
        assert (b.index, b.pts, b.pix_fmt) == (src.index, src.pts, src.pix_fmt)
        assert b.planes[0].shape == (60, 82) and b.planes[1].shape == (30, 41)
        assert int(np.abs(a.planes[0].astype(int) - b.planes[0]).max()) <= 1
        assert (b.planes[1] == 128).all() and (b.planes[2] == 128).all()
        assert (a.planes[1] == 128).all() and (a.planes[2] == 128).all()


@pytest.mark.opencv_pb
def test_opencv_backend_is_dnn_superres_between_two_colour_conversions(pb):
    """Each frame: stream YUV -> 8-bit BGR -> DnnSuperResImpl.upsample -> stream YUV."""
    color = ColorInfo("bt709", "tv")
    model = load_model("espcn", 2, weights=pb)
    backend = OpenCVBackend(model, weights=pb, color=color)
    assert backend.algo == "espcn" and "opencv" in backend.description
    frame = _grey_frames(1, 20, 27)[0]
    rng = np.random.default_rng(0)
    frame.planes[1][:] = rng.integers(100, 156, frame.planes[1].shape)
    frame.planes[2][:] = rng.integers(100, 156, frame.planes[2].shape)
    got = backend.upscale_frame(frame)
    bgr = upsample_like_opencv(model.module, yuv_to_bgr(frame, color))
    expected = bgr_to_yuv(bgr, color, pix_fmt="yuv420p", height=20)
    for a, b in zip(got.planes, expected, strict=True):
        assert int(np.abs(a.astype(int) - b).max()) <= 1


@pytest.mark.slow
@pytest.mark.opencv_pb
def test_cli_opencv_backend_runs_and_is_close_to_the_torch_path(pb, small_clip, tmp_path):
    out_cv = tmp_path / "cv.mkv"
    proc = subprocess.run(
        [sys.executable, "-m", "vsr", "run", str(small_clip), "--backend", "opencv"]
        + ["--weights", str(pb), "-m", "espcn", "-x", "2", "--crf", "0", "-o", str(out_cv)]
        + ["--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["frames_in"] == report["frames_out"] == 8
    assert report["device"].startswith("opencv") and report["output_size"] == [192, 128]

    out_torch = tmp_path / "torch.mkv"
    run(
        RunConfig.from_values(
            dict(
                input=small_clip,
                output=out_torch,
                model="espcn",
                scale=2,
                weights=pb,
                crf=0,
                quiet=True,
                device="cpu",
            )
        )
    )
    a, b = _planes(out_torch), _planes(out_cv)
    assert len(a) == len(b) == 8
    lumas = [(x[0], y[0]) for x, y in zip(a, b, strict=True)]
    chromas = [(x[k], y[k]) for x, y in zip(a, b, strict=True) for k in (1, 2)]
    dy = np.concatenate([np.abs(x.astype(int) - y).ravel() for x, y in lumas])
    dc = np.concatenate([np.abs(x.astype(int) - y).ravel() for x, y in chromas])
    stats = f"Y mean {dy.mean():.2f} p99 {np.percentile(dy, 99)} max {dy.max()}; "
    stats += f"C mean {dc.mean():.2f} p99 {np.percentile(dc, 99)} max {dc.max()}"
    print(stats)
    if pb != REAL_PB:
        # A random graph is no image upscaler: the limited- vs full-range luma it sees
        # changes its output by far more than a trained network's (measured: mean 13
        # levels). The grey full-range and composition tests above still hold for it.
        return
    assert dy.mean() < 1.5 and np.percentile(dy, 99) <= 10, stats
    assert dc.mean() < 3.0, stats


@pytest.mark.parametrize(
    "args,match",
    [
        (["--backend", "opencv", "-m", "espcn", "-x", "2"], "needs --weights"),
        (["--backend", "opencv", "--tile", "64", "-x", "2"], "--tile needs the torch"),
        (["--backend", "opencv", "--self-ensemble"], "--self-ensemble needs"),
        (["--backend", "cuda"], "unknown backend"),
        (["--backend", "opencv", "-m", "bicubic", "-x", "2", "--weights", "{pb}"], "no weights"),
        (["--backend", "opencv", "--device", "cuda", "-x", "2", "--weights", "{pb}"], "CPU"),
    ],
)
def test_opencv_backend_usage_errors_exit_2(pb, small_clip, tmp_path, args, match):
    args = [a.replace("{pb}", str(pb)) for a in args]
    result = CliRunner().invoke(app, ["run", str(small_clip), "-o", str(tmp_path / "o.mp4"), *args])
    assert result.exit_code == 2, result.output
    assert match in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o.mp4").exists()


def test_opencv_backend_refuses_safetensors_and_ten_bit(pb, tmp_path):
    from vsr.models.registry import get_spec
    from vsr.models.weights import write_safetensors

    st = tmp_path / "e.safetensors"
    write_safetensors(st, get_spec("espcn").build(2, None, {}).state_dict(), {"arch": "espcn"})
    opts = InferenceOptions(model="espcn", scale=2, weights=st, backend="opencv")
    with pytest.raises(UsageError, match=r"\.pb"):
        build_backend(opts, model=load_model("espcn", 2, weights=st), color=ColorInfo())
    opts = InferenceOptions(model="espcn", scale=2, weights=pb, backend="opencv")
    with pytest.raises(UsageError, match="8-bit"):
        build_backend(
            opts, model=load_model("espcn", 2, weights=pb), color=ColorInfo(), bit_depth=10
        )


def _run_cli(clip: Path, out: Path, *args: str):
    result = CliRunner().invoke(
        app, ["run", str(clip), "-m", "espcn", "-x", "2", "-o", str(out), "--quiet", *args]
    )
    return result


def _check_refused(result, out: Path) -> None:
    """Exit 2, one line naming both ways out, no traceback, no output file."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "--backend opencv is not available" in lines[0]
    assert "--backend torch" in lines[0] and OPENCV_PB_REQUIREMENT in lines[0]
    assert "Traceback" not in result.output
    assert not out.exists()


def test_backend_opencv_on_the_installed_opencv(pb, small_clip, tmp_path):
    """On whichever OpenCV is installed: ``--backend opencv`` runs where OpenCV reads .pb
    graphs (below 5.1) and is refused in one line where it cannot (5.1 and newer); the
    default torch backend runs the same file on both."""
    out = tmp_path / "cv.mkv"
    result = _run_cli(small_clip, out, "--backend", "opencv", "--weights", str(pb))
    if opencv_pb_problem() is None:
        assert result.exit_code == 0, result.output
        assert len(_planes(out)) == 8
    else:
        _check_refused(result, out)
    out = tmp_path / "torch.mkv"
    result = _run_cli(small_clip, out, "--weights", str(pb))
    assert result.exit_code == 0, result.output
    assert len(_planes(out)) == 8


def test_backend_opencv_without_the_tensorflow_importer(pb, small_clip, tmp_path, monkeypatch):
    """OpenCV 5.1 removed ``cv2.dnn.readNetFromTensorflow`` (dnn_superres' .pb reader);
    with it taken away here, the opencv backend is refused up front and torch still runs."""
    monkeypatch.delattr(cv2.dnn, "readNetFromTensorflow", raising=False)
    assert "removed in OpenCV 5.1" in str(opencv_pb_problem())
    out = tmp_path / "cv.mkv"
    _check_refused(_run_cli(small_clip, out, "--backend", "opencv", "--weights", str(pb)), out)
    with pytest.raises(UsageError, match="not available"):
        OpenCVBackend(load_model("espcn", 2, weights=pb), weights=pb)
    out = tmp_path / "torch.mkv"
    result = _run_cli(small_clip, out, "--weights", str(pb))
    assert result.exit_code == 0, result.output
    assert len(_planes(out)) == 8


def test_backend_opencv_without_dnn_superres(pb, small_clip, tmp_path, monkeypatch):
    """A non-contrib OpenCV (opencv-python) has no dnn_superres: refused the same way."""
    monkeypatch.delattr(cv2, "dnn_superres", raising=False)
    assert "no dnn_superres module" in str(opencv_pb_problem())
    out = tmp_path / "cv.mkv"
    _check_refused(_run_cli(small_clip, out, "--backend", "opencv", "--weights", str(pb)), out)
