"""Bicubic initialisation starts ESPCN/FSRCNN at MATLAB bicubic (vsr/train/init.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vsr.metrics import imresize
from vsr.models.registry import get_spec
from vsr.train.init import apply_init, bicubic_init_espcn, bicubic_init_fsrcnn, load_partial


def _lr() -> np.ndarray:
    yy, xx = np.mgrid[0:20, 0:24].astype(np.float64)
    return 0.5 + 0.3 * np.sin(xx / 3.0) * np.cos(yy / 4.0)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_espcn_starts_exactly_at_matlab_bicubic(scale):
    module = get_spec("espcn").build(scale, None, {})
    bicubic_init_espcn(module, scale, damp=0.0)
    lr = _lr()
    with torch.inference_mode():
        out = module(torch.from_numpy(lr).float()[None, None])[0, 0].double().numpy()
    ref = imresize(lr, scale)
    b = 2 * scale  # the 5x5 window is zero-padded where MATLAB mirrors
    assert np.abs(out - ref)[b:-b, b:-b].max() < 1e-5


@pytest.mark.parametrize("scale", [2, 3])
def test_fsrcnn_starts_near_matlab_bicubic(scale):
    module = get_spec("fsrcnn").build(scale, None, {})
    bicubic_init_fsrcnn(module, scale, damp=0.0)
    lr = _lr()
    with torch.inference_mode():
        out = module(torch.from_numpy(lr).float()[None, None])[0, 0].double().numpy()
    ref = imresize(lr, scale)
    b = 3 * scale
    # the 9x9 deconvolution reaches all bicubic taps at x2, and drops the far taps (|w| < 0.04)
    # at x3, renormalised
    tol = 1e-5 if scale == 2 else 0.02
    assert np.abs(out - ref)[b:-b, b:-b].max() < tol


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a - b) ** 2)))


@pytest.mark.parametrize(
    ("model", "scale", "floor"),
    [("srcnn", 3, 60), ("vdsr", 2, 20), ("vdsr", 4, 20), ("lapsrn", 2, 38), ("lapsrn", 4, 33),
     ("edsr", 2, 38), ("edsr", 3, 38), ("edsr", 4, 33)],
)  # fmt: skip
def test_bicubic_init_starts_near_matlab_bicubic(model: str, scale: int, floor: float) -> None:
    """Each network starts close to MATLAB bicubic. SRCNN upscales with it first, so it
    matches it closely; VDSR adds its undamped, He-initialised residual to it (about 24 dB
    from bicubic here: it trains faster undamped, see vsr/train/init.py); LapSRN's 4x4 and
    EDSR's 3x3 upsampling windows drop the far taps (renormalised), and EDSR's damped
    blocks and x4's two x2 stages add a little."""
    torch.manual_seed(0)
    spec = get_spec(model)
    module = spec.build(scale, None, {})
    apply_init("bicubic", module, spec.arch, scale)
    lr = _lr()
    x = torch.from_numpy(lr).float()[None, None]
    if spec.channels == 3:
        x = x.repeat(1, 3, 1, 1)
    with torch.inference_mode():
        out = module(x)[0, 0].double().numpy()
    ref = imresize(lr, scale)
    b = 3 * scale
    assert _psnr(out[b:-b, b:-b], ref[b:-b, b:-b]) > floor


def test_load_partial_copies_what_fits() -> None:
    x2 = get_spec("edsr").build(2, None, {})
    x3 = get_spec("edsr").build(3, None, {})
    copied = load_partial(x3, x2.state_dict())
    assert "head.0.weight" in copied and "body.0.body.0.weight" in copied
    assert "tail.0.0.weight" not in copied  # x2's upsampler is 4F wide, x3's 9F
    assert torch.equal(x3.state_dict()["head.0.weight"], x2.state_dict()["head.0.weight"])


def test_vdsr_without_its_last_layer_is_exactly_bicubic() -> None:
    module = get_spec("vdsr").build(3, None, {})
    from vsr.train.init import bicubic_init_vdsr

    bicubic_init_vdsr(module, 3, damp=0.0)
    lr = _lr()
    with torch.inference_mode():
        out = module(torch.from_numpy(lr).float()[None, None])[0, 0].double().numpy()
    assert np.abs(out - imresize(lr, 3)).max() < 1e-5
