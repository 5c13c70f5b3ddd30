"""``--model auto`` with ``--backend auto``: each candidate timed on every CPU backend (torch,
and openvino when it imports), the faster one used and recorded; an explicit backend timed
alone; and one real ``vsr stream --model auto`` whose JSON report names the model and the
backend that ran it. The timing tests replace the upscalers and the clock (controlled,
instant); the last test runs the real thing on a tiny clip."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

import vsr.live.auto as auto
from vsr.live.auto import (
    AutoChoice,
    backend_name,
    calibration_backends,
    choose_model,
    probe_size,
)
from vsr.live.options import StreamConfig

SIZE = (640, 360)
AREA = SIZE[0] * SIZE[1]


class FakeUpscaler:
    """Stands in for a built backend: remembers what it was made for."""

    scale = 2

    def __init__(self, model: str, backend: str) -> None:
        self.model, self.backend = model, backend


class Lab:
    """Controlled seconds per full-size frame for (model, backend), 10 s if not given; time
    scales with the frame's area. Records every upscaler built and every timing asked for."""

    def __init__(self, seconds: dict[tuple[str, str], float], fail: set[tuple[str, str]]):
        self.seconds = seconds
        self.fail = fail
        self.built: list[tuple[str, str]] = []
        self.timed: list[tuple[str, str, int, int]] = []

    def make_upscaler(self, cfg: StreamConfig) -> FakeUpscaler:
        key = (cfg.inference.model, cfg.inference.backend)
        self.built.append(key)
        if key in self.fail:
            raise RuntimeError(f"{key[0]} does not run on {key[1]}\nsecond line")
        return FakeUpscaler(*key)

    def time_per_frame(self, up: FakeUpscaler, width: int, height: int, frames: int) -> float:
        self.timed.append((up.model, up.backend, width, height))
        return self.seconds.get((up.model, up.backend), 10.0) * width * height / AREA


