"""TensorFlow ``GraphDef`` -> nodes, constants and the walks over them.

:func:`parse_graph` turns the file into :class:`Node` records; :class:`Graph` resolves
inputs (looking through Identity, refusing other outputs than 0), reads constants
(float32, int32, quint8 and quantize_weights' ``Dequantize``), guesses the family from the
op counts and, for chain graphs, walks back from the single output to a list of
:class:`Layer`. :class:`Matcher` is the base of the node-by-node matchers of branching
graphs (LapSRN, EDSR).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field

import numpy as np

from vsr.models.opencv_pb.wire import (
    MAX_BYTES,
    GraphError,
    as_bytes,
    as_int,
    fields,
    signed,
    text,
    varint,
)

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


# --------------------------------------------------------------------------------------
# GraphDef -> nodes
# --------------------------------------------------------------------------------------


@dataclass
class Node:
    name: str
    op: str
    inputs: list[str] = field(default_factory=list)
    attrs: dict[str, memoryview] = field(default_factory=dict)  # raw AttrValue messages


def parse_graph(data: bytes) -> dict[str, Node]:
    """GraphDef {1: repeated NodeDef, 2: FunctionDefLibrary, 3: version, 4: VersionDef}."""
    nodes: dict[str, Node] = {}
    for number, wire, value in fields(memoryview(data)):
        if number == 1 and wire == 2:
            node = _parse_node(as_bytes(value))
            if node.name in nodes:
                raise GraphError(f"two nodes named {node.name!r}")
            nodes[node.name] = node
        elif number == 2 and wire == 2:
            if len(as_bytes(value)):
                raise GraphError("the graph defines functions")
        elif (number, wire) not in ((3, 0), (4, 2)):
            raise GraphError(f"unexpected GraphDef field {number}")
    if not nodes:
        raise GraphError("no nodes")
    return nodes


def _parse_node(buf: memoryview) -> Node:
    """NodeDef {1 name, 2 op, 3 repeated input, 4 device, 5 map<string, AttrValue> attr}."""
    node = Node("", "")
    for number, wire, value in fields(buf):
        if wire != 2:
            raise GraphError(f"unexpected NodeDef field {number}")
        if number == 1:
            node.name = text(value)
        elif number == 2:
            node.op = text(value)
        elif number == 3:
            node.inputs.append(text(value))
        elif number == 5:
            key, attr = "", memoryview(b"")
            for n, w, v in fields(as_bytes(value)):
                if n == 1 and w == 2:
                    key = text(v)
                elif n == 2 and w == 2:
                    attr = as_bytes(v)
            node.attrs[key] = attr
    if not node.name or not node.op:
        raise GraphError("a node without a name or an op")
    return node


def _attr(node: Node, key: str) -> dict[int, int | memoryview]:
    """The fields of one AttrValue {1 list, 2 s, 3 i, 4 f, 5 b, 6 type, 7 shape, 8 tensor}."""
    if key not in node.attrs:
        raise GraphError(f"{node.op} node {node.name!r} has no {key!r} attribute")
    return {n: v for n, _, v in fields(node.attrs[key])}


def attr_str(node: Node, key: str, default: str) -> str:
    if key not in node.attrs:
        return default
    return text(_attr(node, key).get(2, memoryview(b"")))


def attr_int(node: Node, key: str) -> int:
    value = _attr(node, key).get(3)
    if not isinstance(value, int):
        raise GraphError(f"{node.op} node {node.name!r}: {key!r} is not an integer")
    return value


def _attr_ints(node: Node, key: str, default: tuple[int, ...]) -> tuple[int, ...]:
    """A ListValue's ``i`` (field 3), packed or not."""
    if key not in node.attrs:
        return default
    out: list[int] = []
    lst = _attr(node, key).get(1, memoryview(b""))
    for n, w, v in fields(as_bytes(lst)):
        if n != 3:
            continue
        if w == 0:
            out.append(signed(as_int(v)))
        else:
            packed, i = as_bytes(v), 0
            while i < len(packed):
                x, i = varint(packed, i)
                out.append(signed(x))
    return tuple(out)


