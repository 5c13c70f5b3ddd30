"""ESPCN graphs -> :class:`vsr.models.archs.espcn.ESPCN` (``conv1``/``conv2``/``conv3``).

A chain: conv5x5+b, act, conv3x3+b, act, conv3x3+b, DepthToSpace(r) [, tanh]; the
activation (ReLU or tanh), the final tanh and the block size are read from the graph.
"""

from __future__ import annotations

import torch

from vsr.models.opencv_pb.chain import Chain, conv_channels
from vsr.models.opencv_pb.graph import Layer
from vsr.models.opencv_pb.layout import oihw, shuffle_order, vec
from vsr.models.opencv_pb.wire import GraphError


def read_espcn(layers: list[Layer]) -> tuple[dict[str, torch.Tensor], dict[str, str], int]:
    chain = Chain(layers)
    channels = conv_channels(layers)
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
        raise GraphError(f"conv3 has {w3.shape[3]} outputs for DepthToSpace({r})")
    out_act = "tanh" if chain.peek() == "tanh" else "none"
    if out_act == "tanh":
        chain.take("tanh", "tanh")
    chain.end()
    order = shuffle_order(channels, r)
    state = {
        "conv1.weight": oihw(w1),
        "conv1.bias": vec(b1),
        "conv2.weight": oihw(w2),
        "conv2.bias": vec(b2),
        "conv3.weight": oihw(w3[..., order]),
        "conv3.bias": vec(b3[order]),
    }
    meta = {"act": act, "out_act": out_act, "variant": "ESPCN"}
    return state, meta, r
