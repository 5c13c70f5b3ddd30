"""``--backend openvino``: the same frames as the torch backend (cpu, fp32), within 1 code value.

The OpenVINO backend is the torch backend with only the network call replaced, so every
architecture that converts must give the torch backend's output: the max differences seen
(OpenVINO 2026.4.1, f32 inference precision) are stated per case below. The conversion
cache is redirected to the test's tmp folder (``VSR_CACHE``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from frame_checks import max_diff, smooth_frames

from vsr.backends.build import OPENVINO_MISSING, build_backend, build_backends
from vsr.backends.options import InferenceOptions
from vsr.backends.torch_backend import TorchBackend
from vsr.config import RunConfig
from vsr.errors import UsageError
from vsr.media.frame import Frame
from vsr.media.reader import Reader
from vsr.media.sample import make_sample_clip
from vsr.models.archs import rrdbnet, srvgg
from vsr.models.registry import LoadedModel, load_model
from vsr.pipeline.engine import run

ov = pytest.importorskip("openvino")

from vsr.backends.openvino_backend import OpenVINOBackend  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_threads")


@pytest.fixture(autouse=True)
def _cache(ov_cache: Path) -> Path:
    return ov_cache


def _tiny(name: str) -> LoadedModel:
    """The registry's model (built-in weights), or a tiny random RRDBNet / SRVGGNetCompact."""
    torch.manual_seed(0)
    if name == "rrdbnet":
        module = rrdbnet.RRDBNet(num_feat=8, num_block=1, num_grow_ch=4, num_up=1)
        return LoadedModel(module.eval(), rrdbnet.SPEC, 2, "none")
    if name == "srvgg":
        module = srvgg.SRVGGNetCompact(2, num_feat=8, num_conv=2)
        return LoadedModel(module.eval(), srvgg.SPEC, 2, "none")
    scale = {"srcnn": 3, "espcn": 3, "lapsrn": 2}.get(name, 2)
    return load_model(name, scale)


def _pair(name: str, **kw) -> tuple[TorchBackend, OpenVINOBackend]:
    model = _tiny(name)
    ref = TorchBackend(model, device="cpu", precision="fp32", threads=2, **kw)
    return ref, OpenVINOBackend(model, threads=2, **kw)


# Max differences seen (8-bit, 40x56): 1 code value for espcn and srcnn (a rounding step:
# float32 results that differ by ~1e-6), 0 for the others.
@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    ["bicubic", "espcn", "fsrcnn", "srcnn", "vdsr", "lapsrn", "edsr", "rrdbnet", "srvgg"],
)
def test_same_frames_as_torch(name: str) -> None:
    ref, ovb = _pair(name)
    frames = smooth_frames(2, 40, 56)
    diff = max_diff(ref.upscale(frames), ovb.upscale(frames))
    assert diff <= 1, f"{name}: max difference {diff} code values"
    assert ovb._dynamic is not None, f"{name} fell back to per-shape compilation"
    assert ovb.description.startswith("cpu fp32 (OpenVINO 20")


@pytest.mark.slow
def test_10bit_tiles_ensemble_and_a_new_size_on_one_backend(_cache: Path) -> None:
    # Max differences seen: 1 (10-bit espcn), 0 (other size), 0 (fsrcnn tiles), 1 (self-ensemble).
    ref, ovb = _pair("espcn")
    frames = smooth_frames(2, 36, 44, bits=10)
    assert max_diff(ref.upscale(frames), ovb.upscale(frames)) <= 1
    other = smooth_frames(1, 50, 30)  # another size: the dynamic model, no recompilation
    compiled = ovb._dynamic
    assert max_diff(ref.upscale(other), ovb.upscale(other)) <= 1
    assert ovb._dynamic is compiled and not ovb._static

    ref, ovb = _pair("fsrcnn", tile=16, tile_overlap=4)
    frames = smooth_frames(1, 40, 56)
    assert "tiles 16+4" in ovb.description
    assert max_diff(ref.upscale(frames), ovb.upscale(frames)) <= 1

    ref, ovb = _pair("espcn", self_ensemble=True)
    assert max_diff(ref.upscale(frames), ovb.upscale(frames)) <= 1


