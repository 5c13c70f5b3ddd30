"""OpenCV dnn_superres ``.pb`` graphs (ESPCN, FSRCNN, FSRCNN-small, LapSRN, EDSR) as state dicts.

The files are TensorFlow ``GraphDef`` protobufs. They are read here with a small
wire-format reader in pure Python rather than with ``cv2.dnn.readNetFromTensorflow``:

- it is plain data parsing: nothing in the file is imported, evaluated or run, and no
  OpenCV importer (whose behaviour changes between engines and versions) sits between the
  file and the tensors;
- it sees the whole graph, not what an importer made of it, so every op can be checked:
  the activations (ReLU, a PReLU written out as ``relu(x) + alpha * (x - |x|) * 0.5``, a
  LeakyReLU written out as ``relu(x) - 0.2 * relu(-1 * x)``, the final tanh of ESPCN), the
  DepthToSpace block size and the final scalar bias of FSRCNN are read from the graph, and
  anything else is refused instead of silently dropped;
- it needs neither TensorFlow nor the ``protobuf`` package. The reader is bounded: every
  length is checked against the buffer, varints are at most 10 bytes, the graph walk
  visits each node at most once, and the file size is capped.

ESPCN and FSRCNN graphs are chains: walked back from their single output to the
placeholder, turned into a list of layers, then matched against the torch modules:

- ESPCN: conv5x5+b, act, conv3x3+b, act, conv3x3+b, DepthToSpace(r) [, tanh]
  -> :class:`vsr.models.archs.espcn.ESPCN` (``conv1``/``conv2``/``conv3``);
- FSRCNN / FSRCNN-small: conv5x5+b, PReLU, conv1x1+b, PReLU, m x [conv3x3+b, PReLU],
  conv1x1+b, PReLU, conv1x1, DepthToSpace(r), scalar bias
  -> :class:`vsr.models.archs.fsrcnn.FSRCNN` with ``upsampler="subpixel"``.

LapSRN graphs branch (a feature and an image branch per x2 level, and an output per
level): they are matched node by node from the outputs back, each node's inputs checked
against the pattern, -> :class:`vsr.models.archs.lapsrn.LapSRN`:

- per level: LeakyReLU(conv3x3+b) with a scalar bias on the first conv (1->64), nine more
  conv3x3 (64->64)+b, each with LeakyReLU; conv4x4 (64->4) + DepthToSpace(2) + LeakyReLU
  (the residual); conv4x4 (1->4) + DepthToSpace(2) on the image; their sum, LeakyReLU;
- the first level reads the input twice; level k's feature branch reads level k-1's
  residual and its image branch level k-1's output; x4/x8 graphs also output the x2/x4
  images (each output must be one of the levels' images; the deepest is the result).

EDSR graphs (``EDSR_x{2,3,4}.pb`` of Saafke/EDSR_Tensorflow, which dnn_superres links to)
branch too (a skip per residual block and a global one): matched node by node from the
output back -> :class:`vsr.models.archs.edsr.EDSR` with ``layout="opencv"``:

- ``Conv2D`` (3->F) + bias = the head; B blocks ``x + (conv(relu(conv(x) + b)) + b) *
  s`` (``Mul`` by a scalar Const, 0.1 in Saafke's ``edsr.py``; the same in every block,
  read from the graph as ``res_scale``); ``Conv2D`` (F->F) + bias, ``Add`` of the head;
  ``Conv2D`` (F -> 3*r*r) + bias, ``DepthToSpace(r)`` (``NHWC_output``, one stage for
  every scale, x4 included), ``Transpose`` (``NCHW_output``). All kernels 3x3, biases
  added with ``Add``/``AddV2`` (``x + bias``), no activation at the end. Blocks, width
  and scale are read from the graph (the published files: 32 blocks, 256 features);
- the kernels may be ``Dequantize`` (T quint8, mode MIN_FIRST) of three Consts, what
  TF's ``quantize_weights`` transform writes: dnn_superres' README says its EDSR files
  are a quantized version (about 38 MB instead of 150 MB, i.e. 8-bit weights). They are
  dequantized with OpenCV's importer arithmetic, bit-identical to its ``getParam``;
- the network works on BGR in 0..255 minus the DIV2K BGR mean (103.15, 111.56, 114.36),
  which is not in the graph: OpenCV's ``upsample`` subtracts it and adds it back. The
  torch module does both itself, so its contract stays RGB in [0, 1].

The EDSR conversion was written from the upstream source only, because the real EDSR
``.pb`` files were not available here: Saafke/EDSR_Tensorflow's ``edsr.py`` (the
network), ``run.py`` (``export``: ``convert_variables_to_constants``,
``optimize_for_inference``, which drops the Identity nodes and turns ``IteratorGetNext``
into a Placeholder, ``sort_by_execution_order``), ``main.py`` / ``data_utils.py`` (the
BGR mean, 0..255), TF's ``quantize_weights.cc``, and opencv_contrib's
``dnn_superres.cpp`` (the ``edsr`` branch of ``upsample``). It is tested on synthetic
graphs written in that layout (float and 8-bit kernels), which cv2.dnn_superres runs and
matches within one grey level; a real file may still hold something else, which the
strict matching then refuses with the node it stopped at.

:func:`upsample_like_opencv` is the reference for comparisons: the pre- and
post-processing of ``cv2.dnn_superres.DnnSuperResImpl.upsample`` with a torch module in
place of the OpenCV network.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vsr.errors import WeightsError

#: Larger than any dnn_superres graph (EDSR x4 is about 38 MB); refuses huge files early.
MAX_BYTES = 256 * 1024 * 1024

#: Ops a graph may hold. Anything else is refused by name.
_SUPPORTED_OPS = frozenset(
    {
        "Const",
        "Placeholder",
        "Identity",
        "Conv2D",
        "Add",
        "AddV2",
        "BiasAdd",
        "Sub",
        "Mul",
        "Abs",
        "Relu",
        "Tanh",
        "DepthToSpace",
        "Transpose",
        "Dequantize",
    }
)

_DT_FLOAT, _DT_INT32, _DT_QUINT8 = 1, 3, 12
_NHWC_TO_NCHW = (0, 3, 1, 2)


class _GraphError(Exception):
    """Internal: the graph is not what the matcher expects (becomes a WeightsError)."""


# --------------------------------------------------------------------------------------
# Protobuf wire format
# --------------------------------------------------------------------------------------


def _varint(buf: memoryview, i: int) -> tuple[int, int]:
    value = shift = 0
    for _ in range(10):
        if i >= len(buf):
            raise _GraphError("truncated varint")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7
    raise _GraphError("varint longer than 10 bytes")


def _fields(buf: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """(field number, wire type, value) for each field of one message.

    Varints come back as ints, the other wire types as views of their bytes.
    """
    i, n = 0, len(buf)
    while i < n:
        tag, i = _varint(buf, i)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise _GraphError("field number 0")
        if wire == 0:
            value, i = _varint(buf, i)
            yield number, wire, value
            continue
        if wire == 2:
            size, i = _varint(buf, i)
        elif wire == 1:
            size = 8
        elif wire == 5:
            size = 4
        else:  # 3/4 (groups) never occur in a GraphDef; 6/7 do not exist
            raise _GraphError(f"unsupported wire type {wire}")
        if i + size > n:
            raise _GraphError("truncated field")
        yield number, wire, buf[i : i + size]
        i += size


def _bytes(value: int | memoryview) -> memoryview:
    if not isinstance(value, memoryview):
        raise _GraphError("expected a length-delimited field")
    return value


def _int(value: int | memoryview) -> int:
    if not isinstance(value, int):
        raise _GraphError("expected a varint field")
    return value


def _signed(value: int) -> int:
    """A varint read as a two's complement int64 (how protobuf writes negative ints)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _text(value: int | memoryview) -> str:
    try:
        return bytes(_bytes(value)).decode("utf-8")
    except UnicodeDecodeError:
        raise _GraphError("a name is not UTF-8") from None


