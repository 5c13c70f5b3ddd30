"""Tiling, out-of-memory recovery and the x8 self-ensemble of the torch backend.

Tiled output must equal untiled output within one grey level (measured: identical uint8
planes, float differences below 1e-5, for bicubic, random ESPCN/FSRCNN and RGB nets with
the default 16-pixel overlap). Out-of-memory is simulated on the CPU by a module wrapper
that raises the allocator's error above a batch or size threshold: every frame must still
come out, identical to a run that had enough memory.
"""

from __future__ import annotations

import logging
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest
import torch
from torch import nn

from vsr.backends.ensemble import TRANSFORMS, forward_transform, inverse_transform
from vsr.backends.oom import OutOfMemoryError, is_oom
from vsr.backends.tiling import plan_axis, run_tiled
from vsr.backends.torch_backend import TorchBackend
from vsr.config import RunConfig, make_config
from vsr.errors import UsageError
from vsr.media.frame import Frame
from vsr.models.registry import REGISTRY, LoadedModel, get_spec, load_model
from vsr.models.spec import ModelSpec

# -- models -------------------------------------------------------------------------------


class TinyRGB(nn.Module):
    """A small RGB network (conv, ReLU, conv, pixel shuffle) that needs sizes % 4 == 0."""

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = scale
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 3 * scale * scale, 3, padding=1),
            nn.PixelShuffle(scale),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        assert h % 4 == 0 and w % 4 == 0, f"{h}x{w} is not padded to the size multiple"
        skip = torch.nn.functional.interpolate(x, scale_factor=self.scale, mode="nearest")
        return self.body(x) + skip


TINY_RGB = ModelSpec(
    "tinyrgb", "tinyrgb", (2, 3), 3, 4, True, True, "fast", "test", lambda s, *_: TinyRGB(s)
)


def _loaded(name: str, scale: int) -> LoadedModel:
    """A registered model, random-initialised where it needs weights."""
    torch.manual_seed(scale)
    if name == "tinyrgb":
        return LoadedModel(TinyRGB(scale).eval(), TINY_RGB, scale, "random")
    spec = get_spec(name)
    if not spec.needs_weights:
        return load_model(name, scale)
    if name == "edsr":  # a small EDSR: 2 blocks of 8 features, built from its tensors
        from vsr.models.archs.edsr import EDSR

        state = EDSR(scale, blocks=2, features=8).state_dict()
        module = spec.build(scale, state, {})
        module.load_state_dict(state)
        return LoadedModel(module.eval(), spec, scale, "random")
    return LoadedModel(spec.build(scale, None, {}).eval(), spec, scale, "random")


MODELS = [("bicubic", 3), ("espcn", 3), ("fsrcnn", 2), ("tinyrgb", 2)]
if "edsr" in REGISTRY:
    MODELS.append(("edsr", 2))


