"""OpenCV dnn_superres .pb graphs: reading, errors, and agreement with cv2.dnn_superres.

Two kinds of graphs are used:

- synthetic GraphDefs written here in protobuf wire format (random weights, tiny widths):
  they need no data, check the round trip of every tensor into the torch state dict and
  the graph's semantics (TF SAME conv, written-out PReLU, DepthToSpace, tanh, scalar bias)
  against an independent NumPy forward pass, and run through cv2.dnn_superres itself;
- the real files in ``shared/data/weights/opencv``, compared with cv2.dnn_superres on
  small Set5 crops; skipped when the shared data is absent.

Tolerance against cv2.dnn_superres: at most one grey level. ``upsample_like_opencv``
reproduces OpenCV's uint8 colour conversions, bilinear chroma and rounding exactly, so the
only difference left is the float summation order of the convolutions (OpenCV's kernels vs
torch's): the network's Y lands within about 1e-6 of OpenCV's, which flips the rounding
of Y by one level at a few pixels in 10^5, and YCrCb->BGR passes a one-level change of Y
through as at most one level per channel. (Measured on the full butterfly with ESPCN_x3:
Y differs from OpenCV's grey-input output by one level at 18 of 589,824 pixels, BGR by one
level at 48 values. The two levels once reported for ESPCN came from comparing with the Y
re-extracted from OpenCV's uint8 BGR output, whose YCrCb->BGR->YCrCb round trip moves Y
by itself. Converting back to BGR in float instead of uint8 gives up to 3 levels, and
cubic instead of OpenCV's bilinear chroma up to 6.)
"""

from __future__ import annotations

import contextlib
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from vsr.errors import WeightsError
from vsr.models.archs import espcn, fsrcnn
from vsr.models.opencv_pb import read_pb, upsample_like_opencv
from vsr.models.registry import load_model

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PB_DIR = DATA / "weights" / "opencv"
SET5 = DATA / "val" / "Set5"
needs_data = pytest.mark.skipif(
    not (PB_DIR.is_dir() and SET5.is_dir()),
    reason=f"shared data not found at {DATA}: the real-file comparisons with cv2.dnn_superres "
    "are skipped (the synthetic-graph tests still run)",
)

# --------------------------------------------------------------------------------------
# A tiny protobuf writer for GraphDefs
# --------------------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _int(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _len(field: int, payload: bytes | str) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _tensor(array: np.ndarray, *, as_values: bool = False) -> bytes:
    """TensorProto: dtype, shape, then tensor_content or (packed) float_val/int_val."""
    is_int = array.dtype.kind == "i"
    shape = b"".join(_len(2, _int(1, d)) for d in array.shape)
    out = _int(1, 3 if is_int else 1) + _len(2, shape)
    if not as_values:
        return out + _len(4, array.astype("<i4" if is_int else "<f4").tobytes())
    if is_int:
        return out + _len(7, b"".join(_varint(int(v)) for v in array.reshape(-1)))
    return out + _len(5, array.astype("<f4").tobytes())