# --------------------------------------------------------------------------------------
# GraphDef -> nodes
# --------------------------------------------------------------------------------------


@dataclass
class _Node:
    name: str
    op: str
    inputs: list[str] = field(default_factory=list)
    attrs: dict[str, memoryview] = field(default_factory=dict)  # raw AttrValue messages


def _parse_graph(data: bytes) -> dict[str, _Node]:
    """GraphDef {1: repeated NodeDef, 2: FunctionDefLibrary, 3: version, 4: VersionDef}."""
    nodes: dict[str, _Node] = {}
    for number, wire, value in _fields(memoryview(data)):
        if number == 1 and wire == 2:
            node = _parse_node(_bytes(value))
            if node.name in nodes:
                raise _GraphError(f"two nodes named {node.name!r}")
            nodes[node.name] = node
        elif number == 2 and wire == 2:
            if len(_bytes(value)):
                raise _GraphError("the graph defines functions")
        elif (number, wire) not in ((3, 0), (4, 2)):
            raise _GraphError(f"unexpected GraphDef field {number}")
    if not nodes:
        raise _GraphError("no nodes")
    return nodes


def _parse_node(buf: memoryview) -> _Node:
    """NodeDef {1 name, 2 op, 3 repeated input, 4 device, 5 map<string, AttrValue> attr}."""
    node = _Node("", "")
    for number, wire, value in _fields(buf):
        if wire != 2:
            raise _GraphError(f"unexpected NodeDef field {number}")
        if number == 1:
            node.name = _text(value)
        elif number == 2:
            node.op = _text(value)
        elif number == 3:
            node.inputs.append(_text(value))
        elif number == 5:
            key, attr = "", memoryview(b"")
            for n, w, v in _fields(_bytes(value)):
                if n == 1 and w == 2:
                    key = _text(v)
                elif n == 2 and w == 2:
                    attr = _bytes(v)
            node.attrs[key] = attr
    if not node.name or not node.op:
        raise _GraphError("a node without a name or an op")
    return node


def _attr(node: _Node, key: str) -> dict[int, int | memoryview]:
    """The fields of one AttrValue {1 list, 2 s, 3 i, 4 f, 5 b, 6 type, 7 shape, 8 tensor}."""
    if key not in node.attrs:
        raise _GraphError(f"{node.op} node {node.name!r} has no {key!r} attribute")
    return {n: v for n, _, v in _fields(node.attrs[key])}


def _attr_str(node: _Node, key: str, default: str) -> str:
    if key not in node.attrs:
        return default
    return _text(_attr(node, key).get(2, memoryview(b"")))


def _attr_int(node: _Node, key: str) -> int:
    value = _attr(node, key).get(3)
    if not isinstance(value, int):
        raise _GraphError(f"{node.op} node {node.name!r}: {key!r} is not an integer")
    return value


def _attr_ints(node: _Node, key: str, default: tuple[int, ...]) -> tuple[int, ...]:
    """A ListValue's ``i`` (field 3), packed or not."""
    if key not in node.attrs:
        return default
    out: list[int] = []
    lst = _attr(node, key).get(1, memoryview(b""))
    for n, w, v in _fields(_bytes(lst)):
        if n != 3:
            continue
        if w == 0:
            out.append(_signed(_int(v)))
        else:
            packed, i = _bytes(v), 0
            while i < len(packed):
                x, i = _varint(packed, i)
                out.append(_signed(x))
    return tuple(out)


