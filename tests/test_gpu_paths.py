"""The GPU data path of the torch backend, tested for its logic on the CPU.

Covers: colour conversion on the device against the float64 reference, quantisation on
the device (rounding, clamping), the staging-buffer pool, ``upscale`` through the pool
being bit-identical to the plain path, ``compile`` (with its fallback), and the ``auto``
codec choice with NVENC's option mapping. Tests marked ``cuda`` run only with a GPU.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from vsr.backends.color import rgb_to_yuv, yuv_to_rgb
from vsr.backends.options import COMPILE_MODES
from vsr.backends.torch_backend import TorchBackend
from vsr.backends.transfer import StagingBuffer, StagingPool
from vsr.config import RunConfig, load_config_file, make_config
from vsr.errors import UsageError
from vsr.media import codecs as codec_mod
from vsr.media import color as ref
from vsr.media import encode as writer_mod
from vsr.media.codecs import check_encoder, encoder_available, resolve_codec
from vsr.media.encode import NVENC_PRESETS, nvenc_options
from vsr.media.frame import ColorInfo, Frame
from vsr.media.probe import probe
from vsr.media.reader import Reader
from vsr.media.writer import Writer
from vsr.models.registry import LoadedModel, get_spec, load_model
from vsr.models.spec import ModelSpec

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs CUDA")


@pytest.fixture
def exact_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """Same convolution algorithm and no TF32 in both backends compared (restored after)."""
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)


# -- helpers --------------------------------------------------------------------------------


def _frame(i: int, h: int, w: int, fmt: str = "yuv420p", seed: int = 0) -> Frame:
    rng = np.random.default_rng(seed * 1000 + i)
    ch, cw = (h, w) if fmt.startswith("yuv444") else ((h + 1) // 2, (w + 1) // 2)
    dtype, peak = (np.uint16, 1023) if fmt.endswith("10le") else (np.uint8, 255)
    planes = (
        rng.integers(0, peak + 1, (h, w)).astype(dtype),
        rng.integers(0, peak + 1, (ch, cw)).astype(dtype),
        rng.integers(0, peak + 1, (ch, cw)).astype(dtype),
    )
    return Frame(i, i * 1001, Fraction(1, 30000), planes, fmt)


class _RGBNet(nn.Module):
    """A small RGB x2 network with fixed random weights (3 -> 12 -> pixel shuffle)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 12, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x)) * 0.5 + 0.25


def _rgb_model() -> LoadedModel:
    spec = ModelSpec("rgbnet", "rgbnet", (2,), 3, 1, True, True, "fast", "test", _build_rgb)
    return LoadedModel(_RGBNet().eval(), spec, 2, "test")


def _build_rgb(*_: Any) -> nn.Module:
    return _RGBNet()


def _luma_model() -> LoadedModel:
    torch.manual_seed(1)
    spec = get_spec("espcn")
    return LoadedModel(spec.build(2, None, {}).eval(), spec, 2, "random")


def _models() -> dict[str, LoadedModel]:
    return {"luma": _luma_model(), "planewise": load_model("bicubic", 2), "rgb": _rgb_model()}


# -- colour conversion on the device ----------------------------------------------------------

#: Largest error allowed against the float64 reference, in normalised units (one 8-bit
#: code value is 1/255 = 3.9e-3; one 10-bit code value 9.8e-4). float32 is exact to a few
#: ulps; float16 (11-bit mantissa) stays within one 8-bit code value; bfloat16 (8-bit
#: mantissa) within about 8 (the inputs themselves round by up to 2^-9).
COLOUR_TOL = {torch.float32: 1e-5, torch.float16: 4e-3, torch.bfloat16: 3e-2}
COLOUR_DTYPES = [torch.float32, torch.float16, torch.bfloat16]
MATRICES = ["smpte170m", "bt709", "bt2020nc"]  # BT.601, BT.709, BT.2020