def _frames(n: int, h: int, w: int, seed: int = 0) -> list[Frame]:
    """Smooth random 4:2:0 frames (edges and gradients, not white noise)."""
    out = []
    for i in range(n):
        rng = np.random.default_rng(seed + i)
        planes = []
        for ph, pw in ((h, w), ((h + 1) // 2, (w + 1) // 2), ((h + 1) // 2, (w + 1) // 2)):
            small = rng.integers(16, 236, (ph // 3 + 2, pw // 3 + 2), dtype=np.uint8)
            planes.append(cv2.resize(small, (pw, ph), interpolation=cv2.INTER_CUBIC))
        out.append(Frame(i, i * 2, Fraction(1, 48), (planes[0], planes[1], planes[2]), "yuv420p"))
    return out


def _max_diff(a: list[Frame], b: list[Frame]) -> int:
    assert len(a) == len(b)
    worst = 0
    for fa, fb in zip(a, b, strict=True):
        assert (fa.index, fa.pts) == (fb.index, fb.pts)
        for pa, pb in zip(fa.planes, fb.planes, strict=True):
            assert pa.shape == pb.shape and pa.dtype == pb.dtype
            worst = max(worst, int(np.abs(pa.astype(int) - pb.astype(int)).max()))
    return worst


# -- the tile plan ------------------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 7, 16, 37, 100, 129])
@pytest.mark.parametrize("tile,overlap,multiple", [(8, 0, 1), (16, 4, 1), (10, 6, 4), (32, 16, 8)])
def test_plan_covers_each_pixel_once_with_full_context(length, tile, overlap, multiple):
    plan = plan_axis(length, tile=tile, overlap=overlap, multiple=multiple)
    covered = [c for a, b in plan.cores for c in range(a, b)]
    assert covered == list(range(length))  # cores partition the axis, in order
    assert plan.size == length or plan.size % multiple == 0
    for start, (a, b) in zip(plan.starts, plan.cores, strict=True):
        assert start >= 0 and start + plan.size <= length  # windows stay inside
        assert b - a <= tile
        # at least `overlap` real pixels on each side, or the frame's own border
        assert a - start >= overlap or start == 0
        assert start + plan.size - b >= overlap or start + plan.size == length


# -- tiled == untiled ---------------------------------------------------------------------


@pytest.mark.parametrize("name,scale", MODELS)
def test_tiled_output_equals_untiled(name, scale):
    model = _loaded(name, scale)
    frames = _frames(2, 37, 50)
    whole = TorchBackend(model, device="cpu").upscale(frames)
    tiled_backend = TorchBackend(model, device="cpu", tile=16, tile_batch=3)
    tiled = tiled_backend.upscale(frames)
    assert _max_diff(whole, tiled) <= 1
    # the network's own float output, before quantisation, agrees too
    x = torch.from_numpy(frames[0].planes[0][None, None] / 255.0).float()
    if model.spec.channels == 3:
        x = x.expand(1, 3, -1, -1)
    ref = TorchBackend(model, device="cpu").run_model(x)
    got = tiled_backend.run_model(x)
    assert torch.allclose(ref, got, atol=1e-4), float((ref - got).abs().max())


def test_tiles_are_batched_and_padded_to_the_size_multiple():
    model = _loaded("tinyrgb", 2)
    seen: list[tuple[int, ...]] = []
    inner = model.module

    class Spy(nn.Module):
        def forward(self, x):
            seen.append(tuple(x.shape))
            return inner(x)  # TinyRGB asserts sizes % 4 == 0

    spy = LoadedModel(Spy().eval(), model.spec, 2, "spy")
    frames = _frames(2, 30, 45)
    out = TorchBackend(spy, device="cpu", tile=12, tile_overlap=4, tile_batch=5).upscale(frames)
    assert max(s[0] for s in seen) == 5  # several tiles per forward pass
    assert sum(s[0] for s in seen) == 2 * 3 * 4  # 3 x 4 tiles per frame, two frames
    assert all(s[-1] % 4 == 0 and s[-2] % 4 == 0 for s in seen)
    assert all(s[-2:] == seen[0][-2:] for s in seen)  # one window size: they batch
    assert out[0].width == 90 and out[0].height == 60


def test_run_tiled_refuses_a_model_of_another_scale():
    with pytest.raises(ValueError, match="x2"):
        run_tiled(lambda t: t, torch.zeros(1, 1, 20, 20), scale=2, tile=8, overlap=2)


# -- out of memory ------------------------------------------------------------------------


class OOMAbove(nn.Module):
    """Raises the allocator's error for more than ``items`` inputs or ``pixels`` per input."""

    def __init__(
        self, inner: nn.Module, *, items: int = 10**9, pixels: int = 10**9, mps: bool = False
    ):
        super().__init__()
        self.inner = inner
        self.items, self.pixels, self.mps = items, pixels, mps
        self.failures = 0

    def forward(self, x):
        if x.shape[0] > self.items or x.shape[-1] * x.shape[-2] > self.pixels:
            self.failures += 1
            if self.mps:
                raise RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)")
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return self.inner(x)


def _oom_backend(name: str, scale: int, **limits) -> tuple[TorchBackend, OOMAbove]:
    model = _loaded(name, scale)
    backend = TorchBackend(
        LoadedModel(OOMAbove(model.module, **limits), model.spec, scale, "oom"), device="cpu"
    )
    # the backend runs a copy when it rewrites a layer for inference (FSRCNN's deconvolution)
    wrapper = backend.module
    assert isinstance(wrapper, OOMAbove)
    return backend, wrapper


def test_oom_halves_the_batch_and_drops_no_frame(caplog):
    frames = _frames(6, 24, 32)
    reference = TorchBackend(_loaded("espcn", 2), device="cpu").upscale(frames)
    backend, wrapper = _oom_backend("espcn", 2, items=2)
    with caplog.at_level(logging.WARNING, logger="vsr"):
        out = backend.upscale(frames)
    assert wrapper.failures == 2  # 6 -> 3 -> 1 frames per pass
    assert backend.frames_per_pass == 1 and backend.tile == 0
    assert _max_diff(out, reference) == 0  # every frame, identical
    assert "out of memory" in caplog.text and "frames per pass" in caplog.text
    # the lower setting stays: the next batch does not fail again
    assert _max_diff(backend.upscale(frames[:4]), reference[:4]) == 0
    assert wrapper.failures == 2


@pytest.mark.parametrize("mps", [False, True])
def test_oom_at_one_frame_switches_to_tiles(mps):
    frames = _frames(2, 32, 48)
    reference = TorchBackend(_loaded("fsrcnn", 2), device="cpu").upscale(frames)
    # neither whole frames (32x48) nor 32 px tiles (32x40 windows) fit; 16 px (32x32) do
    backend, wrapper = _oom_backend("fsrcnn", 2, pixels=1100, mps=mps)
    backend.tile_overlap = 8
    out = backend.upscale(frames)
    assert backend.tile == 16 and wrapper.failures == 3  # 2 frames, 1 frame, 32 px tiles
    assert _max_diff(out, reference) <= 1
    # identical to a run that started with the settings the recovery ended with
    plain = TorchBackend(
        _loaded("fsrcnn", 2), device="cpu", tile=16, tile_overlap=8, tile_batch=1
    ).upscale(frames)
    assert _max_diff(out, plain) == 0


def test_oom_everywhere_is_one_line_saying_what_was_tried():
    backend, _ = _oom_backend("bicubic", 2, pixels=4)
    with pytest.raises(OutOfMemoryError) as err:
        backend.upscale(_frames(2, 40, 40))
    line = err.value.one_line()
    assert "\n" not in line and "out of memory" in line
    assert "2 -> 1 frames per pass" in line and "whole frames -> 32 px tiles" in line
    assert "tiles 32 -> 16 px" in line
    assert err.value.exit_code == 1


def test_other_runtime_errors_are_not_retried():
    class Broken(nn.Module):
        calls = 0

        def forward(self, x):
            Broken.calls += 1
            raise RuntimeError("Given groups=1, weight of size [8, 3, 3, 3]")

    spec = get_spec("bicubic")
    backend = TorchBackend(LoadedModel(Broken(), spec, 2, "x"), device="cpu")
    with pytest.raises(RuntimeError, match="groups=1"):
        backend.upscale(_frames(2, 8, 8))
    assert Broken.calls == 1
    assert is_oom(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried"))
    assert not is_oom(ValueError("out of memory"))


def test_oom_in_the_pipeline_keeps_every_frame(clip_no_audio, tmp_path):
    """The model stage of ``vsr run`` recovers: same frames, same pixels (lossless x264)."""
    from vsr.pipeline.engine import execute, prepare, run

    ref = tmp_path / "ref.mkv"
    run(
        RunConfig.from_values(
            dict(
                input=clip_no_audio,
                output=ref,
                model="bicubic",
                scale=2,
                crf=0,
                quiet=True,
                backend="torch",
            )  # fmt: skip
        )
    )
    out = tmp_path / "oom.mkv"
    cfg = RunConfig.from_values(
        dict(
            input=clip_no_audio,
            output=out,
            model="bicubic",
            scale=2,
            crf=0,
            batch_size=4,
            quiet=True,
            backend="torch",  # out-of-memory recovery is the torch backend's (GPUs)
        )
    )
    job = prepare(cfg)
    assert isinstance(job.backend, TorchBackend)
    wrapper = OOMAbove(job.backend.module, items=1)
    job.backend.module = wrapper
    report = execute(job)
    assert wrapper.failures >= 1 and job.backend.frames_per_pass == 1
    assert report.frames_in == report.frames_out == 12
    assert _decoded(out) == _decoded(ref)


def _decoded(path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [f.to_ndarray().tobytes() for f in c.decode(video=0)]


# -- self-ensemble ------------------------------------------------------------------------


def test_self_ensemble_equals_the_manual_average():
    model = _loaded("espcn", 2)
    x = torch.rand(2, 1, 13, 17)
    got = TorchBackend(model, device="cpu", self_ensemble=True).run_model(x)
    outs = []
    with torch.inference_mode():
        for k in range(4):
            for flip in (False, True):
                t = torch.rot90(x.flip(-1) if flip else x, k, dims=(-2, -1))
                y = torch.rot90(model.module(t), -k, dims=(-2, -1))
                outs.append(y.flip(-1) if flip else y)
    manual = torch.stack(outs).mean(0)
    assert got.shape == (2, 1, 26, 34)
    assert torch.allclose(got, manual, atol=1e-6)
    assert not torch.allclose(got, model.module(x), atol=1e-3)  # it did something
    assert len(TRANSFORMS) == 8
    for k, flip in TRANSFORMS:
        assert torch.equal(inverse_transform(forward_transform(x, k, flip), k, flip), x)


def test_self_ensemble_of_bicubic_changes_nothing_but_rounding():
    model = _loaded("bicubic", 3)
    frames = _frames(2, 21, 26)
    plain = TorchBackend(model, device="cpu").upscale(frames)
    ens = TorchBackend(model, device="cpu", self_ensemble=True)
    assert _max_diff(plain, ens.upscale(frames)) <= 1
    x = torch.rand(1, 1, 11, 14)
    assert torch.allclose(ens.run_model(x), model.module(x), atol=1e-5)


def test_run_with_tiles_and_self_ensemble(clip_no_audio, tmp_path):
    from vsr.pipeline.engine import run

    out = tmp_path / "ens.mkv"
    ref = tmp_path / "ref.mkv"
    common = dict(input=clip_no_audio, model="bicubic", scale=2, crf=0, quiet=True)
    run(RunConfig.from_values(dict(output=ref, **common)))
    report = run(
        RunConfig.from_values(
            dict(output=out, tile=32, tile_overlap=8, self_ensemble=True, **common)
        )
    )
    assert report.frames_out == 12 and "self-ensemble" in report.device
    a, b = _decoded(ref), _decoded(out)
    worst = max(
        int(np.abs(np.frombuffer(x, np.uint8).astype(int) - np.frombuffer(y, np.uint8)).max())
        for x, y in zip(a, b, strict=True)
    )
    assert len(a) == len(b) and worst <= 1


# -- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags,match",
    [
        ({"tile": 4}, "at least 8"),
        ({"tile": 64, "tile_overlap": -1}, "overlap"),
        ({"backend": "onnx"}, "unknown backend"),
        ({"backend": "opencv", "tile": 64}, "--tile needs the torch backend"),
        ({"backend": "opencv", "self_ensemble": True}, "--self-ensemble needs"),
    ],
)
def test_bad_tiling_or_backend_options_are_usage_errors(tmp_path, flags, match):
    with pytest.raises(UsageError, match=match):
        make_config({"input": tmp_path / "x.mp4", **flags})


def test_config_file_sets_tiling(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text("[run]\ntile = 128\ntile_overlap = 24\nself_ensemble = true\n")
    cfg = make_config({"input": tmp_path / "x.mp4", "tile": None}, toml)
    opts = cfg.inference
    assert (opts.tile, opts.tile_overlap, opts.self_ensemble) == (128, 24, True)
    cfg = make_config({"input": tmp_path / "x.mp4", "tile": 64}, toml)
    assert cfg.inference.tile == 64
