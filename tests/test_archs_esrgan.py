"""ESRGAN / Real-ESRGAN (RRDBNet), SRVGGNetCompact and ``-m auto`` (spandrel).

Tiny random-init networks are written by reference implementations in this file, one per
official key layout (Real-ESRGAN/BasicSR, ESRGAN "new", ESRGAN "old" sequential,
SRVGGNetCompact), saved as the upstream projects save them (``params_ema`` wrappers
included), and must load through ``load_model`` with identical outputs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vsr.backends.torch_backend import TorchBackend
from vsr.errors import UsageError, WeightsError
from vsr.media.frame import Frame
from vsr.media.probe import probe
from vsr.models.registry import get_spec, load_model
from vsr.models.weights import read_safetensors, write_safetensors


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one intra-op thread is faster, and much faster on a busy machine
    (OpenMP workers spin while other jobs hold the cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- reference implementations, written after the upstream code ----------------------


class RefRDB(nn.Module):
    """BasicSR ResidualDenseBlock / ESRGAN ResidualDenseBlock_5C (same maths)."""

    def __init__(self, nf: int, gc: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(nf, gc, 3, 1, 1)
        self.conv2 = nn.Conv2d(nf + gc, gc, 3, 1, 1)
        self.conv3 = nn.Conv2d(nf + 2 * gc, gc, 3, 1, 1)
        self.conv4 = nn.Conv2d(nf + 3 * gc, gc, 3, 1, 1)
        self.conv5 = nn.Conv2d(nf + 4 * gc, nf, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x):
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x


class RefRRDBBasicSR(nn.Module):
    def __init__(self, nf: int, gc: int) -> None:
        super().__init__()
        self.rdb1, self.rdb2, self.rdb3 = RefRDB(nf, gc), RefRDB(nf, gc), RefRDB(nf, gc)

    def forward(self, x):
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RefRealESRGAN(nn.Module):
    """basicsr/archs/rrdbnet_arch.py RRDBNet (Real-ESRGAN x4plus, x2plus, anime_6B)."""

    def __init__(self, scale: int, nf: int, nb: int, gc: int) -> None:
        super().__init__()
        self.scale = scale
        num_in_ch = 3 * {1: 16, 2: 4, 4: 1}[scale]
        self.conv_first = nn.Conv2d(num_in_ch, nf, 3, 1, 1)
        self.body = nn.Sequential(*[RefRRDBBasicSR(nf, gc) for _ in range(nb)])
        self.conv_body = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_hr = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_last = nn.Conv2d(nf, 3, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x):
        if self.scale == 2:
            feat = _unshuffle(x, 2)
        elif self.scale == 1:
            feat = _unshuffle(x, 4)
        else:
            feat = x
        feat = self.conv_first(feat)
        feat = feat + self.conv_body(self.body(feat))
        feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(self.lrelu(self.conv_hr(feat)))


def _unshuffle(x: torch.Tensor, scale: int) -> torch.Tensor:
    """basicsr.archs.arch_util.pixel_unshuffle, written out (view + permute)."""
    b, c, hh, hw = x.size()
    h, w = hh // scale, hw // scale
    x_view = x.view(b, c, h, scale, w, scale)
    return x_view.permute(0, 1, 3, 5, 2, 4).reshape(b, c * scale * scale, h, w)


class RefRRDBNew(nn.Module):
    def __init__(self, nf: int, gc: int) -> None:
        super().__init__()
        self.RDB1, self.RDB2, self.RDB3 = RefRDB(nf, gc), RefRDB(nf, gc), RefRDB(nf, gc)

    def forward(self, x):
        return self.RDB3(self.RDB2(self.RDB1(x))) * 0.2 + x


class RefESRGANNew(nn.Module):
    """ESRGAN repository, models/RRDBNet_arch.py (x4)."""

    def __init__(self, nf: int, nb: int, gc: int) -> None:
        super().__init__()
        self.conv_first = nn.Conv2d(3, nf, 3, 1, 1, bias=True)
        self.RRDB_trunk = nn.Sequential(*[RefRRDBNew(nf, gc) for _ in range(nb)])
        self.trunk_conv = nn.Conv2d(nf, nf, 3, 1, 1, bias=True)
        self.upconv1 = nn.Conv2d(nf, nf, 3, 1, 1, bias=True)
        self.upconv2 = nn.Conv2d(nf, nf, 3, 1, 1, bias=True)
        self.HRconv = nn.Conv2d(nf, nf, 3, 1, 1, bias=True)
        self.conv_last = nn.Conv2d(nf, 3, 3, 1, 1, bias=True)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x):
        fea = self.conv_first(x)
        fea = fea + self.trunk_conv(self.RRDB_trunk(fea))
        fea = self.lrelu(self.upconv1(F.interpolate(fea, scale_factor=2, mode="nearest")))
        fea = self.lrelu(self.upconv2(F.interpolate(fea, scale_factor=2, mode="nearest")))
        return self.conv_last(self.lrelu(self.HRconv(fea)))


class RefOldRDB(nn.Module):
    """Old BasicSR block.py ResidualDenseBlock_5C: every conv is conv_block = Sequential."""

    def __init__(self, nf: int, gc: int) -> None:
        super().__init__()

        def block(cin: int, cout: int, act: bool) -> nn.Sequential:
            layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, 1, 1)]
            if act:
                layers.append(nn.LeakyReLU(0.2, inplace=True))
            return nn.Sequential(*layers)

        self.conv1 = block(nf, gc, True)
        self.conv2 = block(nf + gc, gc, True)
        self.conv3 = block(nf + 2 * gc, gc, True)
        self.conv4 = block(nf + 3 * gc, gc, True)
        self.conv5 = block(nf + 4 * gc, nf, False)

    def forward(self, x):
        x1 = self.conv1(x)
        x2 = self.conv2(torch.cat((x, x1), 1))
        x3 = self.conv3(torch.cat((x, x1, x2), 1))
        x4 = self.conv4(torch.cat((x, x1, x2, x3), 1))
        return self.conv5(torch.cat((x, x1, x2, x3, x4), 1)) * 0.2 + x


class RefOldRRDB(nn.Module):
    def __init__(self, nf: int, gc: int) -> None:
        super().__init__()
        self.RDB1, self.RDB2, self.RDB3 = RefOldRDB(nf, gc), RefOldRDB(nf, gc), RefOldRDB(nf, gc)

    def forward(self, x):
        return self.RDB3(self.RDB2(self.RDB1(x))) * 0.2 + x


class RefShortcut(nn.Module):
    def __init__(self, sub: nn.Module) -> None:
        super().__init__()
        self.sub = sub

    def forward(self, x):
        return x + self.sub(x)


class RefESRGANOld(nn.Module):
    """Old ESRGAN architecture.py RRDBNet: one flattened ``model`` Sequential; upconv
    blocks are (Upsample, conv, LeakyReLU); ``n_up`` of them (x1: 0, x2: 1, x4: 2, x8: 3)."""

    def __init__(self, nf: int, nb: int, gc: int, n_up: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(3, nf, 3, 1, 1),
            RefShortcut(
                nn.Sequential(*[RefOldRRDB(nf, gc) for _ in range(nb)], nn.Conv2d(nf, nf, 3, 1, 1))
            ),
        ]
        for _ in range(n_up):
            layers += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(nf, nf, 3, 1, 1),
                nn.LeakyReLU(0.2, inplace=True),
            ]
        layers += [nn.Conv2d(nf, nf, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True)]
        layers.append(nn.Conv2d(nf, 3, 3, 1, 1))
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


class RefSRVGG(nn.Module):
    """Real-ESRGAN realesrgan/archs/srvgg_arch.py SRVGGNetCompact."""

    def __init__(self, nf: int, num_conv: int, upscale: int) -> None:
        super().__init__()
        self.upscale = upscale
        self.body = nn.ModuleList()
        self.body.append(nn.Conv2d(3, nf, 3, 1, 1))
        self.body.append(nn.PReLU(num_parameters=nf))
        for _ in range(num_conv):
            self.body.append(nn.Conv2d(nf, nf, 3, 1, 1))
            self.body.append(nn.PReLU(num_parameters=nf))
        self.body.append(nn.Conv2d(nf, 3 * upscale * upscale, 3, 1, 1))
        self.upsampler = nn.PixelShuffle(upscale)

    def forward(self, x):
        out = x
        for layer in self.body:
            out = layer(out)
        out = self.upsampler(out)
        base = F.interpolate(x, scale_factor=self.upscale, mode="nearest")
        out += base
        return out


def _randomise(module: nn.Module, seed: int) -> nn.Module:
    """Random weights, scaled so that 20+ blocks stay in a sane range."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return module.eval()


