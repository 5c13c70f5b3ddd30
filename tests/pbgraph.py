"""Synthetic OpenCV dnn_superres graphs: a tiny protobuf writer for TensorFlow GraphDefs
and ESPCN/FSRCNN/EDSR-shaped graphs with random weights (shared by the .pb reader's tests
and the OpenCV backend's tests; moved here from test_opencv_pb.py)."""

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


#: TensorFlow DataType numbers: DT_FLOAT, DT_INT32, DT_QUINT8.
DT_FLOAT, DT_INT32, DT_QUINT8 = 1, 3, 12


def _dtype(array: np.ndarray) -> int:
    return {"i": DT_INT32, "u": DT_QUINT8}.get(array.dtype.kind, DT_FLOAT)


def _tensor(array: np.ndarray, *, as_values: bool = False) -> bytes:
    """TensorProto: dtype, shape, then tensor_content or (packed) float_val/int_val.

    A uint8 array is written as DT_QUINT8 tensor_content, one byte per value, as TF's
    ``quantize_weights`` graph transform writes its ``*_quantized_const`` nodes."""
    is_int = array.dtype.kind == "i"
    shape = b"".join(_len(2, _int(1, d)) for d in array.shape)
    out = _int(1, _dtype(array)) + _len(2, shape)
    if array.dtype.kind == "u":
        return out + _len(4, array.astype(np.uint8).tobytes())
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
        if op not in ("Const", "Placeholder") and "T" not in attrs:
            body += _len(5, _len(1, "T") + _len(2, _int(6, 1)))
        self.parts.append(_len(1, body))
        return name

    def const(self, name: str, array: np.ndarray, *, as_values: bool = False) -> str:
        tensor = _tensor(array, as_values=as_values)
        return self.node(name, "Const", value=_len(8, tensor), dtype=_int(6, _dtype(array)))

    def dequantize(self, name: str, q: np.ndarray, lo: float, hi: float) -> str:
        """TF's ``quantize_weights`` output for one constant: ``name`` becomes a
        Dequantize (T=quint8, mode MIN_FIRST) of ``name_quantized_const`` (uint8),
        ``name_quantized_min`` and ``name_quantized_max`` (float scalars)."""
        data = self.const(name + "_quantized_const", q.astype(np.uint8))
        lo_node = self.const(name + "_quantized_min", np.array(lo, np.float32))
        hi_node = self.const(name + "_quantized_max", np.array(hi, np.float32))
        return self.node(
            name, "Dequantize", data, lo_node, hi_node, T=_int(6, DT_QUINT8),
            mode=_len(2, "MIN_FIRST"),
        )  # fmt: skip

    def conv(self, name: str, x: str, kernel: np.ndarray | str) -> str:
        """A SAME, stride-1 Conv2D; ``kernel`` is an HWIO array (written as the Const
        ``name/w``) or the name of the node that holds it."""
        ones = _len(1, _len(3, bytes([1, 1, 1, 1])))
        if isinstance(kernel, str):
            w = kernel
        else:
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


# --------------------------------------------------------------------------------------
# EDSR as Saafke/EDSR_Tensorflow exports it (the graphs OpenCV's dnn_superres runs)
# --------------------------------------------------------------------------------------

#: The BGR DIV2K mean that Saafke's training and OpenCV's dnn_superres subtract.
EDSR_BGR_MEAN = (103.1545782, 111.561547, 114.35629928)


def quantize_weights(w: np.ndarray) -> tuple[np.ndarray, float, float]:
    """TF's ``quantize_weights`` transform on one float constant: the range widened to
    hold 0, then 256 levels (FloatToQuantized<quint8>). Returns (uint8 values, min, max)."""
    lo, hi = min(float(w.min()), 0.0), max(float(w.max()), 0.0)
    if lo == hi:
        hi = lo + 1.0
    scale = 255.0 / (hi - lo)
    q = np.round(w.astype(np.float64) * scale) - np.round(lo * scale)
    return np.clip(q, 0, 255).astype(np.uint8), float(np.float32(lo)), float(np.float32(hi))