@pytest.mark.slow
def test_converted_model_is_cached_on_disk(_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    convert = ov.convert_model

    def counting(*args, **kwargs):
        calls.append(1)
        return convert(*args, **kwargs)

    monkeypatch.setattr(ov, "convert_model", counting)
    model = load_model("fsrcnn", 2)
    frames = smooth_frames(1, 24, 32)
    first = OpenVINOBackend(model, threads=1).upscale(frames)
    assert len(calls) == 1
    assert len(list(_cache.glob("*.xml"))) == 1 and len(list(_cache.glob("*.bin"))) == 1
    assert not [p for p in _cache.iterdir() if p.name.startswith(".vsr-tmp")]
    second = OpenVINOBackend(load_model("fsrcnn", 2), threads=1).upscale(frames)
    assert len(calls) == 1, "the second backend converted again"
    assert max_diff(first, second) == 0
    OpenVINOBackend(load_model("fsrcnn", 3), threads=1)  # other weights: another entry
    assert len(calls) == 2 and len(list(_cache.glob("*.xml"))) == 2


def test_usage_errors() -> None:
    for kw, words in [
        ({"device": "cuda"}, "runs on the CPU"),
        ({"device": "cuda:1"}, "runs on the CPU"),
        ({"devices": ("cpu", "cuda:0")}, "runs on the CPU"),
        ({"compile": "default"}, "--compile needs the torch backend"),
        ({"precision": "fp16"}, "runs in fp32"),
    ]:
        with pytest.raises(UsageError, match=words) as info:
            InferenceOptions(backend="openvino", **kw)
        assert "\n" not in str(info.value)
    # tiles, self-ensemble and cpu are fine
    InferenceOptions(backend="openvino", device="cpu", tile=32, self_ensemble=True)
    InferenceOptions(backend="openvino", devices=("cpu", "cpu"))


def test_not_installed_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    opts = InferenceOptions(model="bicubic", scale=2, backend="openvino")
    for make in (build_backend, build_backends):
        with pytest.raises(UsageError) as info:
            make(opts)
        assert str(info.value) == OPENVINO_MISSING
    assert OPENVINO_MISSING == (
        "--backend openvino needs the openvino package: pip install 'vsr[openvino]'"
    )


@pytest.mark.slow
def test_build_backend_makes_it() -> None:
    backend = build_backend(InferenceOptions(model="bicubic", scale=2, backend="openvino"))
    assert isinstance(backend, OpenVINOBackend)
    assert backend.description.startswith("cpu fp32 (OpenVINO ")


def _decoded(path: Path) -> list[Frame]:
    with Reader(path) as reader:
        return list(reader.frames())


@pytest.mark.slow
@pytest.mark.parametrize("model", ["bicubic", "espcn"])
def test_vsr_run_end_to_end(tmp_path: Path, model: str) -> None:
    # Max difference seen between the two lossless outputs: 0 (bicubic, espcn).
    src = tmp_path / "in.mp4"
    make_sample_clip(src, width=64, height=48, frames=6, audio=False)
    ref, out = tmp_path / "torch.mkv", tmp_path / "openvino.mkv"
    common = ["-m", model, "-x", "2", "--codec", "libx264", "--crf", "0", "--quiet"]
    run(
        RunConfig.from_values(
            dict(input=src, output=ref, model=model, scale=2, codec="libx264", crf=0, quiet=True)
        )
    )
    env = {**os.environ, "VSR_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, "-m", "vsr", "run", str(src), "-o", str(out), *common]
        + ["--backend", "openvino"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    a, b = _decoded(ref), _decoded(out)
    assert len(a) == len(b) == 6
    assert (a[0].width, a[0].height) == (128, 96)
    diff = max_diff(a, b)
    print(f"{model}: max difference {diff}")
    assert diff <= 1, f"{model}: max difference {diff} code values"