class GraphWriter:
    """Writes NodeDefs the way TF 1.x froze the dnn_superres graphs."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def node(self, name: str, op: str, *inputs: str, **attrs: bytes) -> str:
        body = _len(1, name) + _len(2, op) + b"".join(_len(3, i) for i in inputs)
        for key, value in attrs.items():
            body += _len(5, _len(1, key) + _len(2, value))
        if op not in ("Const", "Placeholder"):
            body += _len(5, _len(1, "T") + _len(2, _int(6, 1)))
        self.parts.append(_len(1, body))
        return name

    def const(self, name: str, array: np.ndarray, *, as_values: bool = False) -> str:
        tensor = _tensor(array, as_values=as_values)
        dtype = _int(6, 3 if array.dtype.kind == "i" else 1)
        return self.node(name, "Const", value=_len(8, tensor), dtype=dtype)

    def conv(self, name: str, x: str, kernel: np.ndarray) -> str:
        ones = _len(1, _len(3, bytes([1, 1, 1, 1])))
        w = self.const(name + "/w", kernel.astype(np.float32))
        return self.node(
            name, "Conv2D", x, w, padding=_len(2, "SAME"), strides=ones, dilations=ones,
            data_format=_len(2, "NHWC"),
        )  # fmt: skip

    def bias(self, name: str, x: str, b: np.ndarray, op: str = "Add") -> str:
        return self.node(name, op, x, self.const(name + "/b", b.astype(np.float32)))

    def prelu(self, name: str, x: str, alpha: np.ndarray) -> str:
        """relu(x) + alpha * (x - |x|) * 0.5, as in the FSRCNN graphs."""
        a = self.const(name + "/alpha", alpha.astype(np.float32))
        half = self.const(name + "/half", np.array(0.5, np.float32), as_values=True)
        absx = self.node(name + "/abs", "Abs", x)
        sub = self.node(name + "/sub", "Sub", x, absx)
        mul = self.node(name + "/mul", "Mul", a, sub)
        mul1 = self.node(name + "/mul1", "Mul", mul, half)
        relu = self.node(name + "/relu", "Relu", x)
        return self.node(name, "Add", relu, mul1)

    def d2s(self, x: str, r: int) -> str:
        return self.node(
            "DepthToSpace", "DepthToSpace", x, block_size=_int(3, r), data_format=_len(2, "NHWC")
        )

    def output(self, x: str) -> str:
        perm = self.const("NCHW_output/perm", np.array([0, 3, 1, 2], np.int32))
        return self.node("NCHW_output", "Transpose", x, perm)

    def bytes(self) -> bytes:
        return b"".join(self.parts) + _len(4, _int(1, 26))  # versions {producer: 26}


def _rand(rng: np.random.Generator, *shape: int, std: float = 0.2) -> np.ndarray:
    return (rng.standard_normal(shape) * std).astype(np.float32)


def espcn_graph(
    r: int, *, seed: int = 0, out_op: str = "Tanh"
) -> tuple[bytes, dict[str, np.ndarray]]:
    """An ESPCN-shaped graph (widths 6 and 4) and its TF-layout weights."""
    rng = np.random.default_rng(seed)
    w = {
        "f1": _rand(rng, 5, 5, 1, 6),
        "b1": _rand(rng, 6, std=0.05),
        "f2": _rand(rng, 3, 3, 6, 4),
        "b2": _rand(rng, 4, std=0.05),
        "f3": _rand(rng, 3, 3, 4, r * r),
        "b3": _rand(rng, r * r, std=0.05) + np.float32(0.4),
    }
    g = GraphWriter()
    x = g.node("IteratorGetNext", "Placeholder", dtype=_int(6, 1))
    x = g.node("Relu", "Relu", g.bias("add", g.conv("conv1", x, w["f1"]), w["b1"]))
    x = g.node("Relu_1", "Relu", g.bias("add_1", g.conv("conv2", x, w["f2"]), w["b2"]))
    x = g.d2s(g.bias("add_2", g.conv("conv3", x, w["f3"]), w["b3"]), r)
    g.output(g.node("NHWC_output", out_op, x))
    return g.bytes(), w


def fsrcnn_graph(r: int, *, seed: int = 0) -> tuple[bytes, dict[str, np.ndarray]]:
    """An FSRCNN-shaped graph (d=6, s=3, m=2) and its TF-layout weights."""
    rng = np.random.default_rng(seed)
    shapes = [(5, 1, 6), (1, 6, 3), (3, 3, 3), (3, 3, 3), (1, 3, 6)]
    w: dict[str, np.ndarray] = {}
    g = GraphWriter()
    x = g.node("IteratorGetNext", "Placeholder", dtype=_int(6, 1))
    for i, (k, cin, cout) in enumerate(shapes, 1):
        w[f"f{i}"] = _rand(rng, k, k, cin, cout)
        w[f"b{i}"] = _rand(rng, cout, std=0.05)
        w[f"alpha{i}"] = _rand(rng, cout, std=0.3)
        x = g.bias(f"add{i}", g.conv(f"conv{i}", x, w[f"f{i}"]), w[f"b{i}"])
        x = g.prelu(f"prelu{i}", x, w[f"alpha{i}"])
    w["f_tail"] = _rand(rng, 1, 1, 6, r * r)
    w["b_tail"] = np.array([0.45], np.float32)
    x = g.d2s(g.conv("conv_tail", x, w["f_tail"]), r)
    b = g.const("b_tail", w["b_tail"], as_values=True)
    g.output(g.node("NHWC_output", "BiasAdd", x, b, data_format=_len(2, "NHWC")))
    return g.bytes(), w


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------------------
# An independent NumPy forward pass in TF's layout (NHWC, HWIO, SAME, DepthToSpace)
# --------------------------------------------------------------------------------------


def _conv_same(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    k = kernel.shape[0]
    h, w, _ = x.shape
    xp = np.pad(x, ((k // 2, k // 2), (k // 2, k // 2), (0, 0)))
    out = np.zeros((h, w, kernel.shape[3]))
    for i in range(k):
        for j in range(k):
            out += np.einsum("hwc,co->hwo", xp[i : i + h, j : j + w], kernel[i, j])
    return out


def _depth_to_space(x: np.ndarray, r: int) -> np.ndarray:
    h, w, c = x.shape
    x = x.reshape(h, w, r, r, c // (r * r)).transpose(0, 2, 1, 3, 4)
    return x.reshape(h * r, w * r, c // (r * r))


def _prelu(x: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0) + alpha * (x - np.abs(x)) * 0.5


def _espcn_numpy(y: np.ndarray, w: dict[str, np.ndarray], r: int) -> np.ndarray:
    x = np.maximum(_conv_same(y[..., None], w["f1"]) + w["b1"], 0)
    x = np.maximum(_conv_same(x, w["f2"]) + w["b2"], 0)
    return np.tanh(_depth_to_space(_conv_same(x, w["f3"]) + w["b3"], r))[..., 0]


def _fsrcnn_numpy(y: np.ndarray, w: dict[str, np.ndarray], r: int) -> np.ndarray:
    x = y[..., None]
    for i in range(1, 6):
        x = _prelu(_conv_same(x, w[f"f{i}"]) + w[f"b{i}"], w[f"alpha{i}"])
    return _depth_to_space(_conv_same(x, w["f_tail"]), r)[..., 0] + w["b_tail"][0]


def _run(module: torch.nn.Module, y: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return module(torch.from_numpy(y)[None, None])[0, 0].numpy()


def _smooth_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A BGR uint8 test image with edges and gradients (not white noise)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 4 + 1, w // 4 + 1, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    assert a.shape == b.shape and a.dtype == b.dtype == np.uint8
    return np.abs(a.astype(np.int16) - b.astype(np.int16))


def _opencv_upsample(path: Path, algo: str, scale: int, image: np.ndarray) -> np.ndarray:
    sr = cv2.dnn_superres.DnnSuperResImpl_create()
    sr.readModel(str(path))
    sr.setModel(algo, scale)
    return sr.upsample(image)


# --------------------------------------------------------------------------------------
# Synthetic graphs: no data needed
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("r", [2, 3])
def test_synthetic_espcn_round_trip(tmp_path: Path, r: int) -> None:
    data, w = espcn_graph(r, seed=r)
    state, meta = read_pb(_write(tmp_path, "espcn.pb", data), arch="espcn", scale=r)

    assert meta == {
        "arch": "espcn", "scale": str(r), "act": "relu", "out_act": "tanh", "variant": "ESPCN"
    }  # fmt: skip
    for i in (1, 2, 3):
        expected = torch.from_numpy(w[f"f{i}"]).permute(3, 2, 0, 1)
        assert torch.equal(state[f"conv{i}.weight"], expected)
        assert torch.equal(state[f"conv{i}.bias"], torch.from_numpy(w[f"b{i}"]))
    module = espcn.build(r, state, meta)
    module.load_state_dict(state, strict=True)

    y = np.random.default_rng(1).random((7, 9), dtype=np.float32)
    np.testing.assert_allclose(_run(module.eval(), y), _espcn_numpy(y, w, r), atol=2e-6)


def test_synthetic_fsrcnn_round_trip(tmp_path: Path) -> None:
    data, w = fsrcnn_graph(3)
    state, meta = read_pb(_write(tmp_path, "fsrcnn.pb", data), arch="fsrcnn", scale=3)

    assert meta["arch"] == "fsrcnn" and meta["scale"] == "3" and meta["upsampler"] == "subpixel"
    for n, i in enumerate(range(1, 6)):  # body: conv at 2n, PReLU at 2n + 1
        expected = torch.from_numpy(w[f"f{i}"]).permute(3, 2, 0, 1)
        assert torch.equal(state[f"body.{2 * n}.weight"], expected)
        assert torch.equal(state[f"body.{2 * n}.bias"], torch.from_numpy(w[f"b{i}"]))
        assert torch.equal(state[f"body.{2 * n + 1}.weight"], torch.from_numpy(w[f"alpha{i}"]))
    assert torch.equal(state["tail.0.weight"], torch.from_numpy(w["f_tail"]).permute(3, 2, 0, 1))
    assert state["tail_bias"].shape == (1,) and state["tail_bias"].item() == w["b_tail"][0]
    module = fsrcnn.build(3, state, meta)
    module.load_state_dict(state, strict=True)
    assert module.upsampler == "subpixel" and len(module.body) == 2 * 5

    y = np.random.default_rng(2).random((6, 5), dtype=np.float32)
    np.testing.assert_allclose(_run(module.eval(), y), _fsrcnn_numpy(y, w, 3), atol=2e-6)


@pytest.mark.parametrize(("arch", "make"), [("espcn", espcn_graph), ("fsrcnn", fsrcnn_graph)])
def test_synthetic_graph_matches_cv2_dnn_superres(tmp_path: Path, arch: str, make) -> None:
    """The synthetic graphs also run in cv2.dnn_superres, so the reference is checked
    against OpenCV without the shared data (colour and grey input)."""
    path = _write(tmp_path, f"{arch}.pb", make(2)[0])
    module = load_model(arch, 2, weights=path).module
    for image in (_smooth_image(20, 28), _smooth_image(20, 28, seed=1)[:, :, 0]):
        ours = upsample_like_opencv(module, image)
        theirs = _opencv_upsample(path, arch, 2, image)
        assert int(_diff(ours, theirs).max()) <= 1


def test_scale_and_family_are_read_from_the_graph(tmp_path: Path) -> None:
    path = _write(tmp_path, "espcn.pb", espcn_graph(3)[0])
    with pytest.raises(WeightsError, match=r"ESPCN graph for x3, not x2") as info:
        read_pb(path, arch="espcn", scale=2)
    assert "-x 3" in info.value.hint

    fpath = _write(tmp_path, "fsrcnn.pb", fsrcnn_graph(2)[0])
    with pytest.raises(WeightsError, match=r"FSRCNN x2 graph, not ESPCN") as info:
        load_model("espcn", 2, weights=fpath)
    assert "-m fsrcnn" in info.value.hint
    with pytest.raises(WeightsError, match=r"ESPCN x3 graph, not FSRCNN"):
        read_pb(path, arch="fsrcnn", scale=3)


@pytest.mark.parametrize("op", ["Sigmoid", "PyFunc"])
def test_unsupported_op_is_named(tmp_path: Path, op: str) -> None:
    path = _write(tmp_path, "odd.pb", espcn_graph(2, out_op=op)[0])
    with pytest.raises(WeightsError, match=rf"ops vsr cannot reproduce: {op}"):
        read_pb(path, arch="espcn", scale=2)


def test_a_graph_the_module_cannot_reproduce_is_refused(tmp_path: Path) -> None:
    """Known ops in another arrangement (no activation after conv1) are refused too."""
    data, w = espcn_graph(2)
    g = GraphWriter()
    x = g.node("in", "Placeholder", dtype=_int(6, 1))
    x = g.bias("add", g.conv("conv1", x, w["f1"]), w["b1"])
    x = g.node("Relu_1", "Relu", g.bias("add_1", g.conv("conv2", x, w["f2"]), w["b2"]))
    x = g.d2s(g.bias("add_2", g.conv("conv3", x, w["f3"]), w["b3"]), 2)
    g.output(g.node("NHWC_output", "Tanh", x))
    path = _write(tmp_path, "odd.pb", g.bytes())
    with pytest.raises(WeightsError, match=r"does not match the ESPCN layout"):
        read_pb(path, arch="espcn", scale=2)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"this is not a TensorFlow graph\n",
        b"\x0a\xff\xff\xff\xff\x0f",  # a node longer than the file
        pytest.param(None, id="truncated-graph"),
        pytest.param(b"PK\x03\x04" + bytes(60), id="zip-header"),
    ],
)
def test_not_a_graph(tmp_path: Path, data: bytes | None) -> None:
    if data is None:
        data = espcn_graph(2)[0][:-300]
    path = _write(tmp_path, "x.pb", data)
    with pytest.raises(WeightsError) as info:
        load_model("espcn", 2, weights=path)
    assert "\n" not in info.value.one_line() and info.value.hint


def test_random_bytes_give_weights_errors_only(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    good = espcn_graph(2)[0]
    for k in range(100):
        if k % 2:
            data = rng.integers(0, 256, int(rng.integers(1, 400)), dtype=np.uint8).tobytes()
        else:  # flip bytes of a valid graph
            arr = np.frombuffer(good, dtype=np.uint8).copy()
            arr[rng.integers(0, arr.size, 4)] = rng.integers(0, 256, 4, dtype=np.uint8)
            data = arr.tobytes()
        path = _write(tmp_path, "x.pb", data)
        with contextlib.suppress(WeightsError):  # a flipped weight byte is still a graph
            read_pb(path, arch="espcn", scale=2)


class _Payload:
    """Unpickling this would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_reading_never_executes_code(tmp_path: Path) -> None:
    """A .pb is parsed as data: a pickle payload (what torch.load would run) named .pb, and
    a graph whose output is a PyFunc node, are refused, and nothing runs."""
    marker = tmp_path / "executed"
    path = _write(tmp_path, "evil.pb", pickle.dumps(_Payload(marker)))
    with pytest.raises(WeightsError):
        load_model("espcn", 2, weights=path)
    g = GraphWriter()
    g.node("run", "PyFunc", token=_len(2, f"open({str(marker)!r}, 'w')"))
    with pytest.raises(WeightsError, match="PyFunc"):
        read_pb(_write(tmp_path, "evil2.pb", g.bytes()), arch="espcn", scale=2)
    assert not marker.exists()


