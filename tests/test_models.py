"""Registry, architectures, interpolation accuracy, weights I/O and the torch backend."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from vsr.backends.torch_backend import TorchBackend
from vsr.errors import UnknownModelError, UsageError, WeightsError
from vsr.media.frame import ColorInfo, Frame
from vsr.models.registry import REGISTRY, get_spec, load_model
from vsr.models.weights import read_safetensors, write_safetensors


def test_registry_lists_the_issue_models():
    assert {"nearest", "bilinear", "bicubic", "lanczos", "fsrcnn", "espcn"} <= set(REGISTRY)


def test_unknown_model_lists_known_names():
    with pytest.raises(UnknownModelError) as err:
        get_spec("nosuchnet")
    assert "espcn" in err.value.one_line() and "bicubic" in err.value.one_line()


def test_unsupported_scale_is_a_usage_error():
    with pytest.raises(UsageError, match="x5"):
        load_model("espcn", 5)


@pytest.mark.parametrize("name", ["espcn", "fsrcnn"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_architectures_upscale_by_their_scale(name, scale):
    module = get_spec(name).build(scale, None, {})
    x = torch.rand(2, 1, 13, 17)
    y = module(x)
    assert y.shape == (2, 1, 13 * scale, 17 * scale)


@pytest.mark.parametrize(
    "name,flag",
    [("nearest", cv2.INTER_NEAREST), ("bilinear", cv2.INTER_LINEAR), ("bicubic", cv2.INTER_CUBIC)],
)
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_interpolation_matches_opencv(name, flag, scale):
    rng = np.random.default_rng(scale)
    img = rng.integers(0, 256, (23, 31)).astype(np.float32)
    ref = cv2.resize(img, None, fx=scale, fy=scale, interpolation=flag)
    out = load_model(name, scale).module(torch.from_numpy(img)[None, None])[0, 0].numpy()
    # cv2 computes bilinear/bicubic weights in fixed point for some paths: allow 0.5 level
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() < 0.5


def test_lanczos_keeps_constants_and_ramps_and_is_sharper_than_bilinear():
    model = load_model("lanczos", 3).module
    flat = torch.full((1, 1, 9, 9), 0.3)
    assert torch.allclose(model(flat), torch.full((1, 1, 27, 27), 0.3), atol=1e-6)
    ramp = torch.arange(20, dtype=torch.float32).repeat(20, 1)[None, None]
    out = model(ramp)[0, 0, 10]
    expected = (torch.arange(60, dtype=torch.float32) + 0.5) / 3 - 0.5
    # Lanczos-3 reproduces a ramp to within 2% of a grey step (it is not exactly linear)
    assert torch.allclose(out[9:-9], expected[9:-9], atol=0.02)
    # a smooth signal sampled at LR pixel centres is rebuilt better than by bilinear
    yy, xx = np.mgrid[0:48, 0:48].astype(np.float32)
    hr = np.sin(2 * np.pi * xx / 13) * np.cos(2 * np.pi * yy / 17)
    lr = torch.from_numpy(hr[1::3, 1::3].copy())[None, None]
    err_l = np.abs(model(lr)[0, 0].numpy() - hr)[6:-6, 6:-6].mean()
    err_b = np.abs(load_model("bilinear", 3).module(lr)[0, 0].numpy() - hr)[6:-6, 6:-6].mean()
    assert err_l < err_b


def test_safetensors_round_trip_infers_hyperparameters(tmp_path: Path):
    module = get_spec("fsrcnn").build(2, None, {})
    path = tmp_path / "f.safetensors"
    write_safetensors(path, module.state_dict(), {"arch": "fsrcnn", "scale": 2})
    loaded = load_model("fsrcnn", 2, weights=path)
    x = torch.rand(1, 1, 8, 8)
    assert torch.equal(loaded.module(x), module.eval()(x))
    state, meta = read_safetensors(path)
    assert meta["arch"] == "fsrcnn" and meta["scale"] == "2"


def test_weights_for_another_scale_or_arch_are_refused(tmp_path: Path):
    module = get_spec("espcn").build(2, None, {})
    path = tmp_path / "e.safetensors"
    write_safetensors(path, module.state_dict(), {"arch": "espcn", "scale": 2})
    with pytest.raises(WeightsError, match="x2"):
        load_model("espcn", 3, weights=path)
    with pytest.raises(WeightsError, match="espcn"):
        load_model("fsrcnn", 2, weights=path)


def test_unreadable_weights_are_a_clean_error(tmp_path: Path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(WeightsError):
        load_model("espcn", 3, weights=bad)
    with pytest.raises(WeightsError, match="not found"):
        load_model("espcn", 3, weights=tmp_path / "missing.safetensors")
    other = tmp_path / "w.pth"
    other.write_bytes(b"x")
    with pytest.raises(WeightsError, match="unsupported"):
        load_model("espcn", 3, weights=other)


def _frame(i: int, h: int, w: int, fmt: str = "yuv420p", seed: int = 0) -> Frame:
    rng = np.random.default_rng(seed + i)
    ch, cw = (h + 1) // 2, (w + 1) // 2
    if fmt == "yuv444p":
        ch, cw = h, w
    dtype, peak = (np.uint16, 1023) if fmt.endswith("10le") else (np.uint8, 255)
    planes = (
        rng.integers(0, peak + 1, (h, w)).astype(dtype),
        rng.integers(0, peak + 1, (ch, cw)).astype(dtype),
        rng.integers(0, peak + 1, (ch, cw)).astype(dtype),
    )
    return Frame(i, i * 1001, Fraction(1, 30000), planes, fmt)


@pytest.mark.parametrize("fmt", ["yuv420p", "yuv444p", "yuv420p10le"])
def test_backend_keeps_order_timestamps_format_and_scales_every_plane(fmt):
    backend = TorchBackend(load_model("nearest", 2), device="cpu")
    frames = [_frame(i, 7, 9, fmt) for i in range(3)]
    out = backend.upscale(frames)
    assert [f.pts for f in out] == [0, 1001, 2002]
    assert [f.index for f in out] == [0, 1, 2]
    for src, dst in zip(frames, out, strict=True):
        assert dst.pix_fmt == fmt
        for a, b in zip(src.planes, dst.planes, strict=True):
            assert b.dtype == a.dtype
            # nearest x2 is exact pixel replication: the backend must round-trip values
            assert np.array_equal(b, np.repeat(np.repeat(a, 2, 0), 2, 1))


def test_backend_luma_model_resizes_chroma_bicubic():
    backend = TorchBackend(load_model("bicubic", 3), device="cpu")
    f = _frame(0, 16, 16)
    out = backend.upscale([f])[0]
    ref = cv2.resize(
        f.planes[1].astype(np.float32), None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC
    )
    assert np.abs(out.planes[1].astype(np.float32) - np.clip(np.round(ref), 0, 255)).max() <= 1


def test_backend_grey_stays_grey_for_a_luma_model():
    module = get_spec("espcn").build(2, None, {})
    from vsr.models.registry import LoadedModel

    backend = TorchBackend(LoadedModel(module.eval(), get_spec("espcn"), 2, "random"), device="cpu")
    f = _frame(0, 10, 12)
    f.planes[1][:] = 128
    f.planes[2][:] = 128
    out = backend.upscale([f])[0]
    assert (out.planes[1] == 128).all() and (out.planes[2] == 128).all()


def test_fp16_on_cpu_is_refused_with_a_hint():
    with pytest.raises(UsageError, match="fp16"):
        TorchBackend(load_model("bicubic", 2), device="cpu", precision="fp16")


def test_cuda_requested_without_cuda_is_a_clean_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    from vsr.errors import DeviceError

    with pytest.raises(DeviceError):
        TorchBackend(load_model("bicubic", 2), device="cuda")


def test_rgb_path_round_trips_colour_with_the_stream_matrix():
    """An identity RGB model must give back the input YUV (within quantisation)."""
    from torch import nn

    from vsr.models.registry import LoadedModel
    from vsr.models.spec import ModelSpec

    class Nearest3(nn.Module):
        def forward(self, x):
            return torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")

    spec = ModelSpec(
        "rgbid", "rgbid", (2,), 3, 1, True, True, "fast", "test", lambda *a: Nearest3()
    )
    for color in (
        ColorInfo("bt709", "tv"),
        ColorInfo("bt470bg", "pc"),
        ColorInfo("bt2020nc", "tv"),
    ):
        backend = TorchBackend(LoadedModel(Nearest3(), spec, 2, "test"), device="cpu", color=color)
        f = _frame(0, 8, 8, "yuv444p")
        lo, hi = (16, 235) if color.range == "tv" else (0, 255)
        for p in f.planes:
            np.clip(p, lo + 20, hi - 20, out=p)  # stay inside the RGB gamut's easy part
        f.planes[1][:] = 128 + (f.planes[1].astype(int) - 128) // 8
        f.planes[2][:] = 128 + (f.planes[2].astype(int) - 128) // 8
        out = backend.upscale([f])[0]
        ref = np.repeat(np.repeat(f.planes[0], 2, 0), 2, 1).astype(int)
        assert np.abs(out.planes[0].astype(int) - ref).max() <= 1, color


@pytest.mark.parametrize("bits", [8, 10])
@pytest.mark.parametrize(
    "color",
    [
        ColorInfo("bt709", "tv"),
        ColorInfo("bt470bg", "pc"),
        ColorInfo("bt2020nc", "tv"),
        ColorInfo(None, None),
    ],
)
def test_device_colour_conversion_matches_the_float64_reference(color, bits):
    from vsr.backends.color import rgb_to_yuv, yuv_to_rgb
    from vsr.media import color as ref

    peak = (1 << bits) - 1
    rng = np.random.default_rng(bits)
    planes = [rng.integers(0, peak + 1, (6, 7)) for _ in range(3)]
    expected = ref.yuv_to_rgb(*planes, color, bits, clip=False)  # (H, W, 3) float64
    x = torch.from_numpy(np.stack(planes)[None] / peak)
    got = yuv_to_rgb(x, color, height=6, bit_depth=bits)[0].permute(1, 2, 0).numpy()
    assert np.abs(got - expected).max() < 1e-9
    back = rgb_to_yuv(
        yuv_to_rgb(x, color, height=6, bit_depth=bits), color, height=6, bit_depth=bits
    )
    assert torch.allclose(back, x, atol=1e-9)