def _same(loaded: nn.Module, ref: nn.Module, scale: int, size: tuple[int, int] = (8, 12)) -> None:
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = ref(x), loaded(x)
    assert got.shape == (2, 3, size[0] * scale, size[1] * scale)
    assert torch.equal(got, want), (got - want).abs().max()


def _round_trip(tmp_path: Path, name: str, loaded, scale: int) -> None:
    """vsr's own safetensors (internal layout + arch/scale metadata): same net again."""
    path = tmp_path / f"{name}_x{scale}.safetensors"
    meta = {"arch": loaded.spec.arch, "scale": scale}
    write_safetensors(path, loaded.module.state_dict(), meta)
    again = load_model(name, scale, weights=path)
    assert again.module.hparams == loaded.module.hparams
    assert read_safetensors(path)[1]["arch"] == loaded.spec.arch
    _same(again.module, loaded.module, scale)


# -- RRDBNet in its three layouts ------------------------------------------------------

REAL_ESRGAN = [
    # (case, scale, num_feat, num_block, num_grow_ch): tiny widths, the real depths
    ("x4plus", 4, 8, 23, 4),
    ("x2plus", 2, 8, 2, 4),
    ("x1-unshuffle4", 1, 4, 1, 4),
    ("anime_6B", 4, 8, 6, 4),
]