@pytest.fixture
def lab(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A :class:`Lab` patched into ``vsr.live.auto``; call it with the times (and failures)."""

    def make(
        seconds: dict[tuple[str, str], float], fail: frozenset[tuple[str, str]] = frozenset()
    ) -> Lab:
        lab = Lab(seconds, set(fail))
        monkeypatch.setattr(auto, "make_upscaler", lab.make_upscaler)
        monkeypatch.setattr(auto, "_time_per_frame", lab.time_per_frame)
        monkeypatch.setattr(auto, "openvino_importable", lambda: True)
        return lab

    return make


def cfg(**kw: Any) -> StreamConfig:
    values: dict[str, Any] = {"model": "auto", "scale": 2, "device": "cpu", "target_fps": 30.0}
    values.update(kw)
    return StreamConfig.from_values("x", sinks=("o.ts",), **values)


def test_auto_backend_times_both_and_uses_the_faster_per_model(lab: Any) -> None:
    lab = lab(
        {
            ("edsr", "torch"): 2.0,  # clearly too slow: only the probe frame is timed
            ("edsr", "openvino"): 1.0,
            ("fsrcnn", "torch"): 0.030,  # 33 fps: short of 30 x 1.25
            ("fsrcnn", "openvino"): 0.020,  # 50 fps: fast enough
        }
    )
    c = cfg()
    assert c.inference.backend == "auto"
    choice, up = choose_model(c, 30.0, size=SIZE)
    assert (choice.model, choice.backend) == ("fsrcnn", "openvino")
    assert (up.model, up.backend) == ("fsrcnn", "openvino")
    assert "fsrcnn x2 on openvino" in choice.reason and "torch 33 fps" in choice.reason
    assert [(t["model"], t["backend"], t["fps"]) for t in choice.timings] == [
        ("edsr", "torch", 0.5),
        ("edsr", "openvino", 1.0),
        ("fsrcnn", "torch", 33.3),
        ("fsrcnn", "openvino", 50.0),
    ]
    assert [t.get("estimated", False) for t in choice.timings] == [True, True, False, False]
    # one entry per candidate, with the backend it would run on
    assert [(m["model"], m["backend"], m["fps"]) for m in choice.measured] == [
        ("edsr", "openvino", 1.0),
        ("fsrcnn", "openvino", 50.0),
    ]
    # EDSR never timed at full size; the search stopped at the first model fast enough
    assert ("edsr", "torch", *SIZE) not in lab.timed
    assert ("fsrcnn", "torch", *SIZE) in lab.timed
    assert {m for m, _ in lab.built} == {"edsr", "fsrcnn"}
    assert choice.seconds >= 0


def test_auto_backend_fallback_is_the_fastest_model_and_backend(lab: Any) -> None:
    lab(
        {
            ("fsrcnn", "openvino"): 0.30,
            ("espcn", "torch"): 0.05,  # torch faster here: 20 fps
            ("espcn", "openvino"): 0.10,
            ("bicubic", "torch"): 0.04,  # 25 fps: the fastest, on torch
            ("bicubic", "openvino"): 0.045,
        }
    )
    choice, up = choose_model(cfg(), 1000.0, size=SIZE)
    assert (choice.model, choice.backend) == ("bicubic", "torch")
    assert (up.model, up.backend) == ("bicubic", "torch")
    assert "bicubic x2 on torch is the fastest" in choice.reason
    espcn = next(m for m in choice.measured if m["model"] == "espcn")
    assert (espcn["backend"], espcn["fps"]) == ("torch", 20.0)
    assert len(choice.timings) == 2 * len(choice.measured)


@pytest.mark.parametrize("backend", ["torch", "openvino"])
def test_explicit_backend_is_the_only_one_timed(lab: Any, backend: str) -> None:
    lab = lab({("edsr", backend): 0.01})
    choice, up = choose_model(cfg(backend=backend), 30.0, size=SIZE)
    assert (choice.model, choice.backend, up.backend) == ("edsr", backend, backend)
    assert {b for _, b in lab.built} == {backend}
    assert [t["backend"] for t in choice.timings] == [backend]


def test_without_openvino_only_torch_is_timed(lab: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    lab = lab({("edsr", "torch"): 0.01})
    monkeypatch.setattr(auto, "openvino_importable", _real_openvino_importable)
    monkeypatch.setitem(sys.modules, "openvino", None)  # ``import openvino`` fails
    assert calibration_backends(cfg()) == ["torch"]
    choice, _ = choose_model(cfg(), 30.0, size=SIZE)
    assert (choice.model, choice.backend) == ("edsr", "torch")
    assert {b for _, b in lab.built} == {"torch"}


_real_openvino_importable = auto.openvino_importable


def test_openvino_importable_when_installed() -> None:
    pytest.importorskip("openvino")
    assert _real_openvino_importable() is True


def test_which_backends_are_timed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auto, "openvino_importable", lambda: True)
    assert calibration_backends(cfg()) == ["torch", "openvino"]
    assert calibration_backends(cfg(device="cuda")) == ["torch"]  # a GPU: torch only
    assert calibration_backends(cfg(compile="default")) == ["torch"]  # openvino refuses it
    assert calibration_backends(cfg(backend="opencv", weights="x.pb")) == ["opencv"]
    monkeypatch.setattr(auto, "openvino_importable", lambda: False)
    assert calibration_backends(cfg()) == ["torch"]


def test_a_backend_that_fails_on_a_model_is_recorded_and_skipped(lab: Any) -> None:
    lab(
        {("edsr", "torch"): 0.01, ("edsr", "openvino"): 0.001},
        fail=frozenset({("edsr", "openvino")}),
    )
    choice, up = choose_model(cfg(), 30.0, size=SIZE)
    assert (choice.model, choice.backend, up.backend) == ("edsr", "torch", "torch")
    failed = next(t for t in choice.timings if t["backend"] == "openvino")
    assert failed["fps"] is None and "does not run on openvino" in failed["error"]
    assert "\n" not in failed["error"]


def test_every_backend_failing_raises_the_first_error(lab: Any) -> None:
    lab({}, fail=frozenset({("edsr", "torch"), ("edsr", "openvino")}))
    with pytest.raises(RuntimeError, match="edsr does not run on torch"):
        choose_model(cfg(), 30.0, size=SIZE)


def test_probe_only_for_large_inputs(lab: Any) -> None:
    assert probe_size((640, 360)) == (160, 90)
    assert probe_size((64, 48)) is None
    lab = lab({("edsr", "torch"): 5.0, ("edsr", "openvino"): 5.0})
    choose_model(cfg(), 1000.0, size=(64, 48), frames=1)
    assert ("edsr", "torch", 64, 48) in lab.timed  # timed at full size: no probe


def test_backend_name_from_the_class() -> None:
    class TorchBackend:
        pass

    class OpenVINOBackend(TorchBackend):
        pass

    class Derived(OpenVINOBackend):
        pass

    assert backend_name(TorchBackend()) == "torch"
    assert backend_name(Derived()) == "openvino"
    assert backend_name(object(), "torch") == "torch"
    assert backend_name(object()) is None


def test_auto_choice_fields() -> None:
    choice = AutoChoice("espcn", 2, "why", "openvino")
    assert (choice.backend, choice.measured, choice.timings) == ("openvino", [], [])


@pytest.mark.slow
def test_stream_model_auto_reports_model_and_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real ``vsr stream --model auto --target-fps 5`` (tiny clip, calibrated at its own
    size): the JSON report names the chosen model and the backend that ran it, and the
    calibration timed every backend available here."""
    from typer.testing import CliRunner

    from vsr.cli import app
    from vsr.media.sample import make_sample_clip

    monkeypatch.setenv("VSR_CACHE", str(tmp_path / "cache"))
    clip = make_sample_clip(tmp_path / "in.mkv", width=64, height=48, frames=10, rate=Fraction(30))
    out = tmp_path / "o.mkv"
    args = ["stream", str(clip), "-o", str(out), "-m", "auto", "-x", "2", "--target-fps", "5"]
    args += ["--device", "cpu", "--input-size", "64x48", "--json"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    choice = report["auto"]
    assert report["model"] == choice["model"]
    assert report["backend"] == choice["backend"] in ("torch", "openvino")
    expected = calibration_backends(cfg())
    timed = {t["backend"] for t in choice["timings"] if t["model"] == choice["model"]}
    assert timed == set(expected)
    assert f"on {choice['backend']}" in choice["reason"]
    assert report["stats"]["frames_out"] + report["stats"]["dropped"] == 10


def test_stream_report_names_the_backend_of_a_given_upscaler(tmp_path: Path) -> None:
    """Without ``--model auto`` the report names the backend the upscaler is (its class),
    and the summary line says it."""
    from vsr.live.stream import StreamReport

    report = StreamReport(
        source="s",
        sinks=["o.ts"],
        model="fsrcnn",
        scale=2,
        backend="openvino",
        input_size=(640, 360),
        output_size=(1280, 720),
        stopped="duration",
        stats={
            "seconds": 1.0,
            "frames_in": 30,
            "frames_out": 30,
            "dropped": 0,
            "dropped_queue": 0,
            "dropped_late": 0,
            "fps_in": 30.0,
            "fps_out": 30.0,
            "latency_p50_ms": 20.0,
            "latency_p95_ms": 30.0,
            "latency_max_ms": 40.0,
            "reconnects": 0,
            "bottleneck": "model",
        },
    )
    assert "fsrcnn x2 on openvino" in report.summary()
    assert report.to_dict()["backend"] == "openvino"
    assert "fsrcnn x2, " in replace(report, backend=None).summary()
