"""``--backend auto`` (the default): openvino on the CPU when it is installed and the network
converts, else torch; the report says which ran; the fingerprint is shared by the backends
that run the same fp32 network."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from vsr.backends import build
from vsr.backends.build import build_backend, resolve_backend
from vsr.backends.options import InferenceOptions
from vsr.backends.torch_backend import TorchBackend
from vsr.config import VIDEO_FIELDS, output_fingerprint
from vsr.errors import UsageError

HAS_OPENVINO = build.openvino_installed()
needs_openvino = pytest.mark.skipif(not HAS_OPENVINO, reason="openvino is not installed")


def test_auto_is_the_default() -> None:
    assert InferenceOptions().backend == "auto"


@needs_openvino
@pytest.mark.parametrize(
    "options",
    [
        InferenceOptions(device="cpu"),
        InferenceOptions(device="auto"),  # no CUDA/MPS in the test runs
        InferenceOptions(device="cpu", precision="fp32"),
        InferenceOptions(device="cpu", precision="int8"),
        InferenceOptions(devices=("cpu", "cpu")),
    ],
)
def test_auto_takes_openvino_on_the_cpu(options: InferenceOptions) -> None:
    assert resolve_backend(options).backend == "openvino"


@pytest.mark.parametrize(
    "options",
    [
        InferenceOptions(device="cpu", compile="default"),  # torch.compile is torch's
        InferenceOptions(device="cpu", precision="fp16"),  # openvino has no fp16 here
    ],
)
def test_auto_takes_torch_for_what_only_torch_does(options: InferenceOptions) -> None:
    assert resolve_backend(options).backend == "torch"


def test_auto_takes_torch_for_a_gpu_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build, "runs_on_cpu", lambda device: device == "cpu")
    assert resolve_backend(InferenceOptions(device="cuda:0")).backend == "torch"
    assert resolve_backend(InferenceOptions(devices=("cpu", "cuda:0"))).backend == "torch"


def test_auto_takes_torch_without_openvino(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build, "openvino_installed", lambda: False)
    assert resolve_backend(InferenceOptions(device="cpu")).backend == "torch"
    backend = build_backend(InferenceOptions(model="bicubic", scale=2, device="cpu"))
    assert type(backend) is TorchBackend and backend.name == "torch"


def test_an_explicit_backend_is_kept() -> None:
    for name in ("torch", "openvino", "opencv"):
        assert resolve_backend(InferenceOptions(backend=name)).backend == name


def test_int8_needs_openvino() -> None:
    with pytest.raises(UsageError, match="int8 needs the openvino backend"):
        InferenceOptions(backend="torch", precision="int8")
    with pytest.raises(UsageError, match="--calibration is for --precision int8"):
        InferenceOptions(calibration=Path("frames"))


@needs_openvino
def test_auto_builds_openvino(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VSR_CACHE", str(tmp_path))
    backend = build_backend(InferenceOptions(model="espcn", scale=3, device="cpu"))
    assert backend.name == "openvino"
    assert backend.description.startswith("cpu fp32 (OpenVINO ")


@needs_openvino
def test_auto_falls_back_to_torch_when_the_network_does_not_convert(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from vsr.backends import openvino_backend

    strict: list[object] = []

    def refuse(self: object, *args: object, **kwargs: object) -> None:
        strict.append(kwargs["strict"])
        raise RuntimeError("unsupported operation")

    monkeypatch.setattr(openvino_backend.OpenVINOBackend, "__init__", refuse)
    with caplog.at_level(logging.INFO, logger="vsr"):
        backend = build_backend(InferenceOptions(model="espcn", scale=3, device="cpu"))
    assert type(backend) is TorchBackend
    assert "does not convert to OpenVINO" in caplog.text and "torch" in caplog.text
    assert strict == [True]  # auto asks for a dynamic conversion or nothing
    # asked for by name, the failure is the user's to see
    with pytest.raises(RuntimeError, match="unsupported operation"):
        build_backend(InferenceOptions(model="espcn", scale=3, backend="openvino"))


def test_the_fingerprint_is_shared_by_the_fp32_network_backends() -> None:
    base = {"model": "espcn", "scale": 3}
    prints = {
        name: output_fingerprint({**base, "backend": name}, VIDEO_FIELDS)
        for name in ("auto", "torch", "openvino", "opencv")
    }
    assert prints["auto"] == prints["torch"] == prints["openvino"] != prints["opencv"]
    # precision and a calibration set change the pixels: they count
    assert output_fingerprint({**base, "precision": "int8"}, VIDEO_FIELDS) != prints["torch"]
    calibrated = {**base, "precision": "int8", "calibration": "frames"}
    assert output_fingerprint(calibrated, VIDEO_FIELDS) != output_fingerprint(
        {**base, "precision": "int8"}, VIDEO_FIELDS
    )


def _vsr(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vsr", *args], capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("asked", [None, "torch"])
def test_vsr_run_reports_the_backend_that_ran(
    clip_mp4: Path, tmp_path: Path, asked: str | None
) -> None:
    out = tmp_path / "out.mp4"
    extra = ["--backend", asked] if asked else []
    args = ["run", str(clip_mp4), "-m", "bicubic", "-x", "2", "--device", "cpu", "-o", str(out)]
    proc = _vsr(*args, *extra, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    expected = asked or ("openvino" if HAS_OPENVINO else "torch")
    assert report["backend"] == expected
    proc = _vsr(*args, *extra, "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert f"with {expected} on cpu" in proc.stderr


def _dataset(folder: Path) -> Path:
    import cv2
    import numpy as np

    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"img{i}.png"), cv2.resize(small, (48, 36)))
    return folder


@needs_openvino
def test_eval_on_openvino_matches_torch(tmp_path: Path) -> None:
    data = _dataset(tmp_path / "set")
    results = {}
    for name in ("torch", "openvino"):
        proc = _vsr("eval", str(data), "-m", "espcn", "-x", "3", "--backend", name, "--json")
        assert proc.returncode == 0, proc.stderr
        results[name] = json.loads(proc.stdout)
    psnr = [
        [r["psnr"] for s in results[name]["datasets"] for r in s["images"]]
        for name in ("torch", "openvino")
    ]
    assert psnr[0] == pytest.approx(psnr[1], abs=0.01)


def test_image_eval_and_compare_refuse_opencv(tmp_path: Path) -> None:
    from vsr.compare.config import CompareConfig
    from vsr.evaluate import EvalConfig
    from vsr.images import ImageConfig

    ov = InferenceOptions(backend="openvino", precision="fp32")
    EvalConfig(datasets=(tmp_path,), inference=ov)
    CompareConfig(input=tmp_path / "a.png", output=tmp_path / "r.html", inference=ov)
    ImageConfig(inputs=(tmp_path,), inference=ov)
    opencv = replace(ov, backend="opencv")
    for make in (
        lambda: EvalConfig(datasets=(tmp_path,), inference=opencv),
        lambda: CompareConfig(input=tmp_path / "a.png", output=tmp_path / "r", inference=opencv),
        lambda: ImageConfig(inputs=(tmp_path,), inference=opencv),
    ):
        with pytest.raises(UsageError, match="torch or openvino"):
            make()


@pytest.mark.parametrize(
    ("backend", "threads", "expected"),
    [("openvino", None, "all"), ("torch", None, "half"), ("openvino", 1, 1), ("torch", 2, 2)],
)
def test_live_model_threads(
    monkeypatch: pytest.MonkeyPatch, backend: str, threads: int | None, expected: object
) -> None:
    """vsr stream: openvino gets all the cores, torch half (its idle threads spin beside
    capture and the sinks); --threads overrides both."""
    import os

    from vsr.live import options as live_options
    from vsr.live.options import StreamConfig

    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    monkeypatch.setattr(build, "openvino_installed", lambda: True)
    seen: dict[str, object] = {}

    def fake_build(opts: InferenceOptions, *, threads: int) -> object:
        seen["threads"] = threads
        return object()

    monkeypatch.setattr(build, "build_backend", fake_build)
    cfg = StreamConfig.from_values("in.ts", device="cpu", backend=backend, threads=threads)
    live_options.make_upscaler(cfg)
    assert seen["threads"] == {"all": 4, "half": 2}.get(str(expected), expected)