@pytest.mark.parametrize("case,scale,nf,nb,gc", REAL_ESRGAN, ids=[c[0] for c in REAL_ESRGAN])
def test_real_esrgan_layout_with_params_ema_loads_identically(tmp_path, case, scale, nf, nb, gc):
    ref = _randomise(RefRealESRGAN(scale, nf, nb, gc), seed=scale + nb)
    decoy = {k: torch.zeros_like(v) for k, v in ref.state_dict().items()}
    path = tmp_path / f"RealESRGAN_{case}.pth"
    # as Real-ESRGAN saves its releases: the EMA generator (used for inference) beside params
    torch.save({"params_ema": ref.state_dict(), "params": decoy}, path)
    loaded = load_model("esrgan", scale, weights=path)
    assert loaded.module.hparams == {
        "num_feat": nf,
        "num_block": nb,
        "num_grow_ch": gc,
        "num_up": 2,
        "unshuffle": {4: 1, 2: 2, 1: 4}[scale],
    }
    assert loaded.spec.size_multiple == {4: 1, 2: 2, 1: 4}[scale]
    _same(loaded.module, ref, scale)
    _round_trip(tmp_path, "esrgan", loaded, scale)


def test_esrgan_new_layout_loads_identically(tmp_path):
    ref = _randomise(RefESRGANNew(nf=8, nb=3, gc=4), seed=7)
    path = tmp_path / "RRDB_ESRGAN_x4.pth"
    torch.save(ref.state_dict(), path)
    loaded = load_model("esrgan", 4, weights=path)
    assert loaded.module.hparams["num_block"] == 3
    _same(loaded.module, ref, 4)
    _round_trip(tmp_path, "esrgan", loaded, 4)


@pytest.mark.parametrize("scale,n_up", [(1, 0), (2, 1), (4, 2), (8, 3)])
def test_esrgan_old_layout_loads_identically(tmp_path, scale, n_up):
    ref = _randomise(RefESRGANOld(nf=8, nb=2, gc=4, n_up=n_up), seed=scale)
    keys = set(ref.state_dict())
    if scale == 4:  # the published old-arch key names
        assert {
            "model.0.weight",
            "model.1.sub.0.RDB1.conv5.0.weight",
            "model.1.sub.2.weight",
        } <= keys
        assert {"model.3.weight", "model.6.weight", "model.8.weight", "model.10.weight"} <= keys
    path = tmp_path / f"old_x{scale}.pth"
    torch.save(ref.state_dict(), path)
    loaded = load_model("esrgan", scale, weights=path)
    assert loaded.module.hparams["num_up"] == n_up
    _same(loaded.module, ref, scale)
    _round_trip(tmp_path, "esrgan", loaded, scale)


def test_prefixes_and_plain_params_are_unwrapped(tmp_path):
    ref = _randomise(RefRealESRGAN(4, 8, 1, 4), seed=3)
    path = tmp_path / "dp.pth"
    torch.save({"params": {f"module.{k}": v for k, v in ref.state_dict().items()}}, path)
    _same(load_model("esrgan", 4, weights=path).module, ref, 4)


def test_foreign_safetensors_go_through_detect(tmp_path):
    ref = _randomise(RefESRGANNew(nf=8, nb=1, gc=4), seed=5)
    path = tmp_path / "converted.safetensors"
    write_safetensors(path, ref.state_dict(), {})  # no vsr metadata: a foreign file
    _same(load_model("esrgan", 4, weights=path).module, ref, 4)


