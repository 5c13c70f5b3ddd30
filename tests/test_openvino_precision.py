"""``--backend openvino --precision bf16/int8``: bf16 where the CPU has it, int8 by NNCF.

Everything here is generated in the test (frames, images, a clip) and runs offline. int8
is gated by the table of measured losses (:data:`vsr.backends.quantize.MEASURED_INT8`);
the tests that quantise set ``VSR_INT8_UNCHECKED`` (the switch the measurements use), so
they do not depend on what the table holds.
"""

from __future__ import annotations

import logging
import sys
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from frame_checks import max_diff
from typer.testing import CliRunner

from vsr.backends.build import build_backend
from vsr.backends.options import InferenceOptions
from vsr.cli import app
from vsr.config import RunConfig
from vsr.errors import UsageError
from vsr.media.frame import Frame
from vsr.media.reader import Reader
from vsr.media.sample import make_sample_clip
from vsr.models.registry import load_model
from vsr.pipeline.engine import run

ov = pytest.importorskip("openvino")

from vsr.backends import quantize  # noqa: E402
from vsr.backends.openvino_backend import OpenVINOBackend, cpu_has_bf16, model_key  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_threads")


@pytest.fixture(autouse=True)
def _cache(ov_cache: Path) -> Path:
    return ov_cache


@pytest.fixture
def unchecked(monkeypatch: pytest.MonkeyPatch) -> None:
    """int8 on any weights (as the measurements of docs/precision.md run it)."""
    monkeypatch.setenv(quantize.UNCHECKED_ENV, "1")


