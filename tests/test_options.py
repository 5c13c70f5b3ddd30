"""InferenceOptions: declared and validated once, held by every mode's config, and the one
``build_backend`` that every mode makes its backend with."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, fields, replace
from pathlib import Path

import pytest

from vsr.backends.build import build_backend, build_backends
from vsr.backends.options import INFERENCE_FIELDS, InferenceOptions
from vsr.bench import BenchConfig
from vsr.compare import CompareConfig
from vsr.config import RunConfig, config_values, make_config
from vsr.errors import UsageError
from vsr.evaluate import EvalConfig
from vsr.images import ImageConfig
from vsr.live.options import StreamConfig, make_upscaler


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"scale": 0}, "scale must be a positive integer"),
        ({"batch_size": 0}, "batch size must be at least 1"),
        ({"threads": 0}, "threads must be at least 1"),
        ({"precision": "fp8"}, "unknown precision"),
        ({"compile": "max"}, "unknown compile mode"),
        ({"backend": "tensorrt"}, "unknown backend"),
        ({"tile": 4}, "tile must be 0 (off) or at least 8"),
        ({"tile_overlap": -1}, "tile overlap must be at least 0"),
        ({"backend": "opencv", "tile": 64}, "--tile needs the torch backend"),
        ({"backend": "opencv", "self_ensemble": True}, "--self-ensemble needs the torch"),
        ({"devices": ("cuda:0", "cuda:0")}, "listed twice"),
        ({"devices": ("cpu",), "device": "cpu"}, "not both"),
    ],
)
def test_bad_options_are_refused_when_made_with_one_line(kw, message):
    with pytest.raises(UsageError) as err:
        InferenceOptions(**kw)
    assert message in err.value.one_line() and "\n" not in err.value.one_line()


def test_options_are_frozen_and_normalise_what_files_carry(tmp_path):
    opts = InferenceOptions(weights=str(tmp_path / "w.pth"), devices=["cpu", "cpu"])  # type: ignore[arg-type]
    assert opts.weights == tmp_path / "w.pth" and isinstance(opts.weights, Path)
    assert opts.devices == ("cpu", "cpu") and opts.first_device == "cpu"
    assert InferenceOptions().first_device == "auto"
    with pytest.raises(FrozenInstanceError):
        opts.scale = 4  # type: ignore[misc]


def test_take_moves_the_inference_keys_out_of_a_flat_mapping():
    values = {"model": "bicubic", "scale": 2, "tile": 16, "codec": "libx265", "input": "a"}
    opts = InferenceOptions.take(values)
    assert (opts.model, opts.scale, opts.tile) == ("bicubic", 2, 16)
    assert values == {"codec": "libx265", "input": "a"}


def test_every_mode_config_holds_one_set_of_inference_options():
    """run (and batch, through RunConfig), stream, image, eval, compare, bench: each holds
    an InferenceOptions and none re-declares its fields."""
    configs = (RunConfig, StreamConfig, ImageConfig, EvalConfig, CompareConfig, BenchConfig)
    for cls in configs:
        names = {f.name for f in fields(cls)}
        assert "inference" in names, cls.__name__
        assert not names & (set(INFERENCE_FIELDS) - {"weights"}), cls.__name__


def test_flat_values_round_trip_through_run_config(tmp_path):
    cfg = make_config({"input": tmp_path / "a.mp4", "model": "bicubic", "scale": 2, "tile": 16})
    assert cfg.inference == InferenceOptions(model="bicubic", scale=2, tile=16)
    values = config_values(cfg)
    assert values["model"] == "bicubic" and values["tile"] == 16
    assert values["codec"] is None  # the output container's usual encoder
    assert RunConfig.from_values(values) == cfg
    with pytest.raises(UsageError, match="bad configuration"):
        RunConfig.from_values({"input": "a.mp4", "colour": "red"})


def test_stream_backend_gets_the_options_the_other_modes_get():
    """``vsr stream`` once took no weights, precision or tile: now its backend is made
    from the same options (and threads default to half the cores)."""
    cfg = StreamConfig.from_values("x", model="bicubic", scale=2, device="cpu", tile=16)
    up = make_upscaler(cfg)
    assert up.scale == 2 and up.tile == 16  # type: ignore[attr-defined]
    assert up.description == build_backend(cfg.inference).description  # type: ignore[attr-defined]


def test_build_backends_makes_one_backend_per_device_from_one_model():
    opts = InferenceOptions(model="bicubic", scale=2, devices=("cpu", "cpu"))
    backends = build_backends(opts)
    assert len(backends) == 2
    assert backends[0].model.module is not backends[1].model.module  # each its own copy
    assert [b.scale for b in backends] == [2, 2]


def test_eval_and_compare_default_to_fp32_and_pass_another_precision_on():
    assert EvalConfig(datasets=(Path("d"),)).inference.precision == "fp32"
    cmp = CompareConfig(input=Path("a.png"), output=Path("r.html"))
    assert cmp.inference.precision == "fp32" and cmp.scale == 3
    asked = InferenceOptions(scale=2, device="cpu", precision="bf16", backend="torch")
    # what vsr compare does per model: the options with the model (and weights) replaced
    backend = build_backend(replace(asked, model="nearest"))
    assert backend.description == "cpu bfloat16"
