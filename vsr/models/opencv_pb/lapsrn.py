"""LapSRN graphs -> :class:`vsr.models.archs.lapsrn.LapSRN`, matched node by node.

LapSRN graphs branch (a feature and an image branch per x2 level, and an output per
level): they are matched node by node from the outputs back, each node's inputs checked
against the pattern:

- per level: LeakyReLU(conv3x3+b) with a scalar bias on the first conv (1->64), nine more
  conv3x3 (64->64)+b, each with LeakyReLU; conv4x4 (64->4) + DepthToSpace(2) + LeakyReLU
  (the residual); conv4x4 (1->4) + DepthToSpace(2) on the image; their sum, LeakyReLU;
- the first level reads the input twice; level k's feature branch reads level k-1's
  residual and its image branch level k-1's output; x4/x8 graphs also output the x2/x4
  images (each output must be one of the levels' images; the deepest is the result).

The LeakyReLU is written out in the graph as ``relu(x) - 0.2 * relu(-1 * x)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vsr.models.opencv_pb.graph import Graph, Matcher, Node, attr_int, attr_str, const_value
from vsr.models.opencv_pb.layout import NHWC_TO_NCHW, oihw, shuffle_order, vec
from vsr.models.opencv_pb.wire import GraphError

#: More x2 levels than any dnn_superres graph has (x8 is 3); bounds the walk.
_MAX_LEVELS = 8


@dataclass
class _LapLevel:
    """One x2 level, read backwards from its output node."""

    out: Node  # act(image branch + res): the image at this level
    res: Node  # act(DepthToSpace(conv(h))): the residual, next level's feature input
    img_in: Node  # the image this level upsamples
    feat_in: Node  # the single-channel map its feature branch starts from
    branch: list[tuple[np.ndarray, np.ndarray]]  # (HWIO kernel, bias) in order
    upsample: np.ndarray  # HWIO (k, k, F, 4)
    image: np.ndarray  # HWIO (k, k, 1, 4)
    slopes: list[float]


class _LapSRNMatcher(Matcher):
    """LapSRN's levels, each read once."""

    def __init__(self, graph: Graph) -> None:
        super().__init__(graph)
        self._levels: dict[str, _LapLevel] = {}  # by output node: each level is read once

    def leaky(self, node: Node) -> tuple[Node, float]:
        """``relu(x) - s * relu(-1 * x)`` -> (x, s)."""
        relu, scaled = self.match_inputs(node, "Sub", 2)
        (x,) = self.match_inputs(relu, "Relu", 1)
        slope, relu_neg = self.split_const(scaled, "Mul")
        (neg,) = self.match_inputs(relu_neg, "Relu", 1)
        minus_one, x2 = self.split_const(neg, "Mul")
        if x2 is not x or minus_one.size != 1 or float(minus_one.reshape(-1)[0]) != -1.0:
            raise GraphError(f"{node.name!r} is not relu(x) - s * relu(-x)")
        if slope.size != 1:
            raise GraphError(f"LeakyReLU {node.name!r} has {slope.size} slopes")
        return x, float(slope.reshape(-1)[0])

    def d2s(self, node: Node) -> Node:
        (x,) = self.match_inputs(node, "DepthToSpace", 1)
        if attr_str(node, "data_format", "NHWC") != "NHWC":
            raise GraphError(f"DepthToSpace {node.name!r} is not NHWC")
        if attr_int(node, "block_size") != 2:
            raise GraphError(f"DepthToSpace {node.name!r} is not x2")
        return x

    def level(self, out: Node) -> _LapLevel:
        total, s_out = self.leaky(out)
        a, b = self.match_inputs(total, ("Add", "AddV2"), 2)
        image_d2s, res = (a, b) if a.op == "DepthToSpace" else (b, a)
        image, img_in = self.conv(self.d2s(image_d2s))
        up_d2s, s_res = self.leaky(res)
        upsample, h = self.conv(self.d2s(up_d2s))
        slopes = [s_out, s_res]
        branch: list[tuple[np.ndarray, np.ndarray]] = []
        node = h
        for _ in range(len(self.g.nodes)):
            pre, slope = self.leaky(node)
            bias, conv_node = self.split_const(pre, ("Add", "AddV2", "BiasAdd"))
            kernel, node = self.conv(conv_node)
            branch.append((kernel, bias.reshape(-1)))
            slopes.append(slope)
            if kernel.shape[2] == 1:  # the branch's first conv reads a single-channel map
                break
        else:
            raise GraphError(f"the feature branch before {h.name!r} does not end")
        branch.reverse()
        return _LapLevel(out, res, img_in, node, branch, upsample, image, slopes)

    def levels(self, out: Node) -> list[_LapLevel]:
        """The levels leading to ``out``, first to last."""
        found: list[_LapLevel] = []
        node = out
        while node.op != "Placeholder":
            if len(found) == _MAX_LEVELS:
                raise GraphError(f"more than {_MAX_LEVELS} levels")
            if node.name not in self._levels:
                self._levels[node.name] = self.level(node)
            level = self._levels[node.name]
            found.append(level)
            node = level.img_in
        found.reverse()
        if not found:
            raise GraphError("the output is the input")
        for k, level in enumerate(found):
            expected = node if k == 0 else found[k - 1].res  # node: the placeholder
            if level.feat_in is not expected:
                what = "the input" if k == 0 else f"level {k}'s residual"
                raise GraphError(f"level {k + 1}'s feature branch does not start from {what}")
        return found


