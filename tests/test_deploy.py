"""Transposed convolutions rewritten as sub-pixel convolutions for inference (vsr.models.deploy).

The rewritten module must give the original's output (float32, within 1e-5) and shape, leave
non-expressible layers and the caller's module alone, and give the torch backend the same
frames as before.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from frame_checks import max_diff, smooth_frames
from torch import nn

import vsr.backends.torch_backend as torch_backend
from vsr.backends.torch_backend import TorchBackend
from vsr.models.deploy import inference_module, subpixel_from_deconv
from vsr.models.registry import LoadedModel, get_spec


@pytest.fixture(autouse=True)
def _threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _randomise(module: nn.Module, seed: int) -> nn.Module:
    """Random weights, scaled by fan-in so activations stay near 1 (a float32 tolerance of
    1e-5 then means something), and random biases (so a wrong bias layout shows)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            fan_in = p[0].numel() if p.ndim > 1 else 1
            std = 0.1 if p.ndim <= 1 else 1.5 / fan_in**0.5
            p.copy_(torch.randn(p.shape, generator=gen) * std)
    return module.eval()


def _deconvs(module: nn.Module) -> int:
    return sum(isinstance(m, nn.ConvTranspose2d) for m in module.modules())


def _same(a: nn.Module, b: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        ya, yb = a(x), b(x)
    assert ya.shape == yb.shape
    assert torch.allclose(ya, yb, rtol=0, atol=1e-5), float((ya - yb).abs().max())


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("size", [(13, 17), (16, 10)])
def test_fsrcnn_rewrite_matches(scale: int, size: tuple[int, int]) -> None:
    module = _randomise(get_spec("fsrcnn").build(scale, None, {}), scale)
    fast = inference_module(module)
    assert _deconvs(fast) == 0 and _deconvs(module) == 1
    assert any(isinstance(m, nn.PixelShuffle) for m in fast.modules())
    x = torch.rand(2, 1, *size)
    _same(module, fast, x)
    assert fast(x).shape == (2, 1, size[0] * scale, size[1] * scale)


# (kernel, stride, padding, output_padding): output s*H, larger, smaller, per-axis kernels
_LAYERS = [
    (9, 2, 4, 1),
    (9, 3, 3, 0),
    (9, 4, 3, 1),
    (4, 2, 1, 0),
    (3, 2, 1, 1),
    (3, 2, 0, 0),  # 2H+1: cropped extra samples
    (5, 3, 4, 2),  # 3H-1
    (7, 2, 6, 1),  # 2H-4: negative padding
    (2, 2, 0, 0),
    (1, 3, 2, 0),  # one tap
    (3, 1, 1, 0),  # stride 1: a flipped convolution, no shuffle
    ((5, 3), 2, (2, 0), (1, 1)),  # per-axis kernel and padding
    ((4, 9), 3, (1, 4), (0, 2)),
]


@pytest.mark.parametrize("k,s,p,op", _LAYERS)
@pytest.mark.parametrize("bias", [True, False])
def test_bare_deconv_rewrite_matches(k, s, p, op, bias: bool) -> None:
    torch.manual_seed(0)
    layer = nn.ConvTranspose2d(3, 2, k, stride=s, padding=p, output_padding=op, bias=bias)
    fast = subpixel_from_deconv(layer)
    assert fast is not None
    assert _deconvs(fast) == 0
    for h, w in [(7, 8), (5, 5), (6, 9)]:
        _same(layer, fast, torch.randn(2, 3, h, w))
    assert inference_module(layer) is not layer


def test_nested_and_shared_deconvs_are_all_rewritten() -> None:
    torch.manual_seed(1)
    up = nn.ConvTranspose2d(4, 4, 4, stride=2, padding=1)
    net = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.Sequential(up, nn.ReLU(), up),  # the same layer twice
        nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1),
    ).eval()
    fast = inference_module(net)
    assert _deconvs(fast) == 0 and _deconvs(net) == 2  # modules() counts `up` once
    assert fast[1][0] is fast[1][2]  # still shared
    _same(net, fast, torch.randn(1, 2, 5, 6))