def test_scale_and_architecture_mismatches_are_one_line_errors(tmp_path):
    ref = _randomise(RefRealESRGAN(2, 8, 1, 4), seed=2)
    path = tmp_path / "x2.pth"
    torch.save({"params_ema": ref.state_dict()}, path)
    with pytest.raises(WeightsError, match="x2, not x4") as err:
        load_model("esrgan", 4, weights=path)
    assert "-x 2" in err.value.one_line()
    compact = tmp_path / "compact.pth"
    torch.save({"params": _randomise(RefSRVGG(8, 2, 4), seed=1).state_dict()}, compact)
    with pytest.raises(WeightsError, match="does not hold esrgan weights") as err:
        load_model("esrgan", 4, weights=compact)
    assert "-m auto" in err.value.one_line()
    with pytest.raises(UsageError, match="x3"):
        load_model("esrgan", 3, weights=path)


def test_fresh_builds_have_the_published_shapes():
    net = get_spec("esrgan").build(4, None, {"num_feat": 8, "num_block": 2, "num_grow_ch": 4})
    assert net(torch.rand(1, 3, 5, 7)).shape == (1, 3, 20, 28)
    for scale in (1, 2):
        net = get_spec("esrgan").build(scale, None, {"num_feat": 4, "num_block": 1})
        assert net(torch.rand(1, 3, 8, 12)).shape == (1, 3, 8 * scale, 12 * scale)
    default = get_spec("esrgan").build(4, None, {})
    assert sum(p.numel() for p in default.parameters()) == 16_697_987  # RealESRGAN_x4plus


def test_backend_pads_odd_sizes_for_the_pixel_unshuffle(tmp_path):
    ref = _randomise(RefRealESRGAN(2, 8, 1, 4), seed=4)
    path = tmp_path / "x2plus.pth"
    torch.save({"params_ema": ref.state_dict()}, path)
    backend = TorchBackend(load_model("esrgan", 2, weights=path), device="cpu", threads=1)
    rng = np.random.default_rng(0)
    planes = tuple(rng.integers(16, 235, (7, 9)).astype(np.uint8) for _ in range(3))
    out = backend.upscale([Frame(0, 0, Fraction(1, 25), planes, "yuv444p")])[0]
    assert [p.shape for p in out.planes] == [(14, 18)] * 3


# -- SRVGGNetCompact ----------------------------------------------------------------------


@pytest.mark.parametrize("scale,num_conv", [(4, 4), (2, 2)])
def test_srvgg_compact_loads_identically(tmp_path, scale, num_conv):
    ref = _randomise(RefSRVGG(nf=8, num_conv=num_conv, upscale=scale), seed=scale)
    path = tmp_path / f"realesr-animevideov3-x{scale}.pth"
    torch.save({"params": ref.state_dict()}, path)
    loaded = load_model("realesrgan-compact", scale, weights=path)
    assert loaded.module.hparams == {"num_feat": 8, "num_conv": num_conv, "act": "prelu"}
    _same(loaded.module, ref, scale)
    _round_trip(tmp_path, "realesrgan-compact", loaded, scale)
    with pytest.raises(WeightsError, match=f"x{scale}, not x3"):
        load_model("realesrgan-compact", 3, weights=path)


def test_srvgg_relu_variant_round_trips_with_its_activation_in_metadata(tmp_path):
    net = get_spec("realesrgan-compact").build(
        2, None, {"num_feat": 4, "num_conv": 1, "act": "relu"}
    )
    path = tmp_path / "relu.safetensors"
    write_safetensors(
        path, net.state_dict(), {"arch": "realesrgan-compact", "scale": 2, "act": "relu"}
    )
    loaded = load_model("realesrgan-compact", 2, weights=path)
    assert loaded.module.hparams["act"] == "relu"
    _same(loaded.module, net.eval(), 2)


# -- -m auto: our architectures by their keys, then spandrel ------------------------------