def _const(node: _Node) -> np.ndarray:
    """The value of a Const node: TensorProto {1 dtype, 2 shape, 4 tensor_content,
    5 float_val, 7 int_val}, float32, int32 or quint8 (TF keeps quint8 in int_val when
    not in tensor_content), little-endian."""
    if node.op != "Const":
        raise _GraphError(f"{node.name!r} is a {node.op}, not a constant")
    tensor = _bytes(_attr(node, "value").get(8, memoryview(b"")))
    dtype, shape, content = 0, [], None
    values: list[float | int] = []
    for number, wire, value in _fields(tensor):
        if number == 1:
            dtype = _int(value)
        elif number == 2:
            for n, _, dim in _fields(_bytes(value)):
                if n == 2:
                    sizes = [_signed(_int(v)) for m, _, v in _fields(_bytes(dim)) if m == 1]
                    shape.append(sizes[0] if sizes else 0)
        elif number == 4:
            content = bytes(_bytes(value))
        elif number == 5:  # float_val: packed (2) or one fixed32 (5)
            raw = bytes(_bytes(value))
            values.extend(struct.unpack(f"<{len(raw) // 4}f", raw[: len(raw) // 4 * 4]))
        elif number == 7:  # int_val: packed (2) or one varint (0)
            if wire == 0:
                values.append(_signed(_int(value)))
            else:
                packed, i = _bytes(value), 0
                while i < len(packed):
                    x, i = _varint(packed, i)
                    values.append(_signed(x))
    np_dtype: np.dtype
    if dtype == _DT_FLOAT:
        np_dtype = np.dtype("<f4")
    elif dtype == _DT_INT32:
        np_dtype = np.dtype("<i4")
    elif dtype == _DT_QUINT8:
        np_dtype = np.dtype("u1")
    else:
        raise _GraphError(f"constant {node.name!r} has data type {dtype}, not float32/int32/quint8")
    count = math.prod(shape)
    if any(d < 0 for d in shape) or count > MAX_BYTES // np_dtype.itemsize:
        raise _GraphError(f"constant {node.name!r} has shape {shape}")
    if content is not None:
        if len(content) != count * np_dtype.itemsize:
            raise _GraphError(f"constant {node.name!r}: {len(content)} bytes for shape {shape}")
        array = np.frombuffer(content, dtype=np_dtype).astype(np_dtype.newbyteorder("="))
        return array.reshape(shape)
    if np_dtype.kind != "f" and values:
        low, high = (0, 255) if dtype == _DT_QUINT8 else (-(2**31), 2**31 - 1)
        if not all(isinstance(v, int) and low <= v <= high for v in values):
            raise _GraphError(f"constant {node.name!r} holds values out of its type's range")
    if len(values) == count:
        array = np.array(values, dtype=np_dtype.newbyteorder("="))
    elif len(values) == 1:  # TF stores a constant fill as one value
        array = np.full(count, values[0], dtype=np_dtype.newbyteorder("="))
    else:
        raise _GraphError(f"constant {node.name!r}: {len(values)} values for shape {shape}")
    return array.reshape(shape)


def _dequantize(node: _Node, data: _Node, lo: _Node, hi: _Node) -> np.ndarray:
    """A ``Dequantize`` node as TF's ``quantize_weights`` graph transform writes it (T
    quint8, mode MIN_FIRST, three Const inputs), computed as OpenCV's TF importer does
    (``addConstNodes``): ``q * s + s * round(min / s)`` with ``s = (max - min) / 255``
    in float32, the product and the sum rounded once (what OpenCV's vectorised
    ``convertTo`` computes with FMA; bit-identical to ``getParam`` on the synthetic
    graphs). TF's own kernel rounds a few values 1 ulp differently."""
    if _attr(node, "T").get(6) != _DT_QUINT8:
        raise _GraphError(f"Dequantize {node.name!r} does not read quint8 values")
    mode = _attr_str(node, "mode", "MIN_COMBINED")
    if mode != "MIN_FIRST":
        raise _GraphError(f"Dequantize {node.name!r} has mode {mode}, not MIN_FIRST")
    if "narrow_range" in node.attrs and _attr(node, "narrow_range").get(5):
        raise _GraphError(f"Dequantize {node.name!r} has a narrow range")
    if "axis" in node.attrs and _signed(_int(_attr(node, "axis").get(3, 0))) not in (0, -1):
        raise _GraphError(f"Dequantize {node.name!r} is per-axis")
    if "dtype" in node.attrs and _attr(node, "dtype").get(6, _DT_FLOAT) != _DT_FLOAT:
        raise _GraphError(f"Dequantize {node.name!r} does not make float32")
    q = _const(data)
    bounds = [_const(n) for n in (lo, hi)]
    if q.dtype != np.uint8 or any(b.dtype != np.float32 or b.size != 1 for b in bounds):
        raise _GraphError(f"Dequantize {node.name!r}: expected uint8 values, float min, max")
    f32 = np.float32
    minimum, maximum = (f32(b.reshape(-1)[0]) for b in bounds)
    step = f32(maximum - minimum) / f32(255)
    if not np.isfinite(step) or step <= 0:
        raise _GraphError(f"Dequantize {node.name!r} has the range {minimum}..{maximum}")
    offset = step * f32(np.rint(minimum / step))
    return (q.astype(np.float64) * np.float64(step) + np.float64(offset)).astype(np.float32)


# --------------------------------------------------------------------------------------
# Nodes -> layers (walking back from the output)
# --------------------------------------------------------------------------------------


@dataclass
class _Layer:
    kind: str  # conv, bias, relu, prelu, tanh, d2s, transpose
    value: np.ndarray | None = None  # conv: HWIO kernel; bias/prelu: vector
    block: int = 0  # d2s


class _Graph:
    def __init__(self, nodes: dict[str, _Node]) -> None:
        self.nodes = nodes
        unknown = sorted({n.op for n in nodes.values()} - _SUPPORTED_OPS)
        self.unknown_ops = unknown
        consumed = {self._ref(i) for n in nodes.values() for i in n.inputs if i[:1] != "^"}
        self.outputs = [n for n in nodes.values() if n.name not in consumed and n.op != "Const"]
        self.count = {op: sum(n.op == op for n in nodes.values()) for op in _SUPPORTED_OPS}

    def _ref(self, ref: str) -> str:
        name, _, index = ref.partition(":")
        if index not in ("", "0"):
            raise _GraphError(f"input {ref!r} uses output {index} of a node")
        return name

    def input(self, node: _Node, k: int) -> _Node:
        data = [i for i in node.inputs if i[:1] != "^"]  # control dependencies carry no data
        if k >= len(data):
            raise _GraphError(f"{node.op} node {node.name!r} lacks input {k}")
        name = self._ref(data[k])
        if name not in self.nodes:
            raise _GraphError(f"{node.op} node {node.name!r} reads a missing node {name!r}")
        return self.nodes[name]

    def data(self, node: _Node) -> _Node:
        """``node`` with any Identity nodes in front of it skipped."""
        for _ in range(len(self.nodes)):
            if node.op != "Identity":
                return node
            node = self.input(node, 0)
        raise _GraphError(f"a cycle of Identity nodes at {node.name!r}")

    def is_value(self, node: _Node) -> bool:
        return self.data(node).op in ("Const", "Dequantize")

    def value(self, node: _Node) -> np.ndarray:
        """A Const's value, or a Dequantize's (of quantize_weights' three Consts)."""
        node = self.data(node)
        if node.op != "Dequantize":
            return _const(node)
        data = [i for i in node.inputs if i[:1] != "^"]
        if len(data) != 3:
            raise _GraphError(f"Dequantize {node.name!r} has {len(data)} inputs, not 3")
        return _dequantize(node, *(self.data(self.input(node, k)) for k in range(3)))

    def family(self) -> str:
        """A first guess from the op counts: lapsrn, fsrcnn, edsr, espcn or unknown."""
        n = self.count["DepthToSpace"]
        if n > 1 or len(self.outputs) > 1:  # LapSRN: two DepthToSpace per x2 level
            return "lapsrn" if n >= 2 and n % 2 == 0 and self.count["Sub"] else "unknown"
        if self.count["Abs"]:
            return "fsrcnn"
        if self.count["Mul"] and not self.count["Sub"]:
            return "edsr"  # residual blocks scaled by a Mul; ESPCN has no Mul
        if self.count["Tanh"] or (self.count["Relu"] and not self.count["Sub"]):
            return "espcn"
        return "unknown"

    def layers(self) -> list[_Layer]:
        """The chain from the placeholder to the single output, in order."""
        if len(self.outputs) != 1:
            names = ", ".join(repr(n.name) for n in self.outputs)
            raise _GraphError(f"{len(self.outputs)} outputs ({names}), expected one")
        out: list[_Layer] = []
        node = self.outputs[0]
        seen: set[str] = set()
        while node.op != "Placeholder":
            if node.name in seen:
                raise _GraphError(f"the graph has a cycle at {node.name!r}")
            seen.add(node.name)
            layer, node = self._step(node)
            if layer is not None:
                out.append(layer)
        out.reverse()
        return out

    def _step(self, node: _Node) -> tuple[_Layer | None, _Node]:
        """The layer that ``node`` computes, and the node it reads its data from."""
        op = node.op
        if op == "Identity":
            return None, self.input(node, 0)
        if op in ("Relu", "Tanh"):
            return _Layer(op.lower()), self.input(node, 0)
        if op == "Transpose":
            perm = tuple(int(p) for p in _const(self.input(node, 1)).reshape(-1))
            return _Layer("transpose", np.array(perm)), self.input(node, 0)
        if op == "DepthToSpace":
            if _attr_str(node, "data_format", "NHWC") != "NHWC":
                raise _GraphError(f"DepthToSpace {node.name!r} is not NHWC")
            return _Layer("d2s", block=_attr_int(node, "block_size")), self.input(node, 0)
        if op == "Conv2D":
            self._check_conv(node)
            kernel = _const(self.input(node, 1))
            if kernel.ndim != 4:
                raise _GraphError(f"Conv2D {node.name!r} has a {kernel.ndim}-d kernel")
            return _Layer("conv", kernel), self.input(node, 0)
        if op in ("Add", "AddV2", "BiasAdd"):
            a, b = self.input(node, 0), self.input(node, 1)
            if b.op == "Const" or a.op == "Const":
                data, const = (a, b) if b.op == "Const" else (b, a)
                return _Layer("bias", _const(const).reshape(-1)), data
            prelu = self._match_prelu(a, b) or self._match_prelu(b, a)
            if prelu is not None:
                return prelu
            raise _GraphError(f"{op} node {node.name!r} sums two branches")
        if op == "Sub":
            raise _GraphError(f"Sub node {node.name!r} is not part of a PReLU")
        raise _GraphError(f"{op} node {node.name!r} is not supported here")

    def _check_conv(self, node: _Node) -> None:
        padding = _attr_str(node, "padding", "")
        if padding != "SAME":
            raise _GraphError(f"Conv2D {node.name!r} has padding {padding or 'unset'}")
        if _attr_str(node, "data_format", "NHWC") != "NHWC":
            raise _GraphError(f"Conv2D {node.name!r} is not NHWC")
        for key in ("strides", "dilations"):
            if set(_attr_ints(node, key, (1, 1, 1, 1))) != {1}:
                raise _GraphError(f"Conv2D {node.name!r} has {key} other than 1")

    def _match_prelu(self, relu: _Node, scaled: _Node) -> tuple[_Layer, _Node] | None:
        """``relu(x) + alpha * (x - |x|) * k`` (any Mul order): PReLU with slope 2*k*alpha."""
        if relu.op != "Relu" or scaled.op != "Mul":
            return None
        x = self.input(relu, 0)
        consts: list[np.ndarray] = []
        factors: list[_Node] = []
        stack = [scaled]
        for _ in range(16):  # a few Mul nodes at most; bounds a malicious Mul lattice
            if not stack:
                break
            node = stack.pop()
            if node.op == "Mul":
                stack += [self.input(node, 0), self.input(node, 1)]
            elif node.op == "Const":
                consts.append(_const(node))
            else:
                factors.append(node)
        if stack or len(factors) != 1 or factors[0].op != "Sub":
            return None
        sub = factors[0]
        absx = self.input(sub, 1)
        if self.input(sub, 0) is not x or absx.op != "Abs" or self.input(absx, 0) is not x:
            return None
        slope = np.full(1, 2.0, dtype=np.float32)
        for c in consts:
            if c.size != 1 and slope.size != 1:
                return None  # two per-channel factors: not this pattern
            slope = (slope.reshape(-1) * c.astype(np.float32).reshape(-1)).astype(np.float32)
        return _Layer("prelu", slope), x


# --------------------------------------------------------------------------------------
# Layers -> torch state dicts
# --------------------------------------------------------------------------------------


def _oihw(kernel: np.ndarray) -> torch.Tensor:
    """TF HWIO -> torch OIHW."""
    return torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))


def _vec(values: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(values, dtype=np.float32).reshape(-1))


def _shuffle_order(channels: int, r: int) -> list[int]:
    """Output channels reordered from TF DepthToSpace ((i*r+j)*C + c) to torch
    PixelShuffle (c*r*r + i*r + j). The identity for one channel."""
    return [k * channels + c for c in range(channels) for k in range(r * r)]


class _Chain:
    """Consumes a layer list from the front, with messages that say what was expected."""

    def __init__(self, layers: list[_Layer]) -> None:
        self.layers = layers
        self.i = 0

    def peek(self) -> str:
        return self.layers[self.i].kind if self.i < len(self.layers) else "end"

    def take(self, kind: str, what: str) -> _Layer:
        if self.peek() != kind:
            raise _GraphError(f"expected {what}, found {self.peek()}")
        self.i += 1
        return self.layers[self.i - 1]

    def kernel_size(self) -> int:
        """The kernel height of the next layer if it is a conv, else 0."""
        if self.peek() != "conv":
            return 0
        value = self.layers[self.i].value
        assert value is not None
        return int(value.shape[0])

    def conv(self, size: int, cin: int, what: str) -> np.ndarray:
        kernel = self.take("conv", what).value
        assert kernel is not None
        h, w, i, _ = kernel.shape
        if (h, w) != (size, size) or i != cin:
            raise _GraphError(f"{what}: {h}x{w} kernel on {i} channels, not {size}x{size} on {cin}")
        return kernel

    def bias(self, size: int, what: str) -> np.ndarray:
        value = self.take("bias", what).value
        assert value is not None
        if value.size != size:
            raise _GraphError(f"{what}: {value.size} values, expected {size}")
        return value

    def end(self) -> None:
        if self.peek() == "transpose":
            layer = self.take("transpose", "the output transpose")
            assert layer.value is not None
            if tuple(layer.value) != _NHWC_TO_NCHW:
                raise _GraphError(f"output transpose {tuple(layer.value)}, expected NHWC->NCHW")
        if self.peek() != "end":
            raise _GraphError(f"unexpected {self.peek()} after the output")


def _conv_channels(layers: list[_Layer]) -> int:
    first = next((la.value for la in layers if la.kind == "conv"), None)
    if first is None:
        raise _GraphError("no convolution")
    return int(first.shape[2])


def _espcn(layers: list[_Layer]) -> tuple[dict[str, torch.Tensor], dict[str, str], int]:
    chain = _Chain(layers)
    channels = _conv_channels(layers)
    w1 = chain.conv(5, channels, "conv1 (5x5)")
    b1 = chain.bias(w1.shape[3], "conv1's bias")
    act = "tanh" if chain.peek() == "tanh" else "relu"
    chain.take(act, "an activation after conv1")
    w2 = chain.conv(3, w1.shape[3], "conv2 (3x3)")
    b2 = chain.bias(w2.shape[3], "conv2's bias")
    chain.take(act, f"{act} after conv2")
    w3 = chain.conv(3, w2.shape[3], "conv3 (3x3)")
    b3 = chain.bias(w3.shape[3], "conv3's bias")
    r = chain.take("d2s", "DepthToSpace").block
    if r < 1 or w3.shape[3] != channels * r * r:
        raise _GraphError(f"conv3 has {w3.shape[3]} outputs for DepthToSpace({r})")
    out_act = "tanh" if chain.peek() == "tanh" else "none"
    if out_act == "tanh":
        chain.take("tanh", "tanh")
    chain.end()
    order = _shuffle_order(channels, r)
    state = {
        "conv1.weight": _oihw(w1),
        "conv1.bias": _vec(b1),
        "conv2.weight": _oihw(w2),
        "conv2.bias": _vec(b2),
        "conv3.weight": _oihw(w3[..., order]),
        "conv3.bias": _vec(b3[order]),
    }
    meta = {"act": act, "out_act": out_act, "variant": "ESPCN"}
    return state, meta, r


def _fsrcnn(layers: list[_Layer]) -> tuple[dict[str, torch.Tensor], dict[str, str], int]:
    chain = _Chain(layers)
    channels = _conv_channels(layers)
    state: dict[str, torch.Tensor] = {}
    index = 0

    def conv_prelu(size: int, cin: int, what: str) -> int:
        nonlocal index
        kernel = chain.conv(size, cin, what)
        cout = kernel.shape[3]
        state[f"body.{index}.weight"] = _oihw(kernel)
        state[f"body.{index}.bias"] = _vec(chain.bias(cout, f"{what}'s bias"))
        alpha = chain.take("prelu", f"a PReLU after {what}").value
        assert alpha is not None
        if alpha.size not in (1, cout):
            raise _GraphError(f"PReLU after {what}: {alpha.size} slopes for {cout} channels")
        state[f"body.{index + 1}.weight"] = _vec(np.broadcast_to(alpha, (cout,)))
        index += 2
        return cout

    d = conv_prelu(5, channels, "the feature conv (5x5)")
    s = conv_prelu(1, d, "the shrinking conv (1x1)")
    m = 0
    while chain.kernel_size() == 3:
        conv_prelu(3, s, f"mapping conv {m + 1} (3x3)")
        m += 1
    if conv_prelu(1, s, "the expanding conv (1x1)") != d:
        raise _GraphError("the expanding conv does not restore the feature width")
    tail = chain.conv(1, d, "the sub-pixel conv (1x1)")
    if chain.peek() == "bias":
        raise _GraphError("the sub-pixel conv has a per-channel bias")
    r = chain.take("d2s", "DepthToSpace").block
    if r < 1 or tail.shape[3] != channels * r * r:
        raise _GraphError(f"the sub-pixel conv has {tail.shape[3]} outputs for DepthToSpace({r})")
    bias = chain.bias(1, "the final scalar bias")
    chain.end()
    state["tail.0.weight"] = _oihw(tail[..., _shuffle_order(channels, r)])
    state["tail_bias"] = _vec(bias)
    variant = {(56, 12, 4): "FSRCNN", (32, 5, 1): "FSRCNN-small"}.get((d, s, m), "FSRCNN")
    meta = {"upsampler": "subpixel", "variant": variant}
    return state, meta, r


# --------------------------------------------------------------------------------------
# LapSRN: a graph with branches, matched node by node from the outputs back
# --------------------------------------------------------------------------------------

#: More x2 levels than any dnn_superres graph has (x8 is 3); bounds the walk.
_MAX_LEVELS = 8


@dataclass
class _LapLevel:
    """One x2 level, read backwards from its output node."""

    out: _Node  # act(image branch + res): the image at this level
    res: _Node  # act(DepthToSpace(conv(h))): the residual, next level's feature input
    img_in: _Node  # the image this level upsamples
    feat_in: _Node  # the single-channel map its feature branch starts from
    branch: list[tuple[np.ndarray, np.ndarray]]  # (HWIO kernel, bias) in order
    upsample: np.ndarray  # HWIO (k, k, F, 4)
    image: np.ndarray  # HWIO (k, k, 1, 4)
    slopes: list[float]


class _Matcher:
    """Matches ops exactly, node by node from an output back: every input of every node
    on the way is accounted for, so anything else in the graph makes the match fail.
    Identity nodes are looked through; a weight is a Const or a quantize_weights
    Dequantize."""

    def __init__(self, graph: _Graph) -> None:
        self.g = graph

    def _inputs(self, node: _Node, op: str | tuple[str, ...], count: int) -> list[_Node]:
        ops = (op,) if isinstance(op, str) else op
        node = self.g.data(node)
        if node.op not in ops:
            raise _GraphError(f"expected {' or '.join(ops)} at {node.name!r}, found {node.op}")
        data = [i for i in node.inputs if i[:1] != "^"]
        if len(data) != count:
            raise _GraphError(f"{node.op} node {node.name!r} has {len(data)} inputs")
        return [self.g.data(self.g.input(node, k)) for k in range(count)]

    def _split_const(self, node: _Node, op: str | tuple[str, ...]) -> tuple[np.ndarray, _Node]:
        """(the constant, the other input) of a binary node with one constant input."""
        a, b = self._inputs(node, op, 2)
        if self.g.is_value(a) and not self.g.is_value(b):
            return self.g.value(a), b
        if self.g.is_value(b) and not self.g.is_value(a):
            return self.g.value(b), a
        raise _GraphError(f"{node.op} node {node.name!r} does not have one constant input")

    def conv(self, node: _Node) -> tuple[np.ndarray, _Node]:
        """A SAME, stride-1 Conv2D -> (HWIO kernel, its data input)."""
        x, w = self._inputs(node, "Conv2D", 2)
        self.g._check_conv(self.g.data(node))
        if not self.g.is_value(w):
            raise _GraphError(f"Conv2D {node.name!r} has no constant kernel")
        kernel = self.g.value(w)
        if kernel.ndim != 4 or kernel.dtype != np.float32:
            raise _GraphError(f"Conv2D {node.name!r} has a {kernel.ndim}-d {kernel.dtype} kernel")
        return kernel, x


class _LapSRNMatcher(_Matcher):
    """LapSRN's levels, each read once."""

    def __init__(self, graph: _Graph) -> None:
        super().__init__(graph)
        self._levels: dict[str, _LapLevel] = {}  # by output node: each level is read once

    def leaky(self, node: _Node) -> tuple[_Node, float]:
        """``relu(x) - s * relu(-1 * x)`` -> (x, s)."""
        relu, scaled = self._inputs(node, "Sub", 2)
        (x,) = self._inputs(relu, "Relu", 1)
        slope, relu_neg = self._split_const(scaled, "Mul")
        (neg,) = self._inputs(relu_neg, "Relu", 1)
        minus_one, x2 = self._split_const(neg, "Mul")
        if x2 is not x or minus_one.size != 1 or float(minus_one.reshape(-1)[0]) != -1.0:
            raise _GraphError(f"{node.name!r} is not relu(x) - s * relu(-x)")
        if slope.size != 1:
            raise _GraphError(f"LeakyReLU {node.name!r} has {slope.size} slopes")
        return x, float(slope.reshape(-1)[0])

    def d2s(self, node: _Node) -> _Node:
        (x,) = self._inputs(node, "DepthToSpace", 1)
        if _attr_str(node, "data_format", "NHWC") != "NHWC":
            raise _GraphError(f"DepthToSpace {node.name!r} is not NHWC")
        if _attr_int(node, "block_size") != 2:
            raise _GraphError(f"DepthToSpace {node.name!r} is not x2")
        return x

    def level(self, out: _Node) -> _LapLevel:
        total, s_out = self.leaky(out)
        a, b = self._inputs(total, ("Add", "AddV2"), 2)
        image_d2s, res = (a, b) if a.op == "DepthToSpace" else (b, a)
        image, img_in = self.conv(self.d2s(image_d2s))
        up_d2s, s_res = self.leaky(res)
        upsample, h = self.conv(self.d2s(up_d2s))
        slopes = [s_out, s_res]
        branch: list[tuple[np.ndarray, np.ndarray]] = []
        node = h
        for _ in range(len(self.g.nodes)):
            pre, slope = self.leaky(node)
            bias, conv_node = self._split_const(pre, ("Add", "AddV2", "BiasAdd"))
            kernel, node = self.conv(conv_node)
            branch.append((kernel, bias.reshape(-1)))
            slopes.append(slope)
            if kernel.shape[2] == 1:  # the branch's first conv reads a single-channel map
                break
        else:
            raise _GraphError(f"the feature branch before {h.name!r} does not end")
        branch.reverse()
        return _LapLevel(out, res, img_in, node, branch, upsample, image, slopes)

    def levels(self, out: _Node) -> list[_LapLevel]:
        """The levels leading to ``out``, first to last."""
        found: list[_LapLevel] = []
        node = out
        while node.op != "Placeholder":
            if len(found) == _MAX_LEVELS:
                raise _GraphError(f"more than {_MAX_LEVELS} levels")
            if node.name not in self._levels:
                self._levels[node.name] = self.level(node)
            level = self._levels[node.name]
            found.append(level)
            node = level.img_in
        found.reverse()
        if not found:
            raise _GraphError("the output is the input")
        for k, level in enumerate(found):
            expected = node if k == 0 else found[k - 1].res  # node: the placeholder
            if level.feat_in is not expected:
                what = "the input" if k == 0 else f"level {k}'s residual"
                raise _GraphError(f"level {k + 1}'s feature branch does not start from {what}")
        return found


def _lapsrn(graph: _Graph) -> tuple[dict[str, torch.Tensor], dict[str, str], int]:
    """LapSRN_x{2,4,8}: one or more outputs (the x2, x4, ... images), each an NHWC->NCHW
    Transpose; the deepest is the result and the others must be its intermediate levels."""
    matcher = _LapSRNMatcher(graph)
    chains: list[list[_LapLevel]] = []
    for output in graph.outputs:
        x, perm = matcher._inputs(output, "Transpose", 2)
        if tuple(int(p) for p in _const(perm).reshape(-1)) != _NHWC_TO_NCHW:
            raise _GraphError(f"output {output.name!r} is not an NHWC->NCHW transpose")
        chains.append(matcher.levels(x))
    if not chains:
        raise _GraphError("no output")
    levels = max(chains, key=len)
    outs = [level.out for level in levels]
    for chain in chains:
        if not any(chain[-1].out is o for o in outs):
            raise _GraphError(f"an output is not one of the {len(levels)} levels' images")

    first = levels[0].branch[0][0]
    features, kernel = int(first.shape[3]), int(first.shape[0])
    depth = len(levels[0].branch)
    up = int(levels[0].upsample.shape[0])
    slopes = {s for level in levels for s in level.slopes}
    if len(slopes) != 1:
        raise _GraphError(f"the LeakyReLU slopes differ: {sorted(slopes)}")
    state: dict[str, torch.Tensor] = {}
    for lv, level in enumerate(levels):
        p = f"levels.{lv}."
        if len(level.branch) != depth:
            raise _GraphError(f"level {lv + 1} has {len(level.branch)} convolutions, not {depth}")
        for i, (w, b) in enumerate(level.branch):
            cin = 1 if i == 0 else features
            if w.shape != (kernel, kernel, cin, features):
                raise _GraphError(f"level {lv + 1} conv {i + 1} has a kernel {w.shape}")
            if b.size not in (1, features):  # the first conv's bias is one scalar
                raise _GraphError(f"level {lv + 1} conv {i + 1} has {b.size} biases")
            state[f"{p}branch.{i}.weight"] = _oihw(w)
            state[f"{p}branch.{i}.bias"] = _vec(np.broadcast_to(b, (features,)))
        if level.upsample.shape != (up, up, features, 4):
            raise _GraphError(f"level {lv + 1}'s upsampling conv is {level.upsample.shape}")
        if level.image.shape != (up, up, 1, 4):
            raise _GraphError(f"level {lv + 1}'s image conv is {level.image.shape}")
        order = _shuffle_order(1, 2)
        state[f"{p}upsample.weight"] = _oihw(level.upsample[..., order])
        state[f"{p}image.weight"] = _oihw(level.image[..., order])
    meta = {"variant": "LapSRN", "negative_slope": f"{slopes.pop():.7g}"}
    return state, meta, 1 << len(levels)


# --------------------------------------------------------------------------------------
# EDSR (Saafke/EDSR_Tensorflow): residual blocks, matched node by node from the output back
# --------------------------------------------------------------------------------------

_ADD = ("Add", "AddV2")
_BIAS_ADD = ("Add", "AddV2", "BiasAdd")


@dataclass
class _EDSRBlock:
    conv1: tuple[np.ndarray, np.ndarray]  # (HWIO kernel, bias)
    conv2: tuple[np.ndarray, np.ndarray]
    scale: np.ndarray  # the Mul's constant


class _EDSRMatcher(_Matcher):
    def conv_bias(self, node: _Node) -> tuple[np.ndarray, np.ndarray, _Node]:
        """``Conv2D(x, W) + b`` -> (W, b, x)."""
        bias, conv = self._split_const(node, _BIAS_ADD)
        kernel, x = self.conv(conv)
        return kernel, bias.reshape(-1), x

    def is_head(self, node: _Node) -> bool:
        """Whether ``node`` is ``Conv2D(placeholder, W) + b``."""
        try:
            _, _, x = self.conv_bias(node)
        except _GraphError:
            return False
        return x.op == "Placeholder"

    def block(self, node: _Node) -> tuple[_EDSRBlock, _Node]:
        """``x + (conv(relu(conv(x) + b1)) + b2) * s`` -> (the block, x)."""
        a, b = self._inputs(node, _ADD, 2)
        if (a.op == "Mul") == (b.op == "Mul"):
            raise _GraphError(f"{node.op} node {node.name!r} is not x + residual * scale")
        x, mul = (a, b) if b.op == "Mul" else (b, a)
        scale, pre = self._split_const(mul, "Mul")
        w2, b2, relu = self.conv_bias(pre)
        (inner,) = self._inputs(relu, "Relu", 1)
        w1, b1, x1 = self.conv_bias(inner)
        if x1 is not x:
            raise _GraphError(f"the residual added at {node.name!r} does not start from its input")
        return _EDSRBlock((w1, b1), (w2, b2), scale), x


def _edsr(graph: _Graph) -> tuple[dict[str, torch.Tensor], dict[str, str], int]:
    """EDSR_x{2,3,4} as Saafke/EDSR_Tensorflow exports it: Transpose(DepthToSpace(r)(
    conv(F->3r^2)+b)) (the Transpose optional) of ``body + head``; ``head =
    conv(input, 3->F)+b``; ``body`` = B residual blocks ``x + (conv(relu(conv(x)+b))+b)
    * s`` then conv(F->F)+b. Kernels may be quantize_weights Dequantize nodes (the
    published files are 8-bit)."""
    if len(graph.outputs) != 1:
        names = ", ".join(repr(n.name) for n in graph.outputs)
        raise _GraphError(f"{len(graph.outputs)} outputs ({names}), expected one")
    m = _EDSRMatcher(graph)
    x = graph.data(graph.outputs[0])
    if x.op == "Transpose":  # NCHW_output; an export to NHWC_output would end before it
        x, perm = m._inputs(x, "Transpose", 2)
        if tuple(int(p) for p in m.g.value(perm).reshape(-1)) != _NHWC_TO_NCHW:
            raise _GraphError(f"output {graph.outputs[0].name!r} is not an NHWC->NCHW transpose")
    (pre,) = m._inputs(x, "DepthToSpace", 1)
    if _attr_str(x, "data_format", "NHWC") != "NHWC":
        raise _GraphError(f"DepthToSpace {x.name!r} is not NHWC")
    r = _attr_int(x, "block_size")
    tail_w, tail_b, total = m.conv_bias(pre)
    a, b = m._inputs(total, _ADD, 2)
    if m.is_head(b) and not m.is_head(a):
        a, b = b, a
    if not m.is_head(a):
        raise _GraphError(f"the global skip at {total.name!r} does not add the first conv")
    head_w, head_b, _ = m.conv_bias(a)
    body_w, body_b, node = m.conv_bias(b)
    blocks: list[_EDSRBlock] = []
    for _ in range(len(graph.nodes)):
        if node is a:
            break
        block, node = m.block(node)
        blocks.append(block)
    else:
        raise _GraphError("the residual blocks do not lead back to the first conv")
    blocks.reverse()

    features = int(head_w.shape[3])
    convs = [("the first conv", head_w, head_b, 3, features)]
    for i, blk in enumerate(blocks):
        convs.append((f"block {i + 1} conv 1", *blk.conv1, features, features))
        convs.append((f"block {i + 1} conv 2", *blk.conv2, features, features))
    convs.append(("the conv after the blocks", body_w, body_b, features, features))
    convs.append(("the upsampling conv", tail_w, tail_b, features, 3 * r * r))
    for what, w, bias, cin, cout in convs:
        if w.shape != (3, 3, cin, cout):
            raise _GraphError(f"{what} has a kernel {w.shape}, not {(3, 3, cin, cout)}")
        if bias.size != cout:
            raise _GraphError(f"{what} has {bias.size} biases, not {cout}")
    scales = {float(blk.scale.reshape(-1)[0]) for blk in blocks if blk.scale.size == 1}
    if len(scales) > 1 or any(blk.scale.size != 1 for blk in blocks):
        raise _GraphError("the residual scales are not one and the same scalar")

    state = {"head.0.weight": _oihw(head_w), "head.0.bias": _vec(head_b)}
    for i, blk in enumerate(blocks):
        for j, (w, bias) in ((0, blk.conv1), (2, blk.conv2)):
            state[f"body.{i}.body.{j}.weight"] = _oihw(w)
            state[f"body.{i}.body.{j}.bias"] = _vec(bias)
    n = len(blocks)
    state[f"body.{n}.weight"], state[f"body.{n}.bias"] = _oihw(body_w), _vec(body_b)
    order = _shuffle_order(3, r)
    state["tail.0.weight"] = _oihw(tail_w[..., order])
    state["tail.0.bias"] = _vec(tail_b[order])
    meta = {"variant": "EDSR", "layout": "opencv"}
    if scales:
        meta["res_scale"] = str(np.float32(scales.pop()))  # shortest float32 repr: "0.1"
    return state, meta, r


_FAMILY_NAMES = {"espcn": "ESPCN", "fsrcnn": "FSRCNN", "lapsrn": "LapSRN", "edsr": "EDSR"}
_Reader = Callable[[_Graph], tuple[dict[str, torch.Tensor], dict[str, str], int]]
_READERS: dict[str, _Reader] = {
    "espcn": lambda graph: _espcn(graph.layers()),
    "fsrcnn": lambda graph: _fsrcnn(graph.layers()),
    "lapsrn": _lapsrn,
    "edsr": _edsr,
}
_HINT = "vsr reads the ESPCN, FSRCNN(-small), LapSRN and EDSR graphs of OpenCV dnn_superres"


def read_pb(
    path: Path | str, *, arch: str, scale: int
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read an OpenCV dnn_superres graph as a state dict for ``arch`` at ``scale``.

    Returns ``(state_dict, metadata)``: the state dict loads with ``strict=True`` into
    ``ESPCN`` (arch ``espcn``), ``FSRCNN(upsampler="subpixel")`` (arch ``fsrcnn``),
    ``LapSRN`` (arch ``lapsrn``) or ``EDSR(layout="opencv")`` (arch ``edsr``); the metadata
    holds ``arch``, ``scale``, ``variant`` and, for ESPCN, ``act`` and ``out_act``, for
    LapSRN ``negative_slope``, for EDSR ``layout`` and ``res_scale``. The file is only
    parsed, never executed.

    Raises WeightsError when the file is not a readable GraphDef, holds another family
    than ``arch`` or another scale than ``scale``, or holds an op or a
    structure the torch module cannot reproduce.
    """
    path = Path(path)
    supported = ", ".join(sorted(_READERS))
    if arch not in _READERS:
        raise WeightsError(
            f"vsr reads {supported} from OpenCV .pb files, not {arch}",
            hint="use -m espcn, -m fsrcnn, -m lapsrn or -m edsr, or .safetensors weights",
        )
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise _GraphError(f"{size} bytes is too large for a dnn_superres graph")
        graph = _Graph(_parse_graph(path.read_bytes()))
    except (_GraphError, OSError) as exc:
        raise WeightsError(
            f"{path.name} is not a readable TensorFlow graph: {exc}",
            hint="pass an OpenCV dnn_superres ESPCN/FSRCNN/LapSRN/EDSR .pb file",
        ) from None

    family = graph.family()
    if graph.unknown_ops:
        ops = ", ".join(graph.unknown_ops)
        raise WeightsError(
            f"{path.name} uses TensorFlow ops vsr cannot reproduce: {ops}",
            hint=_HINT,
        )
    if family not in _READERS:
        raise WeightsError(
            f"{path.name} is not an ESPCN, FSRCNN, LapSRN or EDSR graph",
            hint=_HINT,
        )
    try:
        state, meta, found = _READERS[family](graph)
    except _GraphError as exc:
        raise WeightsError(
            f"{path.name} does not match the {_FAMILY_NAMES[family]} layout: {exc}",
            hint=_HINT,
        ) from None
    if family != arch:
        raise WeightsError(
            f"{path.name} is an OpenCV {meta['variant']} x{found} graph, not {_FAMILY_NAMES[arch]}",
            hint=f"use -m {family}",
        )
    if found != scale:
        raise WeightsError(
            f"{path.name} is an OpenCV {meta['variant']} graph for x{found}, not x{scale}",
            hint=f"use -x {found}",
        )
    return state, {"arch": arch, "scale": str(found), **meta}


# --------------------------------------------------------------------------------------
# Reference: cv2.dnn_superres's upsample with a torch module
# --------------------------------------------------------------------------------------


def upsample_like_opencv(module: nn.Module, bgr: np.ndarray) -> np.ndarray:
    """Upscale ``bgr`` (uint8, HxWx3 BGR or HxW grey) as ``DnnSuperResImpl.upsample``
    does, with ``module`` as the network: for espcn/fsrcnn/lapsrn a luma module (NCHW
    [0, 1]); for edsr an ``EDSR(layout="opencv")`` (see :func:`_upsample_edsr`).

    The steps follow opencv_contrib ``dnn_superres.cpp`` (``preprocess_YCrCb``,
    ``reconstruct_YCrCb``): cvtColor BGR->YCrCb on uint8, then float32 times 1/255; Y
    through the network; Cr and Cb resized by ``cv::resize`` at the scale with its default
    interpolation (INTER_LINEAR, not cubic); merge with the network's Y; ``convertTo(CV_8U,
    255)`` (round half to even, saturate); cvtColor YCrCb->BGR on uint8. A grey image is
    only scaled, run and converted back. The network's output is not clamped: the uint8
    conversion saturates, as in OpenCV.
    """
    import cv2

    from vsr.models.archs.edsr import EDSR

    image = np.asarray(bgr)
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    if isinstance(module, EDSR):
        return _upsample_edsr(module, image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        grey = image.astype(np.float32) * np.float32(1.0 / 255.0)
        return _to_u8(_run_luma(module, grey))
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected HxWx3 BGR or HxW grey, got shape {image.shape}")

    ycrcb = cv2.cvtColor(image, cv2.COLOR_BGR2YCrCb).astype(np.float32) * np.float32(1.0 / 255.0)
    y = _run_luma(module, ycrcb[:, :, 0])
    scale = y.shape[0] // image.shape[0]
    if y.shape != (image.shape[0] * scale, image.shape[1] * scale):
        raise ValueError(f"the network made {y.shape} from {image.shape[:2]}")
    cr = cv2.resize(ycrcb[:, :, 1], None, fx=scale, fy=scale)
    cb = cv2.resize(ycrcb[:, :, 2], None, fx=scale, fy=scale)
    merged = _to_u8(np.dstack([y, cr, cb]))
    return cv2.cvtColor(merged, cv2.COLOR_YCrCb2BGR)


def _upsample_edsr(module: nn.Module, image: np.ndarray) -> np.ndarray:
    """OpenCV's ``edsr`` branch of ``upsample``: no YCrCb. It converts the BGR uint8 image
    to float32 (0..255), ``blobFromImage`` subtracts the BGR mean (103.15, 111.56, 114.36)
    in float32 without swapping channels, the net runs, the mean is added back (float32)
    and ``convertTo(CV_8U)`` rounds half to even and saturates; no clamping before.

    Here the module does the mean and the BGR order itself (``layout="opencv"``): it is
    given RGB ``u8 / 255`` in float32 (whose ``* 255`` gives back the integers exactly)
    and its RGB output in [0, 1] is scaled by 255 and rounded the same way. A grey image
    is refused: OpenCV's EDSR path subtracts a 3-channel mean from it and the 3-channel
    first convolution then fails."""
    if getattr(module, "layout", None) != "opencv":
        raise ValueError("OpenCV's edsr path runs the opencv EDSR layout, not EDSR-PyTorch's")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"OpenCV's edsr path takes HxWx3 BGR, got shape {image.shape}")
    rgb = image[:, :, ::-1].astype(np.float32) / np.float32(255.0)
    param = next(module.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None].to(device)
    with torch.inference_mode():
        out = module(x)
    bgr = out[0].float().cpu().numpy().transpose(1, 2, 0)[:, :, ::-1]
    return _to_u8(bgr)


def _run_luma(module: nn.Module, luma: np.ndarray) -> np.ndarray:
    param = next(module.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    x = torch.from_numpy(np.ascontiguousarray(luma, dtype=np.float32))[None, None].to(device)
    with torch.inference_mode():
        out = module(x)
    return out[0, 0].float().cpu().numpy()


def _to_u8(values: np.ndarray) -> np.ndarray:
    """``Mat::convertTo(CV_8U, 255.0)``: float32 multiply, round half to even, saturate."""
    scaled = values.astype(np.float32) * np.float32(255.0)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