@pytest.mark.parametrize(
    "layer",
    [
        nn.ConvTranspose2d(4, 2, 4, stride=2, padding=1, groups=2),
        nn.ConvTranspose2d(2, 2, 3, stride=2, padding=1, dilation=2),
        nn.ConvTranspose2d(2, 2, 3, stride=(2, 3), padding=1),
    ],
    ids=["groups2", "dilation2", "unequal-strides"],
)
def test_non_expressible_layers_are_kept(layer: nn.ConvTranspose2d) -> None:
    assert subpixel_from_deconv(layer) is None
    assert inference_module(layer) is layer
    net = nn.Sequential(nn.Identity(), layer)
    assert inference_module(net) is net  # nothing to rewrite: the module itself


def test_mixed_module_keeps_what_it_cannot_rewrite() -> None:
    torch.manual_seed(2)
    net = nn.Sequential(
        nn.ConvTranspose2d(4, 4, 3, stride=2, padding=1, output_padding=1, groups=2),
        nn.ConvTranspose2d(4, 1, 4, stride=2, padding=1),
    ).eval()
    fast = inference_module(net)
    assert isinstance(fast[0], nn.ConvTranspose2d) and fast[0].groups == 2
    assert not isinstance(fast[1], nn.ConvTranspose2d)
    _same(net, fast, torch.randn(1, 4, 5, 7))


def test_module_without_deconv_is_returned_as_is() -> None:
    module = get_spec("espcn").build(3, None, {})
    assert inference_module(module) is module


def test_callers_module_is_not_modified() -> None:
    module = _randomise(get_spec("fsrcnn").build(2, None, {}), 0)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    fast = inference_module(module)
    assert fast is not module
    assert isinstance(module.tail, nn.ConvTranspose2d)
    after = module.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    # the copy owns its tensors: changing it leaves the original alone
    with torch.no_grad():
        for p in fast.parameters():
            p.zero_()
    assert all(torch.equal(before[k], module.state_dict()[k]) for k in before)


def _fsrcnn(scale: int) -> LoadedModel:
    module = _randomise(get_spec("fsrcnn").build(scale, None, {}), 10 + scale)
    with torch.no_grad():  # a plausible SR output: the random net's response scaled down
        module.tail.weight.mul_(0.05)
        module.tail.bias.fill_(0.5)
    return LoadedModel(module, get_spec("fsrcnn"), scale, "random")


@pytest.mark.parametrize("scale", [2, 3])
def test_torch_backend_gives_the_same_frames(scale: int, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _fsrcnn(scale)
    frames = smooth_frames(2, 30, 44)
    fast = TorchBackend(model, device="cpu", precision="fp32", threads=2)
    assert _deconvs(fast.module) == 0
    assert isinstance(model.module.tail, nn.ConvTranspose2d)  # the LoadedModel keeps its layer
    monkeypatch.setattr(torch_backend, "inference_module", lambda m: m)
    ref = TorchBackend(model, device="cpu", precision="fp32", threads=2)
    assert _deconvs(ref.module) == 1
    assert max_diff(fast.upscale(frames), ref.upscale(frames)) <= 1


def _runtime_layers(ovb) -> set[str]:
    """The CPU plugin's layer types in the compiled model ("Convolution", "Deconvolution")."""
    ops = ovb._dynamic.get_runtime_model().get_ops()
    return {op.get_rt_info()["layerType"].astype(str) for op in ops}


def test_openvino_backend_converts_the_rewritten_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("openvino")
    from vsr.backends.openvino_backend import OpenVINOBackend

    monkeypatch.setenv("VSR_CACHE", str(tmp_path / "cache"))
    model = _fsrcnn(2)
    ovb = OpenVINOBackend(model, threads=2)
    assert _deconvs(ovb.module) == 0
    assert ovb._dynamic is not None
    assert "Deconvolution" not in _runtime_layers(ovb), _runtime_layers(ovb)
    frames = smooth_frames(1, 30, 44)
    ref = TorchBackend(model, device="cpu", precision="fp32", threads=2)
    assert max_diff(ovb.upscale(frames), ref.upscale(frames)) <= 1
    # the check above means something: without the rewrite OpenVINO runs a Deconvolution
    monkeypatch.setattr(torch_backend, "inference_module", lambda m: m)
    monkeypatch.setenv("VSR_CACHE", str(tmp_path / "cache-original"))
    assert "Deconvolution" in _runtime_layers(OpenVINOBackend(model, threads=2))
