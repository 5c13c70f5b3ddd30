"""EDSR graphs (Saafke/EDSR_Tensorflow) -> :class:`vsr.models.archs.edsr.EDSR` with
``layout="opencv"``, matched node by node from the output back.

``EDSR_x{2,3,4}.pb`` of Saafke/EDSR_Tensorflow, which dnn_superres links to, branch (a
skip per residual block and a global one):

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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vsr.models.opencv_pb.graph import Graph, Matcher, Node, attr_int, attr_str
from vsr.models.opencv_pb.layout import NHWC_TO_NCHW, oihw, shuffle_order, vec
from vsr.models.opencv_pb.wire import GraphError

_ADD = ("Add", "AddV2")
_BIAS_ADD = ("Add", "AddV2", "BiasAdd")


@dataclass
class _EDSRBlock:
    conv1: tuple[np.ndarray, np.ndarray]  # (HWIO kernel, bias)
    conv2: tuple[np.ndarray, np.ndarray]
    scale: np.ndarray  # the Mul's constant


class _EDSRMatcher(Matcher):
    def conv_bias(self, node: Node) -> tuple[np.ndarray, np.ndarray, Node]:
        """``Conv2D(x, W) + b`` -> (W, b, x)."""
        bias, conv = self.split_const(node, _BIAS_ADD)
        kernel, x = self.conv(conv)
        return kernel, bias.reshape(-1), x

    def is_head(self, node: Node) -> bool:
        """Whether ``node`` is ``Conv2D(placeholder, W) + b``."""
        try:
            _, _, x = self.conv_bias(node)
        except GraphError:
            return False
        return x.op == "Placeholder"

    def block(self, node: Node) -> tuple[_EDSRBlock, Node]:
        """``x + (conv(relu(conv(x) + b1)) + b2) * s`` -> (the block, x)."""
        a, b = self.match_inputs(node, _ADD, 2)
        if (a.op == "Mul") == (b.op == "Mul"):
            raise GraphError(f"{node.op} node {node.name!r} is not x + residual * scale")
        x, mul = (a, b) if b.op == "Mul" else (b, a)
        scale, pre = self.split_const(mul, "Mul")
        w2, b2, relu = self.conv_bias(pre)
        (inner,) = self.match_inputs(relu, "Relu", 1)
        w1, b1, x1 = self.conv_bias(inner)
        if x1 is not x:
            raise GraphError(f"the residual added at {node.name!r} does not start from its input")
        return _EDSRBlock((w1, b1), (w2, b2), scale), x


def read_edsr(graph: Graph) -> tuple[dict[str, torch.Tensor], dict[str, str], int]:
    """EDSR_x{2,3,4} as Saafke/EDSR_Tensorflow exports it: Transpose(DepthToSpace(r)(
    conv(F->3r^2)+b)) (the Transpose optional) of ``body + head``; ``head =
    conv(input, 3->F)+b``; ``body`` = B residual blocks ``x + (conv(relu(conv(x)+b))+b)
    * s`` then conv(F->F)+b. Kernels may be quantize_weights Dequantize nodes (the
    published files are 8-bit)."""
    if len(graph.outputs) != 1:
        names = ", ".join(repr(n.name) for n in graph.outputs)
        raise GraphError(f"{len(graph.outputs)} outputs ({names}), expected one")
    m = _EDSRMatcher(graph)
    x = graph.data(graph.outputs[0])
    if x.op == "Transpose":  # NCHW_output; an export to NHWC_output would end before it
        x, perm = m.match_inputs(x, "Transpose", 2)
        if tuple(int(p) for p in m.g.value(perm).reshape(-1)) != NHWC_TO_NCHW:
            raise GraphError(f"output {graph.outputs[0].name!r} is not an NHWC->NCHW transpose")
    (pre,) = m.match_inputs(x, "DepthToSpace", 1)
    if attr_str(x, "data_format", "NHWC") != "NHWC":
        raise GraphError(f"DepthToSpace {x.name!r} is not NHWC")
    r = attr_int(x, "block_size")
    tail_w, tail_b, total = m.conv_bias(pre)
    a, b = m.match_inputs(total, _ADD, 2)
    if m.is_head(b) and not m.is_head(a):
        a, b = b, a
    if not m.is_head(a):
        raise GraphError(f"the global skip at {total.name!r} does not add the first conv")
    head_w, head_b, _ = m.conv_bias(a)
    body_w, body_b, node = m.conv_bias(b)
    blocks: list[_EDSRBlock] = []
    for _ in range(len(graph.nodes)):
        if node is a:
            break
        block, node = m.block(node)
        blocks.append(block)
    else:
        raise GraphError("the residual blocks do not lead back to the first conv")
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
            raise GraphError(f"{what} has a kernel {w.shape}, not {(3, 3, cin, cout)}")
        if bias.size != cout:
            raise GraphError(f"{what} has {bias.size} biases, not {cout}")
    scales = {float(blk.scale.reshape(-1)[0]) for blk in blocks if blk.scale.size == 1}
    if len(scales) > 1 or any(blk.scale.size != 1 for blk in blocks):
        raise GraphError("the residual scales are not one and the same scalar")

    state = {"head.0.weight": oihw(head_w), "head.0.bias": vec(head_b)}
    for i, blk in enumerate(blocks):
        for j, (w, bias) in ((0, blk.conv1), (2, blk.conv2)):
            state[f"body.{i}.body.{j}.weight"] = oihw(w)
            state[f"body.{i}.body.{j}.bias"] = vec(bias)
    n = len(blocks)
    state[f"body.{n}.weight"], state[f"body.{n}.bias"] = oihw(body_w), vec(body_b)
    order = shuffle_order(3, r)
    state["tail.0.weight"] = oihw(tail_w[..., order])
    state["tail.0.bias"] = vec(tail_b[order])
    meta = {"variant": "EDSR", "layout": "opencv"}
    if scales:
        meta["res_scale"] = str(np.float32(scales.pop()))  # shortest float32 repr: "0.1"
    return state, meta, r