def test_auto_recognises_our_architectures_first(tmp_path):
    cases = [
        ("old.pth", RefESRGANOld(8, 1, 4, 2), 4, "esrgan"),
        ("compact.pth", RefSRVGG(8, 2, 4), 4, "realesrgan-compact"),
    ]
    for name, ref, scale, expected in cases:
        _randomise(ref, seed=11)
        torch.save(ref.state_dict(), tmp_path / name)
        loaded = load_model("auto", scale, weights=tmp_path / name)
        assert loaded.spec.name == expected
        _same(loaded.module, ref, scale)
    # and vsr's own files by their metadata
    own = tmp_path / "own.safetensors"
    write_safetensors(own, loaded.module.state_dict(), {"arch": "realesrgan-compact", "scale": 4})
    assert load_model("auto", 4, weights=own).spec.name == "realesrgan-compact"
    with pytest.raises(WeightsError, match="no built-in weights") as err:
        load_model("auto", 4)
    assert "--weights" in err.value.one_line()


def test_auto_without_spandrel_is_a_one_line_error(tmp_path, monkeypatch):
    path = tmp_path / "unknown.pth"
    torch.save({"encoder.weight": torch.zeros(4, 3, 3, 3)}, path)
    monkeypatch.setitem(sys.modules, "spandrel", None)  # import spandrel -> ImportError
    with pytest.raises(WeightsError, match="spandrel") as err:
        load_model("auto", 4, weights=path)
    assert "pip install spandrel" in err.value.one_line()


@pytest.mark.slow
def test_spandrel_is_imported_only_when_used():
    code = (
        "import sys; from vsr.models.registry import load_model; "
        "load_model('bicubic', 2); print('spandrel' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


@pytest.mark.slow
def test_spandrel_only_architecture_loads_through_auto(tmp_path):
    spandrel = pytest.importorskip("spandrel", reason="spandrel is not installed (optional)")
    from spandrel.architectures.SPAN import SPAN

    torch.manual_seed(0)
    ref = SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=2).eval()
    path = tmp_path / "2x_tinySPAN.pth"
    torch.save({"params_ema": ref.state_dict()}, path)
    loaded = load_model("auto", 2, weights=path)
    assert loaded.spec.arch == "spandrel:SPAN"
    assert loaded.spec.channels == 3 and loaded.spec.scales == (2,)
    assert loaded.spec.fp16 and loaded.spec.bf16
    x = torch.rand(1, 3, 9, 11)
    with torch.no_grad():
        want = ref(x).clamp(0, 1)
    assert torch.allclose(loaded.module(x), want, atol=1e-6)
    with pytest.raises(WeightsError, match="x2 model, not x4") as err:
        load_model("auto", 4, weights=path)
    assert "-x 2" in err.value.one_line()
    unknown = tmp_path / "unknown.pth"
    torch.save({"encoder.weight": torch.zeros(4, 3, 3, 3)}, unknown)
    with pytest.raises(WeightsError, match="neither vsr nor spandrel"):
        load_model("auto", 4, weights=unknown)
    assert spandrel.__version__


@pytest.mark.parametrize("up,shuffle", [(4, None), (2, None), (4, 2), (4, 4)])
def test_rrdbnet_matches_spandrels_esrgan(tmp_path, up, shuffle):
    """A second, independent reference: spandrel's ESRGAN (old layout, unshuffle too)."""
    pytest.importorskip("spandrel", reason="spandrel is not installed (optional)")
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(up + (shuffle or 0))
    in_nc = 3 * (shuffle or 1) ** 2
    ref = ESRGAN(
        in_nc=in_nc, out_nc=3, num_filters=8, num_blocks=2, scale=up, shuffle_factor=shuffle
    )
    path = tmp_path / "spandrel_esrgan.pth"
    torch.save(ref.state_dict(), path)
    scale = up // (shuffle or 1)
    loaded = load_model("esrgan", scale, weights=path)
    _same(loaded.module, ref.eval(), scale)


# -- end to end ------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_runs_a_real_esrgan_pth_end_to_end(clip_mp4, tmp_path):
    ref = _randomise(RefRealESRGAN(4, 4, 1, 4), seed=9)
    weights = tmp_path / "RealESRGAN_x4plus_tiny.pth"
    torch.save({"params_ema": ref.state_dict()}, weights)
    out = tmp_path / "up.mp4"
    proc = subprocess.run(
        [sys.executable, "-m", "vsr", "run", str(clip_mp4), "-m", "esrgan"]
        + ["--weights", str(weights), "-x", "4", "-o", str(out), "--device", "cpu", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    src, dst = probe(clip_mp4), probe(out)
    assert report["frames_out"] == report["frames_in"] == src.video.frame_count
    assert (dst.video.width, dst.video.height) == (src.video.width * 4, src.video.height * 4)
    assert len(dst.audio) == len(src.audio) == 1
    assert report["weights"] == str(weights)
