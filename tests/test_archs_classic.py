"""SRCNN, VDSR, LapSRN and EDSR: tiny random-init variants through the whole loading path.

For each architecture: build -> state dict -> safetensors -> ``load_model`` gives the same
hyperparameters and bit-identical outputs; ``detect`` takes its own layout (and the
official/popular foreign ones) and refuses the others; outputs are LR x scale; the
forward pass matches an independent functional version of the published network (MATLAB
bicubic for SRCNN/VDSR, EDSR-PyTorch's mean shift and residual scaling for EDSR). The
LapSRN graph semantics are checked against OpenCV in ``test_opencv_pb.py``.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vsr.errors import UsageError, WeightsError
from vsr.media.frame import Frame
from vsr.metrics import imresize
from vsr.models.archs import edsr, espcn, fsrcnn, lapsrn, srcnn, vdsr
from vsr.models.archs.interpolate import PolyphaseResize
from vsr.models.registry import REGISTRY, get_spec, load_model
from vsr.models.weights import write_safetensors

torch.manual_seed(0)


def tiny(name: str, scale: int) -> nn.Module:
    """A random-init variant small enough for a 2-core machine."""
    if name == "srcnn":
        return srcnn.SRCNN(scale, features=(8, 4))
    if name == "vdsr":
        return vdsr.VDSR(scale, depth=4, features=8)
    if name == "lapsrn":
        return lapsrn.LapSRN(scale, features=8, depth=2)
    if name == "edsr":
        return edsr.EDSR(scale, blocks=2, features=8)
    raise AssertionError(name)


CASES = [
    ("srcnn", 2),
    ("srcnn", 3),
    ("vdsr", 4),
    ("lapsrn", 2),
    ("lapsrn", 4),
    ("lapsrn", 8),
    ("edsr", 2),
    ("edsr", 3),
    ("edsr", 4),
]
IDS = [f"{n}-x{s}" for n, s in CASES]


def _save(tmp_path: Path, module: nn.Module, arch: str, scale: int | None, **extra: str) -> Path:
    meta: dict[str, str | int | float] = {"arch": arch}
    if scale is not None:
        meta["scale"] = scale
    meta.update(getattr(module, "hparams", {}))
    meta.update(extra)
    path = tmp_path / f"{arch}.safetensors"
    write_safetensors(path, module.state_dict(), meta)
    return path


def _input(name: str, h: int = 7, w: int = 9, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3 if name == "edsr" else 1, h, w, generator=g)


def _shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


# --------------------------------------------------------------------------------------
# Registry and round trip
# --------------------------------------------------------------------------------------


def test_specs_are_registered_with_their_metadata() -> None:
    expected = {"srcnn": (1, (2, 3, 4)), "vdsr": (1, (2, 3, 4)), "lapsrn": (1, (2, 4, 8))}
    expected["edsr"] = (3, (2, 3, 4))
    for name, (channels, scales) in expected.items():
        spec = REGISTRY[name]
        assert (spec.channels, spec.scales, spec.size_multiple) == (channels, scales, 1)
        assert spec.speed in ("fast", "medium", "slow") and spec.detect is not None
        assert spec.licence and spec.description and spec.fp16 and spec.bf16
    assert "EDSR-PyTorch" in REGISTRY["edsr"].licence


@pytest.mark.parametrize(("name", "scale"), CASES, ids=IDS)
def test_round_trip_through_safetensors(tmp_path: Path, name: str, scale: int) -> None:
    module = tiny(name, scale).eval()
    path = _save(tmp_path, module, name, scale)
    loaded = load_model(name, scale, weights=path)
    assert _shapes(loaded.module) == _shapes(module)
    assert getattr(loaded.module, "hparams", None) == getattr(module, "hparams", None)
    for a, b in zip(module.state_dict().values(), loaded.module.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    x = _input(name)
    with torch.inference_mode():
        ours, theirs = module(x), loaded.module(x)
    assert ours.shape == (1, x.shape[1], 7 * scale, 9 * scale)
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("name", ["srcnn", "vdsr", "lapsrn", "edsr"])
def test_default_builds_are_the_published_sizes(name: str) -> None:
    spec = get_spec(name)
    module = spec.build(spec.scales[0], None, {})
    counts = {
        "srcnn": (9 * 9 * 64 + 64) + (5 * 5 * 64 * 32 + 32) + (5 * 5 * 32 + 1),  # 9-5-5
        "vdsr": (9 * 64 + 64) + 18 * (9 * 64 * 64 + 64) + (9 * 64 + 1),  # 20 layers
        "lapsrn": (9 * 64 + 64) + 9 * (9 * 64 * 64 + 64) + 16 * 64 * 4 + 16 * 4,  # one level
    }
    params = sum(p.numel() for p in module.parameters() if p.requires_grad)
    if name in counts:
        assert params == counts[name]
    else:  # EDSR baseline x2 is about 1.37 M parameters
        assert 1_300_000 < params < 1_400_000 and module.res_scale == 1.0


def test_backend_runs_each_architecture(tmp_path: Path) -> None:
    """Luma models through the Y path, EDSR through the RGB path: sizes x scale."""
    from vsr.backends.torch_backend import TorchBackend

    rng = np.random.default_rng(0)
    planes = (
        rng.integers(16, 236, (10, 12)).astype(np.uint8),
        rng.integers(16, 240, (5, 6)).astype(np.uint8),
        rng.integers(16, 240, (5, 6)).astype(np.uint8),
    )
    frame = Frame(0, 0, Fraction(1, 25), planes, "yuv420p")
    for name, scale in (("srcnn", 2), ("vdsr", 3), ("lapsrn", 2), ("edsr", 2)):
        path = _save(tmp_path, tiny(name, scale), name, scale)
        out = TorchBackend(load_model(name, scale, weights=path), device="cpu").upscale([frame])[0]
        assert out.planes[0].shape == (10 * scale, 12 * scale)
        assert out.planes[1].shape == out.planes[2].shape == (5 * scale, 6 * scale)


# --------------------------------------------------------------------------------------
# SRCNN and VDSR: bicubic inside the module, scale-free weights
# --------------------------------------------------------------------------------------


def _matlab_up(x: torch.Tensor, scale: int) -> torch.Tensor:
    up = imresize(x[0, 0].double().numpy(), scale)
    return torch.from_numpy(up).float()[None, None]


def test_srcnn_is_three_same_convolutions_on_matlab_bicubic() -> None:
    module = tiny("srcnn", 3).eval()
    x = _input("srcnn")
    s = module.state_dict()
    h = _matlab_up(x, 3)
    for i, act in ((1, True), (2, True), (3, False)):
        w = s[f"conv{i}.weight"]
        h = F.conv2d(h, w, s[f"conv{i}.bias"], padding=w.shape[-1] // 2)
        h = F.relu(h) if act else h
    with torch.inference_mode():
        torch.testing.assert_close(module(x), h, atol=2e-6, rtol=0)


def test_opencv_cubic_is_selectable_and_kept_in_the_metadata(tmp_path: Path) -> None:
    module = srcnn.SRCNN(2, features=(8, 4), cubic="opencv").eval()
    x = _input("srcnn")
    torch.testing.assert_close(module.upsample(x), PolyphaseResize(2, "cubic")(x))
    loaded = load_model("srcnn", 2, weights=_save(tmp_path, module, "srcnn", 2))
    assert loaded.module.upsample.cubic == "opencv"
    with pytest.raises(WeightsError, match="cubic"):
        srcnn.build(2, None, {"cubic": "lanczos"})


@pytest.mark.parametrize("kernels", [(9, 1, 5), (9, 3, 5), (9, 5, 5)])
def test_srcnn_kernel_sizes_are_inferred(tmp_path: Path, kernels: tuple[int, int, int]) -> None:
    module = srcnn.SRCNN(2, features=(6, 3), kernels=kernels)
    loaded = load_model("srcnn", 2, weights=_save(tmp_path, module, "srcnn", 2)).module
    assert (loaded.conv1.kernel_size[0], loaded.conv2.kernel_size[0]) == kernels[:2]
    assert loaded.conv3.kernel_size[0] == kernels[2]


def test_vdsr_is_a_residual_to_matlab_bicubic() -> None:
    module = tiny("vdsr", 2).eval()
    x = _input("vdsr")
    s = module.state_dict()
    up = _matlab_up(x, 2)
    h = up
    for i in range(4):
        h = F.conv2d(h, s[f"layers.{i}.weight"], s[f"layers.{i}.bias"], padding=1)
        h = F.relu(h) if i < 3 else h
    with torch.inference_mode():
        torch.testing.assert_close(module(x), h + up, atol=2e-6, rtol=0)


@pytest.mark.parametrize("meta_scale", ["any", None])
def test_one_vdsr_file_serves_x2_x3_x4(tmp_path: Path, meta_scale: str | None) -> None:
    module = tiny("vdsr", 2)
    if meta_scale is None:
        path = tmp_path / "vdsr.safetensors"
        write_safetensors(path, module.state_dict(), {"arch": "vdsr"})
    else:
        path = _save(tmp_path, module, "vdsr", 2)  # hparams turn the scale into "any"
        assert module.hparams["scale"] == "any"
    x = _input("vdsr", 5, 6)
    for scale in (2, 3, 4):
        loaded = load_model("vdsr", scale, weights=path)
        assert loaded.scale == scale and loaded.module.scale == scale
        with torch.inference_mode():
            assert loaded.module(x).shape == (1, 1, 5 * scale, 6 * scale)


def test_vdsr_without_biases_and_other_depths(tmp_path: Path) -> None:
    module = vdsr.VDSR(3, depth=6, features=5, bias=False)
    loaded = load_model("vdsr", 3, weights=_save(tmp_path, module, "vdsr", None)).module
    assert len(loaded.layers) == 6 and loaded.layers[0].bias is None
    assert loaded.layers[1].out_channels == 5


# --------------------------------------------------------------------------------------
# LapSRN
# --------------------------------------------------------------------------------------


def test_lapsrn_pyramid_gives_every_level() -> None:
    module = tiny("lapsrn", 8).eval()
    x = _input("lapsrn", 5, 6)
    with torch.inference_mode():
        pyramid = module.pyramid(x)
        assert [p.shape[-2:] for p in pyramid] == [(10, 12), (20, 24), (40, 48)]
        assert torch.equal(pyramid[-1], module(x))
        # the first two levels of an x8 network are an x4 network
        x4 = lapsrn.LapSRN(4, features=8, depth=2)
        x4.levels.load_state_dict(module.levels[:2].state_dict())
        assert torch.equal(x4(x), pyramid[1])


def test_lapsrn_pads_its_4x4_convolutions_like_tensorflow() -> None:
    """TF 'SAME' with an even kernel: one pixel before, two after."""
    assert lapsrn._same_pad(4) == (1, 2, 1, 2) and lapsrn._same_pad(3) == (1, 1, 1, 1)
    level = lapsrn.LapSRNLevel(features=2, depth=1)
    with torch.no_grad():
        level.image.weight.zero_()
        level.image.weight[:, 0, 1, 1] = 1.0  # the tap at offset 0 with TF's padding
        level.upsample.weight.zero_()
    img = torch.arange(12.0).reshape(1, 1, 3, 4)
    out, res = level(img, img)
    assert torch.equal(res, torch.zeros(1, 1, 6, 8))
    assert torch.equal(out, F.pixel_shuffle(img.repeat(1, 4, 1, 1), 2))  # each pixel copied


# --------------------------------------------------------------------------------------
# EDSR
# --------------------------------------------------------------------------------------


def _edsr_reference(s: dict[str, torch.Tensor], x: torch.Tensor, res_scale: float) -> torch.Tensor:
    """EDSR-PyTorch's forward written out from the state dict (rgb_range 255)."""

    def conv(h: torch.Tensor, key: str) -> torch.Tensor:
        w = s[f"{key}.weight"]
        return F.conv2d(h, w, s[f"{key}.bias"], padding=w.shape[-1] // 2)

    n = sum(1 for k in s if k.endswith(".body.0.weight"))
    h = conv(conv(x * 255, "sub_mean"), "head.0")
    skip = h
    for i in range(n):
        h = h + res_scale * conv(F.relu(conv(h, f"body.{i}.body.0")), f"body.{i}.body.2")
    h = conv(h, f"body.{n}") + skip
    for i in (0, 2, 4):
        if f"tail.0.{i}.weight" in s:
            out = s[f"tail.0.{i}.weight"].shape[0] // s[f"tail.0.{i}.weight"].shape[1]
            h = F.pixel_shuffle(conv(h, f"tail.0.{i}"), int(round(out**0.5)))
    return conv(conv(h, "tail.1"), "add_mean") / 255


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_edsr_matches_edsr_pytorch_forward(scale: int) -> None:
    module = tiny("edsr", scale).eval()
    s = module.state_dict()
    assert torch.allclose(s["sub_mean.bias"], -255 * torch.tensor(edsr.DIV2K_RGB_MEAN))
    assert torch.allclose(s["add_mean.bias"], 255 * torch.tensor(edsr.DIV2K_RGB_MEAN))
    assert not any(p.requires_grad for p in module.sub_mean.parameters())
    x = _input("edsr")
    with torch.inference_mode():
        torch.testing.assert_close(module(x), _edsr_reference(s, x, 1.0), atol=1e-5, rtol=0)


def _edsr_zeros(features: int, blocks: int, scale: int) -> dict[str, torch.Tensor]:
    """An EDSR-PyTorch state dict of zeros (shapes only), without the mean shifts."""
    f = features
    state = {"head.0.weight": torch.zeros(f, 3, 3, 3), "head.0.bias": torch.zeros(f)}
    for i in range(blocks):
        for j in (0, 2):
            state[f"body.{i}.body.{j}.weight"] = torch.zeros(f, f, 3, 3)
            state[f"body.{i}.body.{j}.bias"] = torch.zeros(f)
    state[f"body.{blocks}.weight"] = torch.zeros(f, f, 3, 3)
    state[f"body.{blocks}.bias"] = torch.zeros(f)
    stages = [(0, 9)] if scale == 3 else [(2 * k, 4) for k in range(scale.bit_length() - 1)]
    for i, mult in stages:
        state[f"tail.0.{i}.weight"] = torch.zeros(mult * f, f, 3, 3)
        state[f"tail.0.{i}.bias"] = torch.zeros(mult * f)
    state["tail.1.weight"] = torch.zeros(3, f, 3, 3)
    state["tail.1.bias"] = torch.zeros(3)
    return state


def test_edsr_res_scale_is_inferred_from_the_width_unless_the_metadata_says() -> None:
    paper = edsr.detect(_edsr_zeros(256, 1, 2))  # the 32 x 256 EDSR, cut to one block
    assert paper is not None and paper.scale == 2
    module = edsr.build(2, paper.state, paper.meta)
    module.load_state_dict(paper.state, strict=True)
    assert module.res_scale == 0.1 and module.body[0].res_scale == 0.1
    assert edsr.build(2, paper.state, {"res_scale": "1"}).res_scale == 1.0
    baseline = edsr.detect(_edsr_zeros(64, 1, 2))
    assert baseline is not None
    assert edsr.build(2, baseline.state, {}).res_scale == 1.0
    assert edsr.build(2, baseline.state, {"res_scale": "0.5"}).body[0].res_scale == 0.5
    with pytest.raises(WeightsError, match="res_scale"):
        edsr.build(2, baseline.state, {"res_scale": "big"})


def test_edsr_residual_scaling_is_applied(tmp_path: Path) -> None:
    module = edsr.EDSR(2, blocks=2, features=8, res_scale=0.1).eval()
    path = _save(tmp_path, module, "edsr", 2)
    loaded = load_model("edsr", 2, weights=path).module
    assert loaded.res_scale == 0.1  # from the metadata: 8 features alone would say 1.0
    x = _input("edsr")
    with torch.inference_mode():
        reference = _edsr_reference(module.state_dict(), x, 0.1)
        torch.testing.assert_close(loaded(x), reference, atol=1e-5, rtol=0)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_edsr_detect_reads_the_official_pt_layout(scale: int) -> None:
    """EDSR-PyTorch's state dict as saved (``module.`` prefixes, with or without the mean
    shifts): scale from the upsampler, output identical to the module it came from."""
    module = tiny("edsr", scale).eval()
    official = {f"module.{k}": v for k, v in module.state_dict().items()}
    found = edsr.detect(official)
    assert found is not None and found.scale == scale
    without = {k: v for k, v in module.state_dict().items() if "_mean" not in k}
    found2 = edsr.detect(without)
    assert found2 is not None and found2.scale == scale
    for det in (found, found2):
        rebuilt = edsr.build(scale, det.state, det.meta)
        rebuilt.load_state_dict(det.state, strict=True)
        x = _input("edsr")
        with torch.inference_mode():
            torch.testing.assert_close(rebuilt.eval()(x), module(x), atol=1e-6, rtol=0)


def test_edsr_detect_refuses_look_alikes() -> None:
    state = dict(tiny("edsr", 2).state_dict())
    rcan = {**state, "body.0.body.0.body.3.conv_du.0.weight": torch.zeros(1, 8, 1, 1)}
    assert edsr.detect(rcan) is None
    assert edsr.detect({k: v for k, v in state.items() if k != "body.2.weight"}) is None
    odd = {
        **state,
        "tail.0.0.weight": torch.zeros(5 * 8, 8, 3, 3),
        "tail.0.0.bias": torch.zeros(40),
    }
    assert edsr.detect(odd) is None


# --------------------------------------------------------------------------------------
# detect: own layouts in, others out
# --------------------------------------------------------------------------------------


def _foreign_states() -> dict[str, dict[str, torch.Tensor]]:
    states = {f"{n}-x{s}": dict(tiny(n, s).state_dict()) for n, s in CASES}
    states["espcn-x2"] = dict(espcn.ESPCN(2, features=(6, 4)).state_dict())
    states["fsrcnn-x3"] = dict(fsrcnn.FSRCNN(3, d=6, s=3, m=1).state_dict())
    states["fsrcnn-sub"] = dict(fsrcnn.FSRCNN(2, d=6, s=3, m=1, upsampler="subpixel").state_dict())
    states["empty"] = {}
    states["scalar"] = {"conv1.weight": torch.zeros(()), "head.0.weight": torch.zeros(())}
    return states


@pytest.mark.parametrize("name", ["srcnn", "vdsr", "lapsrn", "edsr"])
def test_detect_takes_its_own_layout_and_refuses_the_others(name: str) -> None:
    detect = get_spec(name).detect
    assert detect is not None
    for key, state in _foreign_states().items():
        found = detect(state)
        if not key.startswith(f"{name}-"):
            assert found is None, f"{name} detect took {key}"
            continue
        assert found is not None, f"{name} detect refused {key}"
        scale = int(key.split("-x")[1])
        assert found.scale == (None if name in ("srcnn", "vdsr") else scale)
        module = get_spec(name).build(scale, found.state, found.meta)
        module.load_state_dict(found.state, strict=True)


def test_vdsr_detect_maps_the_pytorch_vdsr_layout() -> None:
    """twtygqyy/pytorch-vdsr: ``input``, ``residual_layer.{i}.conv``, ``output``, no bias."""
    state = {"input.weight": torch.randn(8, 1, 3, 3), "output.weight": torch.randn(1, 8, 3, 3)}
    for i in range(3):
        state[f"module.residual_layer.{i}.conv.weight"] = torch.randn(8, 8, 3, 3)
    found = vdsr.detect(state)
    assert found is not None and found.scale is None and found.meta == {"scale": "any"}
    assert sorted(found.state) == [f"layers.{i}.weight" for i in range(5)]
    assert torch.equal(found.state["layers.0.weight"], state["input.weight"])
    assert torch.equal(found.state["layers.4.weight"], state["output.weight"])
    module = vdsr.build(4, found.state, found.meta)
    module.load_state_dict(found.state, strict=True)
    assert len(module.layers) == 5 and module.layers[2].bias is None
    del state["module.residual_layer.1.conv.weight"]
    assert vdsr.detect(state) is None  # a gap in the numbering


def test_srcnn_detect_takes_the_common_port_and_refuses_espcn() -> None:
    port = {
        "conv1.weight": torch.randn(64, 1, 9, 9),
        "conv1.bias": torch.randn(64),
        "conv2.weight": torch.randn(32, 64, 5, 5),
        "conv2.bias": torch.randn(32),
        "conv3.weight": torch.randn(1, 32, 5, 5),
        "conv3.bias": torch.randn(1),
    }
    found = srcnn.detect(port)
    assert found is not None and found.scale is None
    esp = {k: v for k, v in port.items()}
    esp["conv3.weight"], esp["conv3.bias"] = torch.randn(4, 32, 5, 5), torch.randn(4)
    assert srcnn.detect(esp) is None


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "trained", "asked", "match"),
    [
        ("edsr", 2, 3, r"for x2, not x3"),
        ("edsr", 4, 2, r"for x4, not x2"),
        ("lapsrn", 2, 4, r"for x2, not x4"),
        ("lapsrn", 8, 2, r"for x8, not x2"),
    ],
)
@pytest.mark.parametrize("with_scale", [True, False], ids=["meta-scale", "tensors-only"])
def test_wrong_scale_is_a_one_line_weights_error(
    tmp_path: Path, name: str, trained: int, asked: int, match: str, with_scale: bool
) -> None:
    path = _save(tmp_path, tiny(name, trained), name, trained if with_scale else None)
    with pytest.raises(WeightsError, match=match) as info:
        load_model(name, asked, weights=path)
    line = info.value.one_line()
    assert "\n" not in line and f"-x {trained}" in line


