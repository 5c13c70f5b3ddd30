"""Loading weights never runs code from the file (DESIGN.md section 5.7), and every bad
file is one line that says what is wrong."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from vsr.errors import WeightsError
from vsr.models import weights as wio
from vsr.models.registry import get_spec, load_model


class _WritesMarker:
    """Unpickling this calls os.system (a REDUCE): it would create ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _tiny_esrgan_state() -> dict[str, torch.Tensor]:
    net = get_spec("esrgan").build(4, None, {"num_feat": 4, "num_block": 1, "num_grow_ch": 4})
    return net.state_dict()


def _one_line(err: pytest.ExceptionInfo[WeightsError]) -> str:
    line = err.value.one_line()
    assert "\n" not in line
    return line


@pytest.mark.parametrize("model", ["esrgan", "auto"])
@pytest.mark.parametrize(
    "container", ["torch-zip", "torch-legacy", "raw-pickle-p2", "raw-pickle-p5"]
)
def test_a_pickle_that_would_run_code_is_refused_and_never_runs(tmp_path, model, container):
    marker = tmp_path / "MARKER"
    evil = {"params_ema": {**_tiny_esrgan_state(), "hook": _WritesMarker(marker)}}
    path = tmp_path / "RealESRGAN_x4plus.pth"
    if container == "torch-zip":
        torch.save(evil, path)
    elif container == "torch-legacy":
        torch.save(evil, path, _use_new_zipfile_serialization=False)
    else:
        protocol = 2 if container == "raw-pickle-p2" else 5
        path.write_bytes(pickle.dumps(_WritesMarker(marker), protocol=protocol))
    with pytest.raises(WeightsError) as err:
        load_model(model, 4, weights=path)
    line = _one_line(err)
    assert "refused: it contains Python objects that would run code when loaded" in line
    assert "system" in line  # names what it would have called (posix.system / nt.system)
    assert not marker.exists()


@pytest.mark.slow
def test_the_cli_refuses_it_in_one_line_with_exit_2(clip_mp4, tmp_path):
    marker = tmp_path / "MARKER"
    path = tmp_path / "evil.pth"
    torch.save({"params_ema": _WritesMarker(marker)}, path)
    out = tmp_path / "out.mp4"
    proc = subprocess.run(
        [sys.executable, "-m", "vsr", "run", str(clip_mp4), "-m", "esrgan", "-x", "4"]
        + ["--weights", str(path), "-o", str(out), "--device", "cpu"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "refused" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists() and not out.exists()


def test_checkpoints_are_read_with_weights_only(tmp_path, monkeypatch):
    path = tmp_path / "w.pth"
    torch.save({"params_ema": _tiny_esrgan_state()}, path)
    seen: list[dict] = []
    real_load = torch.load

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    load_model("esrgan", 4, weights=path)
    assert seen == [{"map_location": "cpu", "weights_only": True}]


def test_a_pickled_module_is_refused(tmp_path):
    path = tmp_path / "whole_model.pth"
    torch.save(nn.Sequential(nn.Conv2d(3, 3, 3)), path)
    with pytest.raises(WeightsError, match="refused") as err:
        load_model("esrgan", 4, weights=path)
    assert "torch.nn.modules" in _one_line(err)


def test_numpy_objects_are_refused_too(tmp_path):
    path = tmp_path / "with_numpy.pth"
    torch.save({"params": _tiny_esrgan_state(), "best_psnr": np.float64(30.1)}, path)
    with pytest.raises(WeightsError, match="refused") as err:
        load_model("esrgan", 4, weights=path)
    assert "numpy" in _one_line(err)


def test_torchscript_archives_are_refused(tmp_path):
    path = tmp_path / "scripted.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated in recent torch
        torch.jit.save(torch.jit.script(nn.Conv2d(3, 3, 3)), str(path))
    with pytest.raises(WeightsError, match="TorchScript") as err:
        load_model("auto", 4, weights=path)
    _one_line(err)


@pytest.mark.parametrize("legacy", [False, True])
def test_truncated_checkpoints_are_one_line_errors(tmp_path, legacy):
    full = tmp_path / "full.pth"
    torch.save(
        {"params_ema": _tiny_esrgan_state()}, full, _use_new_zipfile_serialization=not legacy
    )
    cut = tmp_path / "cut.pth"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="not a readable PyTorch weights file") as err:
        load_model("esrgan", 4, weights=cut)
    assert "truncated" in _one_line(err)


@pytest.mark.parametrize("content", [b"", b"x", b"PK\x03\x04garbage", os.urandom(256)])
def test_corrupt_checkpoints_are_one_line_errors(tmp_path, content):
    path = tmp_path / "junk.ckpt"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match="not a readable PyTorch weights file") as err:
        load_model("esrgan", 4, weights=path)
    _one_line(err)


def test_a_checkpoint_without_tensors_is_a_clean_error(tmp_path):
    for i, obj in enumerate([{"epoch": 3, "lr": 0.1}, [torch.zeros(2)], torch.zeros(3)]):
        path = tmp_path / f"empty{i}.pth"
        torch.save(obj, path)
        with pytest.raises(WeightsError, match="holds no state dict"):
            load_model("esrgan", 4, weights=path)


def test_wrong_shaped_tensors_are_one_line_errors_naming_the_tensor(tmp_path):
    state = _tiny_esrgan_state()
    state["body.0.rdb1.conv2.weight"] = torch.zeros(4, 7, 3, 3)
    path = tmp_path / "misfit.pth"
    torch.save({"params_ema": state}, path)
    with pytest.raises(WeightsError, match="does not fit esrgan x4") as err:
        load_model("esrgan", 4, weights=path)
    assert "body.0.rdb1.conv2.weight" in _one_line(err)

    state = _tiny_esrgan_state()
    del state["conv_hr.bias"]
    torch.save(state, path)
    with pytest.raises(WeightsError, match="conv_hr.bias") as err:
        load_model("esrgan", 4, weights=path)
    _one_line(err)

    compact = get_spec("realesrgan-compact").build(4, None, {"num_feat": 4, "num_conv": 1})
    state = compact.state_dict()
    state["body.1.weight"] = torch.zeros(5)  # PReLU with the wrong width
    torch.save(state, path)
    with pytest.raises(WeightsError, match="body.1.weight") as err:
        load_model("realesrgan-compact", 4, weights=path)
    _one_line(err)


def test_unwrapping_prefers_the_ema_generator_and_drops_non_tensors():
    ema, plain = {"w": torch.ones(1)}, {"w": torch.zeros(1)}
    state = wio.unwrap_state_dict({"params": plain, "params_ema": ema, "iter": 5})
    assert torch.equal(state["w"], torch.ones(1))
    nested = {"state_dict": {"module.w": torch.ones(1), "step": 3}, "epoch": 1}
    assert list(wio.unwrap_state_dict(nested)) == ["w"]
    assert wio.unwrap_state_dict({"only": {"netG.a": torch.ones(1)}}).keys() == {"a"}


def test_safetensors_and_pb_are_read_as_before(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(WeightsError, match="cannot read"):
        load_model("esrgan", 4, weights=bad)
    with pytest.raises(WeightsError, match="unsupported weights format"):
        other = tmp_path / "w.bin"
        other.write_bytes(b"x")
        load_model("esrgan", 4, weights=other)