def dequantize_like_opencv(q: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """What OpenCV's TF importer makes of a Dequantize (MIN_FIRST) node: ``q * s +
    s * round(min / s)`` with ``s = (max - min) / 255``, all in float32 (tf_importer.cpp,
    ``addConstNodes``). The product and sum are rounded once (as an FMA would)."""
    f32 = np.float32
    s = f32(f32(hi) - f32(lo)) / f32(255)
    offset = s * f32(np.rint(f32(lo) / s))
    return (q.astype(np.float64) * np.float64(s) + np.float64(offset)).astype(np.float32)


def edsr_graph(
    r: int,
    *,
    blocks: int = 2,
    features: int = 8,
    seed: int = 0,
    quantized: bool = False,
    res_scale: float = 0.1,
    add_op: str = "Add",
    writer: GraphWriter | None = None,
) -> tuple[bytes, dict[str, np.ndarray]]:
    """An EDSR graph laid out as Saafke/EDSR_Tensorflow's ``edsr.py`` + ``run.py export``
    write it (tiny widths), and its TF-layout weights.

    ``IteratorGetNext`` (NHWC BGR minus the mean, 0..255) -> ``Conv2D`` (resFilter_one,
    3->F) + ``add`` (BiasOne) = the head; per block ``Conv2D_k`` (resFilter{2i}) + add
    (resBias{2i}), ``Relu``, ``Conv2D`` (resFilter{2i+1}) + add (resBias{2i+1}), ``mul``
    by the scalar ``mul/y`` (0.1), ``add`` back to the block's input; ``Conv2D``
    (resFilter_two) + add (BiasTwo), ``add`` of the head's output; ``Conv2D``
    (resFilter_three, F->3*r*r) + add (BiasThree), ``NHWC_output`` (DepthToSpace r),
    ``NCHW_output`` (Transpose 0,3,1,2). The ``tf.identity`` and the variables' ``/read``
    Identity nodes are gone (``optimize_for_inference`` removes them).

    ``quantized``: every kernel as TF's ``quantize_weights`` leaves it (a Dequantize of
    uint8 values; in the real files every kernel has at least 1024 values and is
    quantized, the biases and the 0.1 are not). The returned kernels are then the values
    OpenCV dequantizes them to. ``writer``: a GraphWriter (subclass) to write with, e.g.
    one that changes a node on the way.
    """
    rng = np.random.default_rng(seed)
    f = features
    g = writer or GraphWriter()
    w: dict[str, np.ndarray] = {}
    count: dict[str, int] = {}

    def name(op: str) -> str:
        k = count.get(op, 0)
        count[op] = k + 1
        return op if k == 0 else f"{op}_{k}"

    def conv_bias(x: str, key: str, bias_key: str, shape: tuple[int, ...], std: float) -> str:
        kernel = _rand(rng, *shape, std=std)
        if quantized:
            q, lo, hi = quantize_weights(kernel)
            kernel = dequantize_like_opencv(q, lo, hi)
            node = g.dequantize(key, q, lo, hi)
        else:
            node = g.const(key, kernel)
        w[key] = kernel
        w[bias_key] = _rand(rng, shape[3], std=2.0)
        conv = g.conv(name("Conv2D"), x, node)
        return g.node(name("add"), add_op, conv, g.const(bias_key, w[bias_key]))

    x = g.node("IteratorGetNext", "Placeholder", dtype=_int(6, 1))
    head = conv_bias(x, "resFilter_one", "BiasOne", (3, 3, 3, f), 0.1)
    h = head
    for i in range(blocks):
        t = conv_bias(h, f"resFilter{2 * i}", f"resBias{2 * i}", (3, 3, f, f), 0.1)
        t = g.node(name("Relu"), "Relu", t)
        t = conv_bias(t, f"resFilter{2 * i + 1}", f"resBias{2 * i + 1}", (3, 3, f, f), 0.1)
        mul = name("mul")
        y = g.const(f"{mul}/y", np.array(res_scale, np.float32), as_values=True)
        h = g.node(name("add"), add_op, h, g.node(mul, "Mul", t, y))
    t = conv_bias(h, "resFilter_two", "BiasTwo", (3, 3, f, f), 0.1)
    h = g.node(name("add"), add_op, t, head)
    t = conv_bias(h, "resFilter_three", "BiasThree", (3, 3, f, 3 * r * r), 0.05)
    out = g.node(
        "NHWC_output", "DepthToSpace", t, block_size=_int(3, r), data_format=_len(2, "NHWC")
    )
    g.output(out)
    w["res_scale"] = np.array(res_scale, np.float32)
    return g.bytes(), w