def test_upsample_like_opencv_rejects_bad_images() -> None:
    module = espcn.ESPCN(2)
    with pytest.raises(ValueError, match="uint8"):
        upsample_like_opencv(module, np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        upsample_like_opencv(module, np.zeros((4, 4, 4), np.uint8))


# --------------------------------------------------------------------------------------
# The real OpenCV files
# --------------------------------------------------------------------------------------

REAL = [
    (f"{family}_x{scale}.pb", arch, scale)
    for family, arch in (("ESPCN", "espcn"), ("FSRCNN", "fsrcnn"), ("FSRCNN-small", "fsrcnn"))
    for scale in (2, 3, 4)
]


@needs_data
@pytest.mark.parametrize(("name", "arch", "scale"), REAL, ids=[r[0] for r in REAL])
def test_real_graph_matches_cv2_dnn_superres(name: str, arch: str, scale: int) -> None:
    path = PB_DIR / name
    loaded = load_model(arch, scale, weights=path)
    state, meta = read_pb(path, arch=arch, scale=scale)
    assert set(state) == set(loaded.module.state_dict())
    assert meta["variant"] == name.split("_x")[0]
    if arch == "espcn":
        assert (meta["act"], meta["out_act"]) == ("relu", "tanh")

    for picture in ("butterfly.png", "bird.png"):
        image = cv2.imread(str(SET5 / picture))[80:176, 80:176]  # 96x96, with edges
        ours = upsample_like_opencv(loaded.module, image)
        theirs = _opencv_upsample(path, arch, scale, image)
        diff = _diff(ours, theirs)
        assert int(diff.max()) <= 1, f"{name} {picture}: max {diff.max()}"
        assert float(diff.mean()) < 1e-3, f"{name} {picture}: mean {diff.mean()}"


@needs_data
@pytest.mark.parametrize("name", ["LapSRN_x2.pb", "LapSRN_x8.pb"])
def test_lapsrn_is_named(name: str) -> None:
    with pytest.raises(WeightsError, match=r"is an OpenCV LapSRN x\d graph, not ESPCN"):
        read_pb(PB_DIR / name, arch="espcn", scale=2)
    with pytest.raises(WeightsError, match="LapSRN"):
        load_model("espcn", 2, weights=PB_DIR / "LapSRN_x2.pb")


@needs_data
def test_real_scale_and_family_mismatch() -> None:
    with pytest.raises(WeightsError, match=r"ESPCN_x2\.pb is an OpenCV ESPCN graph for x2, not x3"):
        load_model("espcn", 3, weights=PB_DIR / "ESPCN_x2.pb")
    with pytest.raises(WeightsError, match=r"FSRCNN-small x4 graph, not ESPCN"):
        load_model("espcn", 4, weights=PB_DIR / "FSRCNN-small_x4.pb")


@pytest.mark.parametrize(("arch", "scale"), [("espcn", 3), ("fsrcnn", 2)])
def test_vsr_run_with_pb_weights(tmp_path: Path, clip_mp4: Path, arch: str, scale: int) -> None:
    """``vsr run --weights X.pb``: the real OpenCV file when present, else a synthetic one."""
    import json
    import subprocess
    import sys

    from vsr.media.probe import probe

    family = "ESPCN" if arch == "espcn" else "FSRCNN"
    real = PB_DIR / f"{family}_x{scale}.pb"
    if real.exists():
        weights = real
    else:
        data, _ = (espcn_graph if arch == "espcn" else fsrcnn_graph)(scale)
        weights = _write(tmp_path, f"synthetic_{arch}_x{scale}.pb", data)
    out = tmp_path / "pb.mp4"
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
            arch,
            "-x",
            str(scale),
            "--weights",
            str(weights),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["weights"] == str(weights)
    src = probe(clip_mp4).video
    assert report["frames_out"] == src.frame_count
    assert probe(out).video.width == src.width * scale