def _yuv_codes(bits: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    peak = (1 << bits) - 1
    rng = np.random.default_rng(seed + bits)
    y, u, v = (rng.integers(0, peak + 1, (9, 11)) for _ in range(3))
    for p in (y, u, v):  # the extremes of every plane are in there too
        p[0, :2] = (0, peak)
    return y, u, v


@pytest.mark.parametrize("dtype", COLOUR_DTYPES, ids=str)
@pytest.mark.parametrize("bits", [8, 10])
@pytest.mark.parametrize("rng_name", ["tv", "pc"])
@pytest.mark.parametrize("matrix", MATRICES)
def test_yuv_to_rgb_matches_the_float64_reference(
    matrix: str, rng_name: str, bits: int, dtype: torch.dtype
) -> None:
    color = ColorInfo(matrix, rng_name)
    peak = (1 << bits) - 1
    planes = _yuv_codes(bits)
    expected = ref.yuv_to_rgb(*planes, color=color, bit_depth=bits, clip=False)  # (H, W, 3)
    x = torch.from_numpy(np.stack(planes)[None] / peak).to(dtype)
    got = yuv_to_rgb(x, color, height=9, bit_depth=bits)
    assert got.dtype == dtype
    err = np.abs(got[0].permute(1, 2, 0).double().numpy() - expected).max()
    assert err <= COLOUR_TOL[dtype], err


@pytest.mark.parametrize("dtype", COLOUR_DTYPES, ids=str)
@pytest.mark.parametrize("bits", [8, 10])
@pytest.mark.parametrize("rng_name", ["tv", "pc"])
@pytest.mark.parametrize("matrix", MATRICES)
def test_rgb_to_yuv_matches_the_float64_reference(
    matrix: str, rng_name: str, bits: int, dtype: torch.dtype
) -> None:
    color = ColorInfo(matrix, rng_name)
    peak = (1 << bits) - 1
    rgb = np.random.default_rng(bits).random((9, 11, 3))
    rgb[0, 0], rgb[0, 1] = 0.0, 1.0
    expected = np.stack(ref.rgb_to_yuv(rgb, color, bits, height=9)) / peak  # (3, H, W)
    x = torch.from_numpy(rgb.transpose(2, 0, 1)[None].copy()).to(dtype)
    got = rgb_to_yuv(x, color, height=9, bit_depth=bits)
    assert got.dtype == dtype
    err = np.abs(got[0].double().numpy() - expected).max()
    assert err <= COLOUR_TOL[dtype], err


@pytest.mark.parametrize("bits", [8, 10])
@pytest.mark.parametrize("color", [ColorInfo("bt709", "tv"), ColorInfo("bt2020nc", "pc")])
def test_colour_round_trip_in_float32(color: ColorInfo, bits: int) -> None:
    peak = (1 << bits) - 1
    x = torch.from_numpy(np.stack(_yuv_codes(bits, seed=5))[None] / peak).float()
    back = rgb_to_yuv(
        yuv_to_rgb(x, color, height=9, bit_depth=bits), color, height=9, bit_depth=bits
    )
    assert (back - x).abs().max().item() < 1e-5


def test_unspecified_matrix_follows_the_height() -> None:
    x = torch.rand(1, 3, 4, 4, dtype=torch.float64)
    sd = yuv_to_rgb(x, ColorInfo(), height=480)
    hd = yuv_to_rgb(x, ColorInfo(), height=720)
    assert torch.allclose(sd, yuv_to_rgb(x, ColorInfo("smpte170m", "tv"), height=480))
    assert torch.allclose(hd, yuv_to_rgb(x, ColorInfo("bt709", "tv"), height=720))


def test_cached_coefficients_made_in_inference_mode_serve_autograd() -> None:
    color = ColorInfo("bt709", "tv")
    with torch.inference_mode():
        yuv_to_rgb(torch.rand(1, 3, 2, 2), color, height=2)  # fills the cache
    x = torch.rand(1, 3, 2, 2, requires_grad=True)
    yuv_to_rgb(x, color, height=2).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


# -- quantisation on the device -----------------------------------------------------------------


def _quantise_ref(x: np.ndarray, peak: int) -> np.ndarray:
    """What the device does: float32 multiply, round half to even, clamp."""
    q = np.clip(np.rint(x.astype(np.float32) * np.float32(peak)), 0, peak)
    return q.astype(np.uint8 if peak == 255 else np.uint16)


def _host(x: np.ndarray, peak: int) -> np.ndarray:
    t = torch.from_numpy(np.asarray(x, dtype=np.float32).reshape(1, 1, 1, -1))
    out_dtype = np.dtype(np.uint8 if peak == 255 else np.uint16)
    return TorchBackend._to_host(t, float(peak), out_dtype)[0, 0]


@pytest.mark.parametrize("peak", [255, 1023])
def test_quantisation_rounds_to_nearest_at_every_half(peak: int) -> None:
    k = np.arange(peak, dtype=np.float64)
    half = ((k + 0.5) / peak).astype(np.float32)  # x * peak is k + 0.5 give or take an ulp
    below = np.nextafter(half, np.float32(0))
    above = np.nextafter(half, np.float32(1))
    x = np.concatenate([half, below, above, (k / peak).astype(np.float32)])
    got = _host(x, peak)
    assert got.dtype == (np.uint8 if peak == 255 else np.uint16)
    np.testing.assert_array_equal(got, _quantise_ref(x, peak))
    # clearly below / above the half: down / up
    np.testing.assert_array_equal(_host((k + 0.499) / peak, peak), k.astype(got.dtype))
    np.testing.assert_array_equal(_host((k + 0.501) / peak, peak), (k + 1).astype(got.dtype))
    # exact code values survive
    np.testing.assert_array_equal(_host(k / peak, peak), k.astype(got.dtype))


@pytest.mark.parametrize("peak", [255, 1023])
def test_quantisation_ties_go_to_even(peak: int) -> None:
    # 0.5 * peak is exactly k + 0.5 in float32 (127.5, 511.5): ties to even, as np.rint
    assert _host(np.array([0.5]), peak)[0] == (128 if peak == 255 else 512)
    # every x whose float32 product is exactly k + 0.5
    k = np.arange(peak, dtype=np.float64)
    x = ((k + 0.5) / peak).astype(np.float32)
    exact = x * np.float32(peak) == (k + 0.5).astype(np.float32)
    assert exact.sum() >= 5
    want = np.where(k[exact] % 2 == 0, k[exact], k[exact] + 1)
    np.testing.assert_array_equal(_host(x[exact], peak), want)


@pytest.mark.parametrize("peak", [255, 1023])
def test_quantisation_clamps_negatives_and_values_above_peak(peak: int) -> None:
    x = np.array([-1.0, -1e-9, -0.0, -0.5 / peak, 1.0, 1.0 + 0.49 / peak, 1.001, 2.0, 1e9])
    x = np.concatenate([x, [np.inf, -np.inf]])
    got = _host(x, peak)
    assert got.tolist() == [0, 0, 0, 0, peak, peak, peak, peak, peak, peak, 0]


def test_quantisation_of_half_precision_inputs() -> None:
    for dtype in (torch.float16, torch.bfloat16):
        x = torch.tensor([0.0, 0.25, 0.5, 1.0, 1.5, -0.25], dtype=dtype).view(1, 1, 1, -1)
        got = TorchBackend._to_host(x, 255.0, np.dtype(np.uint8))[0, 0]
        assert got.tolist() == [0, 64, 128, 255, 255, 0]  # 63.75 -> 64, 127.5 -> 128


@pytest.mark.parametrize("peak", [255, 1023])
def test_staged_download_equals_the_plain_download(peak: int) -> None:
    backend = TorchBackend(load_model("nearest", 2), device="cpu", staging=True)
    x = torch.rand(3, 1, 5, 7) * 1.2 - 0.1
    out_dtype = np.dtype(np.uint8 if peak == 255 else np.uint16)
    plain = TorchBackend._to_host(x, float(peak), out_dtype)
    staged = backend._finish_host(backend._start_host(x, float(peak)), out_dtype)
    assert staged.dtype == out_dtype
    np.testing.assert_array_equal(staged, plain)


# -- the staging pool --------------------------------------------------------------------------


class _FakeEvent:
    """Stands in for a CUDA event: pending until ``done``; counts the waits."""

    def __init__(self) -> None:
        self.done = False
        self.waits = 0

    def query(self) -> bool:
        return self.done

    def synchronize(self) -> None:
        self.waits += 1
        self.done = True


def test_pool_reuses_the_buffer_of_a_shape_and_dtype() -> None:
    pool = StagingPool(pin=False)
    a = pool.acquire((2, 4, 6), torch.uint8)
    assert a.busy and a.tensor.shape == (2, 4, 6) and a.tensor.dtype == torch.uint8
    assert a.array.shape == (2, 4, 6) and np.shares_memory(a.array, a.tensor.numpy())
    assert not a.tensor.is_pinned()
    pool.release(a)
    b = pool.acquire((2, 4, 6), torch.uint8)
    assert b is a and b.tensor.data_ptr() == a.tensor.data_ptr()
    pool.release(b)
    assert pool.allocations == 1 and len(pool) == 1


def test_pool_gives_a_new_buffer_for_another_shape_dtype_or_while_busy() -> None:
    pool = StagingPool(pin=False)
    a = pool.acquire((2, 4, 6), torch.uint8)
    other_shape = pool.acquire((2, 4, 8), torch.uint8)
    other_dtype = pool.acquire((2, 4, 6), torch.int16)
    busy_twin = pool.acquire((2, 4, 6), torch.uint8)  # ``a`` is still in use
    buffers = [a, other_shape, other_dtype, busy_twin]
    assert len({b.tensor.data_ptr() for b in buffers}) == 4
    assert other_dtype.tensor.dtype == torch.int16 and other_dtype.array.dtype == np.int16
    for b in buffers:
        pool.release(b)
    assert pool.acquire((2, 4, 6), torch.uint8) in (a, busy_twin)


def test_pool_is_bounded_per_key_and_in_keys() -> None:
    pool = StagingPool(pin=False, per_key=2, max_keys=3)
    held = [pool.acquire((4, 4), torch.uint8) for _ in range(3)]
    assert [b.pooled for b in held] == [True, True, False]  # the third is a one-off
    assert len(pool) == 2
    for b in held:
        pool.release(b)
    assert len(pool) == 2
    for n in range(5, 10):  # five more shapes: only the 3 most recent keys stay
        pool.release(pool.acquire((n, n), torch.uint8))
    assert len(pool.key_order()) == 3
    assert [k[0] for k in pool.key_order()] == [(7, 7), (8, 8), (9, 9)]
    before = pool.allocations
    pool.release(pool.acquire((4, 4), torch.uint8))  # evicted: made again
    assert pool.allocations == before + 1


def test_pool_never_evicts_a_key_in_use() -> None:
    pool = StagingPool(pin=False, max_keys=1)
    a = pool.acquire((3,), torch.uint8)
    b = pool.acquire((4,), torch.uint8)  # the only key is busy: the pool grows instead
    assert len(pool.key_order()) == 2 and a.busy and b.busy


def test_pool_waits_for_pending_copies_before_reuse() -> None:
    """A buffer whose copy is pending (its event not done) is never handed out unwaited:
    another buffer is made, and at the per-key bound the oldest is waited for."""
    pool = StagingPool(pin=False, per_key=2)
    a = pool.acquire((8,), torch.uint8)
    a.event = ev_a = _FakeEvent()  # as if a.record(stream) had queued a copy
    pool.release(a)
    b = pool.acquire((8,), torch.uint8)
    assert b is not a and ev_a.waits == 0  # a is still being copied: not handed out
    b.event = ev_b = _FakeEvent()
    pool.release(b)
    c = pool.acquire((8,), torch.uint8)  # both pending, bound reached: wait for one
    assert c in (a, b) and ev_a.waits + ev_b.waits == 1 and c.ready()
    pool.release(c)
    ev_a.done = ev_b.done = True
    d = pool.acquire((8,), torch.uint8)
    assert d in (a, b) and ev_a.waits + ev_b.waits == 1  # done: no wait


def test_pool_waits_for_pending_copies_before_eviction() -> None:
    pool = StagingPool(pin=False, max_keys=1)
    a = pool.acquire((2,), torch.uint8)
    a.event = ev = _FakeEvent()
    pool.release(a)
    pool.release(pool.acquire((3,), torch.uint8))
    assert ev.waits == 1 and pool.key_order() == [((3,), torch.uint8)]


def test_pool_argument_checks() -> None:
    with pytest.raises(ValueError):
        StagingPool(pin=False, per_key=0)
    assert StagingBuffer(torch.empty(1)).ready()


# -- upscale through the pool is bit-identical ---------------------------------------------------


@pytest.mark.parametrize("fmt", ["yuv420p", "yuv444p", "yuv420p10le"])
@pytest.mark.parametrize("kind", ["luma", "planewise", "rgb"])
def test_upscale_with_staging_is_bit_identical_to_the_plain_path(kind: str, fmt: str) -> None:
    model = _models()[kind]
    plain = TorchBackend(model, device="cpu", threads=1, staging=False)
    staged = TorchBackend(model, device="cpu", threads=1, staging=True)
    assert plain.staging is None and staged.staging is not None
    batches = [
        [_frame(i, 10, 13, fmt, seed=1) for i in range(3)],
        [_frame(i, 10, 13, fmt, seed=2) for i in range(3)],  # same shapes: buffers reused
        [_frame(i, 10, 13, fmt, seed=3) for i in range(2)],  # a shorter last batch
        [_frame(i, 7, 9, fmt, seed=4) for i in range(2)],  # another size
    ]
    assert staged.staging is not None
    allocations: list[int] = []
    kept: list[tuple[list[np.ndarray], list[np.ndarray]]] = []
    for batch in batches:
        want = plain.upscale(batch)
        got = staged.upscale(batch)
        allocations.append(staged.staging.allocations)
        for w, g in zip(want, got, strict=True):
            assert (g.index, g.pts, g.time_base, g.pix_fmt) == (
                w.index,
                w.pts,
                w.time_base,
                w.pix_fmt,
            )
            for a, b in zip(w.planes, g.planes, strict=True):
                assert b.dtype == a.dtype and b.shape == a.shape
                np.testing.assert_array_equal(b, a)
        returned = [p for f in got for p in f.planes]
        kept.append((returned, [p.copy() for p in returned]))
    assert allocations[0] > 0 and allocations[1] == allocations[0]  # same shapes: reused
    # frames already returned are never overwritten by later batches (buffers are reused)
    for returned, copies in kept:
        for a, b in zip(returned, copies, strict=True):
            np.testing.assert_array_equal(a, b)


def test_staging_is_off_on_the_cpu_by_default_and_description_unchanged() -> None:
    backend = TorchBackend(load_model("nearest", 2), device="cpu")
    assert backend.staging is None and backend._h2d is None and backend._d2h is None
    assert backend.description == "cpu float32"
    staged = TorchBackend(load_model("nearest", 2), device="cpu", staging=True)
    assert staged.staging is not None and not staged.staging.pin  # no pinning
    assert staged._h2d is None and staged._d2h is None  # no streams


# -- torch.compile ---------------------------------------------------------------------------------


def test_compile_mode_is_checked() -> None:
    with pytest.raises(UsageError, match="compile mode"):
        TorchBackend(load_model("nearest", 2), device="cpu", compile="fast")
    with pytest.raises(UsageError, match="compile mode"):
        make_config({"input": Path("in.mp4"), "compile": "max"})
    with pytest.raises(UsageError, match="torch backend"):
        make_config({"input": Path("in.mp4"), "compile": "default", "backend": "opencv"})
    assert RunConfig(Path("x")).inference.compile == "off" and COMPILE_MODES[0] == "off"
    assert make_config(
        {"input": Path("in.mp4"), "compile": "reduce-overhead"}
    ).inference.compile == ("reduce-overhead")


def test_compile_is_a_config_file_key(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('compile = "default"\n')
    assert load_config_file(path) == {"compile": "default"}
    assert make_config({"input": Path("in.mp4")}, path).inference.compile == "default"


def _tiny_conv_model() -> LoadedModel:
    torch.manual_seed(3)
    spec = get_spec("espcn")
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.PixelShuffle(2))
    return LoadedModel(net.eval(), spec, 2, "test")


@pytest.mark.slow
def test_compile_default_matches_eager_or_falls_back_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = _tiny_conv_model()
    x = torch.rand(2, 1, 6, 7)
    eager = TorchBackend(model, device="cpu", threads=1).run_model(x)
    with caplog.at_level(logging.WARNING, logger="vsr"):
        backend = TorchBackend(model, device="cpu", threads=1, compile="default")
        got = backend.run_model(x)
        again = backend.run_model(x)
    warned = [r for r in caplog.records if "torch.compile" in r.getMessage()]
    assert (got - eager).abs().max().item() <= 1e-4
    assert (again - eager).abs().max().item() <= 1e-4
    if warned:  # no compiler here: eager, said once
        assert len(warned) == 1 and backend._compiled is None
    else:
        assert backend._compiled is not None and "compiled (default)" in backend.description


def test_compile_failure_at_the_first_call_falls_back_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[torch.Tensor] = []

    def broken(x: torch.Tensor) -> torch.Tensor:
        calls.append(x)
        raise RuntimeError("InductorError: no working C++ compiler\nlong traceback")

    monkeypatch.setattr(torch, "compile", lambda module, mode=None: broken)
    model = _tiny_conv_model()
    frames = [_frame(i, 6, 7, seed=9) for i in range(2)]
    eager = TorchBackend(model, device="cpu", threads=1).upscale(frames)
    with caplog.at_level(logging.WARNING, logger="vsr"):
        backend = TorchBackend(model, device="cpu", threads=1, compile="reduce-overhead")
        got = backend.upscale(frames) + backend.upscale(frames)
    warned = [r.getMessage() for r in caplog.records if "torch.compile" in r.getMessage()]
    assert len(warned) == 1 and "no working C++ compiler" in warned[0]
    assert "long traceback" not in warned[0]
    assert len(calls) == 1 and backend._compiled is None
    for w, g in zip(eager + eager, got, strict=True):
        for a, b in zip(w.planes, g.planes, strict=True):
            np.testing.assert_array_equal(a, b)


def test_compile_failure_when_compiling_falls_back(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(module: nn.Module, mode: str | None = None) -> Any:
        raise RuntimeError("Dynamo is not supported on this Python")

    monkeypatch.setattr(torch, "compile", refuse)
    with caplog.at_level(logging.WARNING, logger="vsr"):
        backend = TorchBackend(load_model("nearest", 2), device="cpu", compile="default")
    assert backend._compiled is None
    assert sum("torch.compile" in r.getMessage() for r in caplog.records) == 1


def test_errors_of_the_model_itself_still_raise_with_compile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Broken(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise ValueError("bad weights")

    monkeypatch.setattr(torch, "compile", lambda module, mode=None: module)
    spec = get_spec("espcn")
    backend = TorchBackend(LoadedModel(Broken(), spec, 2, "x"), device="cpu", compile="default")
    with pytest.raises(ValueError, match="bad weights"):
        backend.run_model(torch.rand(1, 1, 4, 4))


# -- the auto codec and NVENC's options ----------------------------------------------------------


def test_auto_codec_is_libx264_without_nvenc() -> None:
    if codec_mod.encoder_opens("h264_nvenc"):
        pytest.skip("NVENC works on this machine")
    assert resolve_codec("auto", device="cpu") == "libx264"
    assert resolve_codec("auto", device="cuda") == "libx264"
    assert resolve_codec("auto", device="auto") == "libx264"
    hevc = "libx265" if encoder_available("libx265") else "libx264"
    assert resolve_codec("auto-hevc", device="cuda:0") == hevc
    # explicit encoders are never changed
    for codec in ("libx264", "libx265", "h264_nvenc", "libvpx-vp9"):
        assert resolve_codec(codec, device="cuda") == codec
    check_encoder("auto")  # accepted: it always has a fallback
    with pytest.raises(UsageError):
        check_encoder("no-such-encoder")
    # the default is the output container's usual encoder, never NVENC: libx264 for MP4
    assert RunConfig(Path("x")).codec is None
    assert resolve_codec(None, device="cuda", format_name="mp4") == "libx264"
    assert resolve_codec(None, device="cuda", format_name="webm") == "libvpx-vp9"


def test_auto_codec_picks_nvenc_only_on_cuda_when_it_opens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    probes: list[tuple[str, str]] = []

    def opens(codec: str, pix_fmt: str = "yuv420p") -> bool:
        probes.append((codec, pix_fmt))
        return True

    monkeypatch.setattr(codec_mod, "encoder_opens", opens)
    assert resolve_codec("auto", device="cuda") == "h264_nvenc"
    assert resolve_codec("auto-hevc", device="cuda:1", pix_fmt="yuv420p10le") == "hevc_nvenc"
    assert resolve_codec("auto", device="cuda", pix_fmt="yuv444p") == "h264_nvenc"
    assert probes == [
        ("h264_nvenc", "yuv420p"),
        ("hevc_nvenc", "p010le"),
        ("h264_nvenc", "yuv444p"),
    ]
    assert resolve_codec("auto", device="cpu") == "libx264" and len(probes) == 3
    assert resolve_codec("auto", device="mps") == "libx264"


def test_encoder_probe_opens_a_real_encoder_and_is_cached() -> None:
    assert codec_mod.encoder_opens("libx264")
    assert not codec_mod.encoder_opens("no-such-encoder")
    info = codec_mod.encoder_opens.cache_info()
    codec_mod.encoder_opens("libx264")
    assert codec_mod.encoder_opens.cache_info().hits == info.hits + 1


def test_nvenc_options_map_crf_and_presets() -> None:
    assert nvenc_options(None, None) == {}
    assert nvenc_options(23, "slow") == {"rc": "vbr", "cq": "23", "b": "0", "preset": "p5"}
    assert nvenc_options(0, None)["cq"] == "1"  # cq 0 would mean "automatic"
    assert nvenc_options(63, None)["cq"] == "51"  # NVENC's largest
    assert nvenc_options(None, "veryfast") == {"preset": "p2"}
    assert nvenc_options(None, "Medium") == {"preset": "p4"}
    assert nvenc_options(None, "p7") == {"preset": "p7"}  # NVENC's own names pass
    assert nvenc_options(None, "hq") == {"preset": "hq"}
    assert set(NVENC_PRESETS.values()) <= {f"p{i}" for i in range(1, 8)}
    order = ["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow"]
    order += ["slower", "veryslow", "placebo"]
    levels = [int(NVENC_PRESETS[p][1]) for p in order]
    assert levels == sorted(levels) and levels[0] == 1 and levels[-1] == 7
    # the writer's option builder uses the same table for both NVENC encoders
    for codec in ("h264_nvenc", "hevc_nvenc"):
        assert writer_mod._encoder_options(codec, 20, "fast") == nvenc_options(20, "fast")


def test_writer_with_auto_codec_encodes_with_libx264_here(
    clip_no_audio: Path, tmp_path: Path
) -> None:
    if codec_mod.encoder_opens("h264_nvenc"):
        pytest.skip("NVENC works on this machine")
    info = probe(clip_no_audio)
    out = tmp_path / "auto.mp4"
    writer = Writer(
        output=out,
        source=info,
        source_path=clip_no_audio,
        width=info.video.width,
        height=info.video.height,
        codec="auto",
        preset="ultrafast",
        device="cuda",  # asks for NVENC: it does not open here
    )
    assert writer.codec == "libx264"
    with Reader(clip_no_audio) as reader:
        for frame in reader.frames():
            writer.write_frame(frame)
    writer.close()
    assert probe(out).video.codec == "h264"


def test_writer_auto_gives_nvenc_the_software_default_quality(
    clip_no_audio: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When ``auto`` picks NVENC and no crf is given, NVENC gets cq 23 (x264's default
    crf) rather than its own bitrate default. NVENC cannot open here: the options it was
    given are looked at, and the clean EncoderError is expected."""
    if codec_mod.encoder_opens("h264_nvenc"):
        pytest.skip("NVENC works on this machine")
    from vsr.errors import EncoderError

    seen: list[tuple[str, int | None, str | None]] = []
    real = writer_mod._encoder_options

    def spy(codec: str, crf: int | None, preset: str | None) -> dict[str, str]:
        seen.append((codec, crf, preset))
        return real(codec, crf, preset)

    monkeypatch.setattr(codec_mod, "encoder_opens", lambda codec, pix_fmt="yuv420p": True)
    monkeypatch.setattr(writer_mod, "_encoder_options", spy)
    info = probe(clip_no_audio)
    for codec, crf, want in (("auto", None, 23), ("auto", 30, 30), ("h264_nvenc", None, None)):
        with pytest.raises(EncoderError, match="cannot open encoder h264_nvenc"):
            Writer(
                output=tmp_path / "nv.mp4",
                source=info,
                source_path=clip_no_audio,
                width=info.video.width,
                height=info.video.height,
                codec=codec,
                crf=crf,
                preset="slow",
                device="cuda",
            )
        assert seen[-1] == ("h264_nvenc", want, "slow")
    assert not list(tmp_path.iterdir())  # nothing left behind


# -- CUDA only -----------------------------------------------------------------------------------


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("fmt", ["yuv420p", "yuv444p", "yuv420p10le"])
@pytest.mark.parametrize("kind", ["luma", "planewise", "rgb"])
def test_cuda_side_stream_path_is_identical_to_the_plain_path(
    kind: str, fmt: str, exact_cuda: None
) -> None:
    model = _models()[kind]
    plain = TorchBackend(model, device="cuda", precision="fp32", staging=False)
    model = _models()[kind]  # a module of its own (the backend moves it)
    staged = TorchBackend(model, device="cuda", precision="fp32", staging=True)
    assert staged._h2d is not None and staged.staging is not None and staged.staging.pin
    outputs: list[tuple[list[Frame], list[np.ndarray]]] = []
    for seed in range(4):
        size = (64, 96) if seed < 3 else (40, 56)
        batch = [_frame(i, *size, fmt, seed=seed) for i in range(4)]
        want = plain.upscale(batch)
        got = staged.upscale(batch)
        for w, g in zip(want, got, strict=True):
            for a, b in zip(w.planes, g.planes, strict=True):
                assert b.dtype == a.dtype
                np.testing.assert_array_equal(b, a)
        outputs.append((got, [p.copy() for f in got for p in f.planes]))
    for got, copies in outputs:  # earlier results were not overwritten by later batches
        for a, b in zip([p for f in got for p in f.planes], copies, strict=True):
            np.testing.assert_array_equal(a, b)
    assert all(b.tensor.is_pinned() for bufs in staged.staging._buffers.values() for b in bufs)


@pytest.mark.cuda
@needs_cuda
def test_cuda_colour_conversion_in_half_precision() -> None:
    color = ColorInfo("bt709", "tv")
    planes = _yuv_codes(10)
    expected = ref.yuv_to_rgb(*planes, color=color, bit_depth=10, clip=False)
    x = torch.from_numpy(np.stack(planes)[None] / 1023).to("cuda", torch.float16)
    got = yuv_to_rgb(x, color, height=9, bit_depth=10)[0].permute(1, 2, 0)
    assert np.abs(got.double().cpu().numpy() - expected).max() <= COLOUR_TOL[torch.float16]


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_cuda_compile_matches_eager_or_falls_back(
    mode: str, caplog: pytest.LogCaptureFixture, exact_cuda: None
) -> None:
    frames = [_frame(i, 32, 48, seed=7) for i in range(2)]
    eager = TorchBackend(_tiny_conv_model(), device="cuda", precision="fp32")
    with caplog.at_level(logging.WARNING, logger="vsr"):
        compiled = TorchBackend(_tiny_conv_model(), device="cuda", precision="fp32", compile=mode)
        x = torch.rand(2, 1, 32, 48, device="cuda")
        a, b = compiled.run_model(x), compiled.run_model(x * 0.5)
    assert (a - eager.run_model(x)).abs().max().item() <= 1e-4
    assert (b - eager.run_model(x * 0.5)).abs().max().item() <= 1e-4  # a kept its values
    assert (a - eager.run_model(x)).abs().max().item() <= 1e-4
    out = compiled.upscale(frames)
    ref_out = eager.upscale(frames)
    for w, g in zip(ref_out, out, strict=True):
        for p, q in zip(w.planes, g.planes, strict=True):
            assert np.abs(p.astype(int) - q.astype(int)).max() <= 1
