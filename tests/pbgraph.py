"""Synthetic OpenCV dnn_superres graphs: a tiny protobuf writer for TensorFlow GraphDefs
and ESPCN/FSRCNN-shaped graphs with random weights (shared by the .pb reader's tests and
the OpenCV backend's tests; moved here from test_opencv_pb.py)."""

from __future__ import annotations

import numpy as np

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
