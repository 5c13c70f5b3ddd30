"""vsr bench: what it measures is consistent (no timing thresholds: those are benchmarks)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from vsr.backends.build import openvino_installed
from vsr.bench import count_macs, parse_size
from vsr.cli import app
from vsr.errors import UsageError
from vsr.models.registry import get_spec


def test_count_macs_of_known_layers() -> None:
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.ConvTranspose2d(4, 2, 4))
    x = torch.zeros(2, 1, 10, 12)
    # conv: 2*4*10*12 outputs x 1*9 taps; transposed: 2*4*10*12 inputs x 2*16 taps
    assert count_macs(net, x) == 2 * 4 * 120 * 9 + 2 * 4 * 120 * 2 * 16


def test_count_macs_of_espcn_matches_its_formula() -> None:
    module = get_spec("espcn").build(3, None, {})
    h, w = 24, 32
    per_pixel = 5 * 5 * 1 * 64 + 3 * 3 * 64 * 32 + 3 * 3 * 32 * 9
    assert count_macs(module, torch.zeros(1, 1, h, w)) == per_pixel * h * w


@pytest.mark.parametrize("text", ["640", "640x", "axb", "15x16", "641x360"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(UsageError):
        parse_size(text)


def test_bench_reports_both_rates_and_the_stages() -> None:
    result = CliRunner().invoke(
        app,
        ["bench", "-m", "espcn", "-x", "2", "--size", "64x48", "--frames", "6", "--no-matmul",
         "--device", "cpu", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["input_size"] == [64, 48] and report["output_size"] == [128, 96]
    assert report["frames"] == 6 and report["input"] == "synthetic"
    # the default backend, auto: what ran is reported, not "auto"
    assert report["backend"] == ("openvino" if openvino_installed() else "torch")
    assert report["device"].startswith("cpu")
    assert report["model_fps"] > 0 and report["e2e_fps"] > 0
    assert report["model_ms_per_frame"] == pytest.approx(1000 / report["model_fps"], rel=0.01)
    assert report["e2e_share_of_model"] == pytest.approx(
        report["e2e_fps"] / report["model_fps"], rel=0.01
    )
    assert set(report["stages"]) == {"reader", "model", "writer"}
    assert report["bottleneck"] in report["stages"]
    assert report["gmac_per_frame"] == pytest.approx(
        (5 * 5 * 64 + 3 * 3 * 64 * 32 + 3 * 3 * 32 * 4) * 64 * 48 / 1e9, abs=1e-3
    )
    assert report["matmul_gflops"] is None


def test_bench_on_a_real_clip_and_bad_input(clip_mp4: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["bench", "-x", "2", "--input", str(clip_mp4), "--no-matmul", "--json"]
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["input"] == str(clip_mp4)
    result = CliRunner().invoke(app, ["bench", "--input", str(tmp_path / "none.mp4")])
    assert result.exit_code != 0 and "input not found" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = CliRunner().invoke(app, ["bench", "--size", "big"])
    assert result.exit_code == 2 and "WIDTHxHEIGHT" in result.stderr


def test_bench_reports_the_openvino_backend(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("openvino")
    monkeypatch.setenv("VSR_CACHE", str(tmp_path))  # the converted network's cache
    result = CliRunner().invoke(
        app,
        ["bench", "-m", "espcn", "-x", "2", "--size", "64x48", "--frames", "4", "--no-matmul",
         "--device", "cpu", "--backend", "openvino", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["backend"] == "openvino" and "OpenVINO" in report["device"]
    assert report["frames"] == 4 and report["model_fps"] > 0