def _smooth(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth random values in [0, 1] (blocks upsampled: edges and gradients)."""
    small = torch.from_numpy(rng.random((1, 1, h // 4 + 2, w // 4 + 2)))
    return torch.nn.functional.interpolate(small, size=(h, w), mode="bilinear")[0, 0].numpy()


def _frames(n: int, h: int, w: int, seed: int = 0) -> list[Frame]:
    out = []
    for i in range(n):
        rng = np.random.default_rng(seed + i)
        planes = [
            np.rint(16 + _smooth(rng, ph, pw) * 219).astype(np.uint8)
            for ph, pw in ((h, w), (h // 2, w // 2), (h // 2, w // 2))
        ]
        out.append(Frame(i, i, Fraction(1, 24), (planes[0], planes[1], planes[2]), "yuv420p"))
    return out


def _images(folder: Path, n: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        rng = np.random.default_rng(100 + i)
        img = np.stack([_smooth(rng, 48, 64) for _ in range(3)], axis=2)
        cv2.imwrite(str(folder / f"img{i}.png"), np.rint(img * 255).astype(np.uint8))
    return folder


def _one_line(exc: pytest.ExceptionInfo[UsageError]) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


# -- bf16 -----------------------------------------------------------------------------------


@pytest.mark.skipif(not cpu_has_bf16(ov.Core()), reason="this CPU has no bf16 (AVX512-BF16/AMX)")
def test_bf16_runs_within_a_few_code_values_of_fp32() -> None:
    # Max difference seen (espcn x3, 8-bit, 40x56, AMX): 2 code values.
    model = load_model("espcn", 3)
    frames = _frames(2, 40, 56)
    fp32 = OpenVINOBackend(model, threads=2).upscale(frames)
    bf16 = OpenVINOBackend(model, threads=2, precision="bf16")
    assert bf16.description.startswith("cpu bf16 (OpenVINO 20")
    diff = max_diff(fp32, bf16.upscale(frames))
    print(f"bf16 vs fp32: max {diff} code values")
    assert diff <= 8, f"bf16: max difference {diff} code values"


def test_bf16_without_it_on_the_cpu_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("vsr.backends.openvino_backend.cpu_has_bf16", lambda core: False)
    with pytest.raises(UsageError) as info:
        OpenVINOBackend(load_model("bicubic", 2), precision="bf16")
    assert _one_line(info) == "this CPU has no bf16; use --precision fp32"


def test_auto_and_fp32_stay_fp32() -> None:
    for precision in ("auto", "fp32"):
        backend = OpenVINOBackend(load_model("bicubic", 2), threads=1, precision=precision)
        assert backend.description.startswith("cpu fp32 (OpenVINO ")


# -- int8 -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_int8_quantises_close_to_fp32_and_caches_apart(
    tmp_path: Path, _cache: Path, unchecked: None
) -> None:
    # Max difference seen (espcn x3, smooth 8-bit 40x56 frames): 3 code values, mean 0.3.
    model = load_model("espcn", 3)
    frames = _frames(2, 40, 56)
    fp32_backend = OpenVINOBackend(model, threads=2)
    fp32 = fp32_backend.upscale(frames)
    calib = _images(tmp_path / "calib")
    int8 = OpenVINOBackend(model, threads=2, precision="int8", calibration=calib)
    assert int8.description.startswith("cpu int8 (OpenVINO 20")
    out = int8.upscale(frames)
    worst = max_diff(fp32, out)
    mean = float(
        np.mean(
            [
                np.abs(a.planes[0].astype(float) - b.planes[0]).mean()
                for a, b in zip(fp32, out, strict=True)
            ]
        )
    )
    print(f"int8 vs fp32: max {worst}, mean luma {mean:.3f} code values")
    assert worst <= 20 and mean < 1.5, f"max {worst}, mean luma {mean:.3f}"
    names = sorted(p.name for p in _cache.glob("*.xml"))
    key = fp32_backend._key  # the weights and the layers as converted
    assert f"{key}.xml" in names  # fp32
    int8_entries = [n for n in names if n.endswith("-int8.xml")]
    assert len(int8_entries) == 1 and not int8_entries[0].startswith(key)
    # The same samples again: the cached int8 model, no second quantisation.
    calls = []
    real = quantize.quantize_model
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(quantize, "quantize_model", lambda *a: calls.append(1) or real(*a))
        again = OpenVINOBackend(model, threads=2, precision="int8", calibration=calib)
    assert calls == [] and max_diff(out, again.upscale(frames)) == 0


def test_unmeasured_or_over_threshold_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = load_model("fsrcnn", 2)
    key = model_key(model)[:16]
    monkeypatch.setattr(quantize, "MEASURED_INT8", {})
    with pytest.raises(UsageError, match="int8 is unmeasured for fsrcnn x2") as info:
        OpenVINOBackend(model, precision="int8", calibration=Path("unused"))
    _one_line(info)
    over = quantize.Int8Loss("fsrcnn", 2, "built-in", 1.25, 0.5)
    monkeypatch.setattr(quantize, "MEASURED_INT8", {key: over})
    with pytest.raises(UsageError, match=r"loses 1\.25 dB PSNR on fsrcnn x2") as info:
        OpenVINOBackend(model, precision="int8", calibration=Path("unused"))
    _one_line(info)


def test_own_weights_of_a_shipped_model_run_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ok = quantize.Int8Loss("espcn", 3, "built-in", 0.05, 0.03)
    monkeypatch.setattr(quantize, "MEASURED_INT8", {"0" * 16: ok})
    with caplog.at_level(logging.WARNING, logger="vsr"):  # whatever earlier tests set
        quantize.check_int8_allowed("f" * 64, name="espcn", scale=3, source="/w/mine.pth")
    assert "unmeasured" in caplog.text and "mine.pth" in caplog.text
    with pytest.raises(UsageError, match="unmeasured for espcn x2"):  # no x2 entry ships
        quantize.check_int8_allowed("f" * 64, name="espcn", scale=2, source="/w/mine.pth")


def test_missing_nncf_names_the_install(monkeypatch: pytest.MonkeyPatch, unchecked: None) -> None:
    monkeypatch.setitem(sys.modules, "nncf", None)  # import nncf -> ImportError
    with pytest.raises(UsageError) as info:
        OpenVINOBackend(load_model("espcn", 3), precision="int8", calibration=Path("x"))
    assert _one_line(info) == quantize.NNCF_MISSING
    assert "pip install 'vsr[openvino]'" in quantize.NNCF_MISSING


def test_int8_without_calibration_outside_vsr_run_is_refused(unchecked: None) -> None:
    opts = InferenceOptions(model="espcn", scale=3, backend="openvino", precision="int8")
    with pytest.raises(UsageError, match="needs --calibration") as info:
        build_backend(opts)
    _one_line(info)


def test_vsr_eval_int8_without_calibration_exits_2(tmp_path: Path, unchecked: None) -> None:
    folder = _images(tmp_path / "set", 1)
    result = CliRunner().invoke(
        app, ["eval", str(folder), "-m", "espcn", "-x", "3", "--precision", "int8"]
    )
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs --calibration" in lines[0], lines


def test_video_calibration_spreads_frames_over_the_clip(tmp_path: Path) -> None:
    src = make_sample_clip(tmp_path / "c.mp4", width=320, height=180, frames=30, audio=False)
    crops = list(quantize.calibration_inputs(src, 6))
    assert len(crops) == 6 and all(isinstance(c, Frame) for c in crops)
    with Reader(src) as reader:
        pts = [f.pts for f in reader.frames()]
    got = [c.pts for c in crops]
    assert got == sorted(got) and len(set(got)) == 6
    assert got[0] <= pts[5] and got[-1] >= pts[24]  # spread from start to end
    for c in crops:
        assert c.planes[0].shape == (quantize.CROP, quantize.CROP)
        assert c.planes[1].shape == (quantize.CROP // 2, quantize.CROP // 2)


@pytest.mark.slow
def test_vsr_run_int8_calibrates_on_the_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unchecked: None
) -> None:
    src = make_sample_clip(tmp_path / "in.mp4", width=64, height=48, frames=8, audio=False)
    sources: list[Path] = []
    real = OpenVINOBackend.calibration_samples

    def spy(self: OpenVINOBackend, source: Path) -> list[np.ndarray]:
        sources.append(Path(source))
        samples = real(self, source)
        assert all(s.shape == (1, 1, 48, 64) for s in samples)  # whole 64x48 frames
        return samples

    monkeypatch.setattr(OpenVINOBackend, "calibration_samples", spy)
    out = tmp_path / "out.mkv"
    report = run(
        RunConfig.from_values(
            dict(
                input=src,
                output=out,
                model="espcn",
                scale=3,
                backend="openvino",
                precision="int8",
                quiet=True,
            )
        )
    )
    assert sources == [src]
    assert out.exists()
    with Reader(out) as reader:
        frames = list(reader.frames())
    assert len(frames) == 8 and (frames[0].width, frames[0].height) == (192, 144)
    assert report is not None
