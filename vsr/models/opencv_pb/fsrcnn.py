"""FSRCNN / FSRCNN-small graphs -> :class:`vsr.models.archs.fsrcnn.FSRCNN`
with ``upsampler="subpixel"``.

A chain: conv5x5+b, PReLU, conv1x1+b, PReLU, m x [conv3x3+b, PReLU], conv1x1+b, PReLU,
conv1x1, DepthToSpace(r), scalar bias. The PReLU is written out in the graph as
``relu(x) + alpha * (x - |x|) * 0.5``.
"""

from __future__ import annotations

import numpy as np
import torch

from vsr.models.opencv_pb.chain import Chain, conv_channels
from vsr.models.opencv_pb.graph import Layer
from vsr.models.opencv_pb.layout import oihw, shuffle_order, vec
from vsr.models.opencv_pb.wire import GraphError


def read_fsrcnn(layers: list[Layer]) -> tuple[dict[str, torch.Tensor], dict[str, str], int]:
    chain = Chain(layers)
    channels = conv_channels(layers)
    state: dict[str, torch.Tensor] = {}
    index = 0

    def conv_prelu(size: int, cin: int, what: str) -> int:
        nonlocal index
        kernel = chain.conv(size, cin, what)
        cout = kernel.shape[3]
        state[f"body.{index}.weight"] = oihw(kernel)
        state[f"body.{index}.bias"] = vec(chain.bias(cout, f"{what}'s bias"))
        alpha = chain.take("prelu", f"a PReLU after {what}").value
        assert alpha is not None
        if alpha.size not in (1, cout):
            raise GraphError(f"PReLU after {what}: {alpha.size} slopes for {cout} channels")
        state[f"body.{index + 1}.weight"] = vec(np.broadcast_to(alpha, (cout,)))
        index += 2
        return cout

    d = conv_prelu(5, channels, "the feature conv (5x5)")
    s = conv_prelu(1, d, "the shrinking conv (1x1)")
    m = 0
    while chain.kernel_size() == 3:
        conv_prelu(3, s, f"mapping conv {m + 1} (3x3)")
        m += 1
    if conv_prelu(1, s, "the expanding conv (1x1)") != d:
        raise GraphError("the expanding conv does not restore the feature width")
    tail = chain.conv(1, d, "the sub-pixel conv (1x1)")
    if chain.peek() == "bias":
        raise GraphError("the sub-pixel conv has a per-channel bias")
    r = chain.take("d2s", "DepthToSpace").block
    if r < 1 or tail.shape[3] != channels * r * r:
        raise GraphError(f"the sub-pixel conv has {tail.shape[3]} outputs for DepthToSpace({r})")
    bias = chain.bias(1, "the final scalar bias")
    chain.end()
    state["tail.0.weight"] = oihw(tail[..., shuffle_order(channels, r)])
    state["tail_bias"] = vec(bias)
    variant = {(56, 12, 4): "FSRCNN", (32, 5, 1): "FSRCNN-small"}.get((d, s, m), "FSRCNN")
    meta = {"upsampler": "subpixel", "variant": variant}
    return state, meta, r