def test_other_mismatches_are_weights_errors(tmp_path: Path) -> None:
    rgb = srcnn.SRCNN(2, channels=3, features=(4, 2))
    with pytest.raises(WeightsError, match="3 channels"):
        load_model("srcnn", 2, weights=_save(tmp_path, rgb, "srcnn", 2))
    path = tmp_path / "espcn_as_srcnn.safetensors"
    write_safetensors(path, espcn.ESPCN(2).state_dict(), {"arch": "srcnn"})
    with pytest.raises(WeightsError, match="not SRCNN weights"):
        load_model("srcnn", 2, weights=path)
    write_safetensors(path, espcn.ESPCN(2).state_dict(), {})  # no arch: detect() decides
    with pytest.raises(WeightsError, match="srcnn"):
        load_model("srcnn", 2, weights=path)
    with pytest.raises(WeightsError, match="not VDSR weights"):
        vdsr.build(2, dict(tiny("lapsrn", 2).state_dict()), {})
    with pytest.raises(WeightsError, match="not LapSRN weights"):
        lapsrn.build(2, dict(tiny("vdsr", 2).state_dict()), {})
    with pytest.raises(WeightsError, match="not EDSR weights"):
        edsr.build(2, dict(tiny("srcnn", 2).state_dict()), {})
    with pytest.raises(UsageError, match="x3"):
        load_model("lapsrn", 3)


@pytest.mark.slow
def test_vsr_run_with_an_edsr_pytorch_pt_file(tmp_path: Path, clip_mp4: Path) -> None:
    """A state dict in EDSR-PyTorch's official layout, saved with torch.save as the
    official repository does, runs end to end with ``vsr run -m edsr --weights F.pt``."""
    import json
    import subprocess
    import sys

    from vsr.media.probe import probe

    module = tiny("edsr", 2)
    pt = tmp_path / "edsr_tiny_x2.pt"
    torch.save(module.state_dict(), pt)
    out = tmp_path / "edsr.mp4"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "vsr",
            "run",
            str(clip_mp4),
            "-o",
            str(out),
            "-m",
            "edsr",
            "-x",
            "2",
            "--weights",
            str(pt),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["frames_out"] == probe(clip_mp4).video.frame_count
    assert probe(out).video.width == probe(clip_mp4).video.width * 2