def const_value(node: Node) -> np.ndarray:
    """The value of a Const node: TensorProto {1 dtype, 2 shape, 4 tensor_content,
    5 float_val, 7 int_val}, float32, int32 or quint8 (TF keeps quint8 in int_val when
    not in tensor_content), little-endian."""
    if node.op != "Const":
        raise GraphError(f"{node.name!r} is a {node.op}, not a constant")
    tensor = as_bytes(_attr(node, "value").get(8, memoryview(b"")))
    dtype, shape, content = 0, [], None
    values: list[float | int] = []
    for number, wire, value in fields(tensor):
        if number == 1:
            dtype = as_int(value)
        elif number == 2:
            for n, _, dim in fields(as_bytes(value)):
                if n == 2:
                    sizes = [signed(as_int(v)) for m, _, v in fields(as_bytes(dim)) if m == 1]
                    shape.append(sizes[0] if sizes else 0)
        elif number == 4:
            content = bytes(as_bytes(value))
        elif number == 5:  # float_val: packed (2) or one fixed32 (5)
            raw = bytes(as_bytes(value))
            values.extend(struct.unpack(f"<{len(raw) // 4}f", raw[: len(raw) // 4 * 4]))
        elif number == 7:  # int_val: packed (2) or one varint (0)
            if wire == 0:
                values.append(signed(as_int(value)))
            else:
                packed, i = as_bytes(value), 0
                while i < len(packed):
                    x, i = varint(packed, i)
                    values.append(signed(x))
    np_dtype: np.dtype
    if dtype == _DT_FLOAT:
        np_dtype = np.dtype("<f4")
    elif dtype == _DT_INT32:
        np_dtype = np.dtype("<i4")
    elif dtype == _DT_QUINT8:
        np_dtype = np.dtype("u1")
    else:
        raise GraphError(f"constant {node.name!r} has data type {dtype}, not float32/int32/quint8")
    count = math.prod(shape)
    if any(d < 0 for d in shape) or count > MAX_BYTES // np_dtype.itemsize:
        raise GraphError(f"constant {node.name!r} has shape {shape}")
    if content is not None:
        if len(content) != count * np_dtype.itemsize:
            raise GraphError(f"constant {node.name!r}: {len(content)} bytes for shape {shape}")
        array = np.frombuffer(content, dtype=np_dtype).astype(np_dtype.newbyteorder("="))
        return array.reshape(shape)
    if np_dtype.kind != "f" and values:
        low, high = (0, 255) if dtype == _DT_QUINT8 else (-(2**31), 2**31 - 1)
        if not all(isinstance(v, int) and low <= v <= high for v in values):
            raise GraphError(f"constant {node.name!r} holds values out of its type's range")
    if len(values) == count:
        array = np.array(values, dtype=np_dtype.newbyteorder("="))
    elif len(values) == 1:  # TF stores a constant fill as one value
        array = np.full(count, values[0], dtype=np_dtype.newbyteorder("="))
    else:
        raise GraphError(f"constant {node.name!r}: {len(values)} values for shape {shape}")
    return array.reshape(shape)


def _dequantize(node: Node, data: Node, lo: Node, hi: Node) -> np.ndarray:
    """A ``Dequantize`` node as TF's ``quantize_weights`` graph transform writes it (T
    quint8, mode MIN_FIRST, three Const inputs), computed as OpenCV's TF importer does
    (``addConstNodes``): ``q * s + s * round(min / s)`` with ``s = (max - min) / 255``
    in float32, the product and the sum rounded once (what OpenCV's vectorised
    ``convertTo`` computes with FMA; bit-identical to ``getParam`` on the synthetic
    graphs). TF's own kernel rounds a few values 1 ulp differently."""
    if _attr(node, "T").get(6) != _DT_QUINT8:
        raise GraphError(f"Dequantize {node.name!r} does not read quint8 values")
    mode = attr_str(node, "mode", "MIN_COMBINED")
    if mode != "MIN_FIRST":
        raise GraphError(f"Dequantize {node.name!r} has mode {mode}, not MIN_FIRST")
    if "narrow_range" in node.attrs and _attr(node, "narrow_range").get(5):
        raise GraphError(f"Dequantize {node.name!r} has a narrow range")
    if "axis" in node.attrs and signed(as_int(_attr(node, "axis").get(3, 0))) not in (0, -1):
        raise GraphError(f"Dequantize {node.name!r} is per-axis")
    if "dtype" in node.attrs and _attr(node, "dtype").get(6, _DT_FLOAT) != _DT_FLOAT:
        raise GraphError(f"Dequantize {node.name!r} does not make float32")
    q = const_value(data)
    bounds = [const_value(n) for n in (lo, hi)]
    if q.dtype != np.uint8 or any(b.dtype != np.float32 or b.size != 1 for b in bounds):
        raise GraphError(f"Dequantize {node.name!r}: expected uint8 values, float min, max")
    f32 = np.float32
    minimum, maximum = (f32(b.reshape(-1)[0]) for b in bounds)
    step = f32(maximum - minimum) / f32(255)
    if not np.isfinite(step) or step <= 0:
        raise GraphError(f"Dequantize {node.name!r} has the range {minimum}..{maximum}")
    offset = step * f32(np.rint(minimum / step))
    return (q.astype(np.float64) * np.float64(step) + np.float64(offset)).astype(np.float32)


# --------------------------------------------------------------------------------------
# Nodes -> layers (walking back from the output)
# --------------------------------------------------------------------------------------


@dataclass
class Layer:
    kind: str  # conv, bias, relu, prelu, tanh, d2s, transpose
    value: np.ndarray | None = None  # conv: HWIO kernel; bias/prelu: vector
    block: int = 0  # d2s


class Graph:
    def __init__(self, nodes: dict[str, Node]) -> None:
        self.nodes = nodes
        unknown = sorted({n.op for n in nodes.values()} - _SUPPORTED_OPS)
        self.unknown_ops = unknown
        consumed = {self._ref(i) for n in nodes.values() for i in n.inputs if i[:1] != "^"}
        self.outputs = [n for n in nodes.values() if n.name not in consumed and n.op != "Const"]
        self.count = {op: sum(n.op == op for n in nodes.values()) for op in _SUPPORTED_OPS}

    def _ref(self, ref: str) -> str:
        name, _, index = ref.partition(":")
        if index not in ("", "0"):
            raise GraphError(f"input {ref!r} uses output {index} of a node")
        return name

    def input(self, node: Node, k: int) -> Node:
        data = [i for i in node.inputs if i[:1] != "^"]  # control dependencies carry no data
        if k >= len(data):
            raise GraphError(f"{node.op} node {node.name!r} lacks input {k}")
        name = self._ref(data[k])
        if name not in self.nodes:
            raise GraphError(f"{node.op} node {node.name!r} reads a missing node {name!r}")
        return self.nodes[name]

    def data(self, node: Node) -> Node:
        """``node`` with any Identity nodes in front of it skipped."""
        for _ in range(len(self.nodes)):
            if node.op != "Identity":
                return node
            node = self.input(node, 0)
        raise GraphError(f"a cycle of Identity nodes at {node.name!r}")

    def is_value(self, node: Node) -> bool:
        return self.data(node).op in ("Const", "Dequantize")

    def value(self, node: Node) -> np.ndarray:
        """A Const's value, or a Dequantize's (of quantize_weights' three Consts)."""
        node = self.data(node)
        if node.op != "Dequantize":
            return const_value(node)
        data = [i for i in node.inputs if i[:1] != "^"]
        if len(data) != 3:
            raise GraphError(f"Dequantize {node.name!r} has {len(data)} inputs, not 3")
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

    def layers(self) -> list[Layer]:
        """The chain from the placeholder to the single output, in order."""
        if len(self.outputs) != 1:
            names = ", ".join(repr(n.name) for n in self.outputs)
            raise GraphError(f"{len(self.outputs)} outputs ({names}), expected one")
        out: list[Layer] = []
        node = self.outputs[0]
        seen: set[str] = set()
        while node.op != "Placeholder":
            if node.name in seen:
                raise GraphError(f"the graph has a cycle at {node.name!r}")
            seen.add(node.name)
            layer, node = self._step(node)
            if layer is not None:
                out.append(layer)
        out.reverse()
        return out

    def _step(self, node: Node) -> tuple[Layer | None, Node]:
        """The layer that ``node`` computes, and the node it reads its data from."""
        op = node.op
        if op == "Identity":
            return None, self.input(node, 0)
        if op in ("Relu", "Tanh"):
            return Layer(op.lower()), self.input(node, 0)
        if op == "Transpose":
            perm = tuple(int(p) for p in const_value(self.input(node, 1)).reshape(-1))
            return Layer("transpose", np.array(perm)), self.input(node, 0)
        if op == "DepthToSpace":
            if attr_str(node, "data_format", "NHWC") != "NHWC":
                raise GraphError(f"DepthToSpace {node.name!r} is not NHWC")
            return Layer("d2s", block=attr_int(node, "block_size")), self.input(node, 0)
        if op == "Conv2D":
            self.check_conv(node)
            kernel = const_value(self.input(node, 1))
            if kernel.ndim != 4:
                raise GraphError(f"Conv2D {node.name!r} has a {kernel.ndim}-d kernel")
            return Layer("conv", kernel), self.input(node, 0)
        if op in ("Add", "AddV2", "BiasAdd"):
            a, b = self.input(node, 0), self.input(node, 1)
            if b.op == "Const" or a.op == "Const":
                data, const = (a, b) if b.op == "Const" else (b, a)
                return Layer("bias", const_value(const).reshape(-1)), data
            prelu = self._match_prelu(a, b) or self._match_prelu(b, a)
            if prelu is not None:
                return prelu
            raise GraphError(f"{op} node {node.name!r} sums two branches")
        if op == "Sub":
            raise GraphError(f"Sub node {node.name!r} is not part of a PReLU")
        raise GraphError(f"{op} node {node.name!r} is not supported here")

    def check_conv(self, node: Node) -> None:
        padding = attr_str(node, "padding", "")
        if padding != "SAME":
            raise GraphError(f"Conv2D {node.name!r} has padding {padding or 'unset'}")
        if attr_str(node, "data_format", "NHWC") != "NHWC":
            raise GraphError(f"Conv2D {node.name!r} is not NHWC")
        for key in ("strides", "dilations"):
            if set(_attr_ints(node, key, (1, 1, 1, 1))) != {1}:
                raise GraphError(f"Conv2D {node.name!r} has {key} other than 1")

    def _match_prelu(self, relu: Node, scaled: Node) -> tuple[Layer, Node] | None:
        """``relu(x) + alpha * (x - |x|) * k`` (any Mul order): PReLU with slope 2*k*alpha."""
        if relu.op != "Relu" or scaled.op != "Mul":
            return None
        x = self.input(relu, 0)
        consts: list[np.ndarray] = []
        factors: list[Node] = []
        stack = [scaled]
        for _ in range(16):  # a few Mul nodes at most; bounds a malicious Mul lattice
            if not stack:
                break
            node = stack.pop()
            if node.op == "Mul":
                stack += [self.input(node, 0), self.input(node, 1)]
            elif node.op == "Const":
                consts.append(const_value(node))
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
        return Layer("prelu", slope), x


# --------------------------------------------------------------------------------------
# Node-by-node matching (branching graphs)
# --------------------------------------------------------------------------------------


class Matcher:
    """Matches ops exactly, node by node from an output back: every input of every node
    on the way is accounted for, so anything else in the graph makes the match fail.
    Identity nodes are looked through; a weight is a Const or a quantize_weights
    Dequantize."""

    def __init__(self, graph: Graph) -> None:
        self.g = graph

    def match_inputs(self, node: Node, op: str | tuple[str, ...], count: int) -> list[Node]:
        ops = (op,) if isinstance(op, str) else op
        node = self.g.data(node)
        if node.op not in ops:
            raise GraphError(f"expected {' or '.join(ops)} at {node.name!r}, found {node.op}")
        data = [i for i in node.inputs if i[:1] != "^"]
        if len(data) != count:
            raise GraphError(f"{node.op} node {node.name!r} has {len(data)} inputs")
        return [self.g.data(self.g.input(node, k)) for k in range(count)]

    def split_const(self, node: Node, op: str | tuple[str, ...]) -> tuple[np.ndarray, Node]:
        """(the constant, the other input) of a binary node with one constant input."""
        a, b = self.match_inputs(node, op, 2)
        if self.g.is_value(a) and not self.g.is_value(b):
            return self.g.value(a), b
        if self.g.is_value(b) and not self.g.is_value(a):
            return self.g.value(b), a
        raise GraphError(f"{node.op} node {node.name!r} does not have one constant input")

    def conv(self, node: Node) -> tuple[np.ndarray, Node]:
        """A SAME, stride-1 Conv2D -> (HWIO kernel, its data input)."""
        x, w = self.match_inputs(node, "Conv2D", 2)
        self.g.check_conv(self.g.data(node))
        if not self.g.is_value(w):
            raise GraphError(f"Conv2D {node.name!r} has no constant kernel")
        kernel = self.g.value(w)
        if kernel.ndim != 4 or kernel.dtype != np.float32:
            raise GraphError(f"Conv2D {node.name!r} has a {kernel.ndim}-d {kernel.dtype} kernel")
        return kernel, x