def read_lapsrn(graph: Graph) -> tuple[dict[str, torch.Tensor], dict[str, str], int]:
    """LapSRN_x{2,4,8}: one or more outputs (the x2, x4, ... images), each an NHWC->NCHW
    Transpose; the deepest is the result and the others must be its intermediate levels."""
    matcher = _LapSRNMatcher(graph)
    chains: list[list[_LapLevel]] = []
    for output in graph.outputs:
        x, perm = matcher.match_inputs(output, "Transpose", 2)
        if tuple(int(p) for p in const_value(perm).reshape(-1)) != NHWC_TO_NCHW:
            raise GraphError(f"output {output.name!r} is not an NHWC->NCHW transpose")
        chains.append(matcher.levels(x))
    if not chains:
        raise GraphError("no output")
    levels = max(chains, key=len)
    outs = [level.out for level in levels]
    for chain in chains:
        if not any(chain[-1].out is o for o in outs):
            raise GraphError(f"an output is not one of the {len(levels)} levels' images")

    first = levels[0].branch[0][0]
    features, kernel = int(first.shape[3]), int(first.shape[0])
    depth = len(levels[0].branch)
    up = int(levels[0].upsample.shape[0])
    slopes = {s for level in levels for s in level.slopes}
    if len(slopes) != 1:
        raise GraphError(f"the LeakyReLU slopes differ: {sorted(slopes)}")
    state: dict[str, torch.Tensor] = {}
    for lv, level in enumerate(levels):
        p = f"levels.{lv}."
        if len(level.branch) != depth:
            raise GraphError(f"level {lv + 1} has {len(level.branch)} convolutions, not {depth}")
        for i, (w, b) in enumerate(level.branch):
            cin = 1 if i == 0 else features
            if w.shape != (kernel, kernel, cin, features):
                raise GraphError(f"level {lv + 1} conv {i + 1} has a kernel {w.shape}")
            if b.size not in (1, features):  # the first conv's bias is one scalar
                raise GraphError(f"level {lv + 1} conv {i + 1} has {b.size} biases")
            state[f"{p}branch.{i}.weight"] = oihw(w)
            state[f"{p}branch.{i}.bias"] = vec(np.broadcast_to(b, (features,)))
        if level.upsample.shape != (up, up, features, 4):
            raise GraphError(f"level {lv + 1}'s upsampling conv is {level.upsample.shape}")
        if level.image.shape != (up, up, 1, 4):
            raise GraphError(f"level {lv + 1}'s image conv is {level.image.shape}")
        order = shuffle_order(1, 2)
        state[f"{p}upsample.weight"] = oihw(level.upsample[..., order])
        state[f"{p}image.weight"] = oihw(level.image[..., order])
    meta = {"variant": "LapSRN", "negative_slope": f"{slopes.pop():.7g}"}
    return state, meta, 1 << len(levels)
