"""Chain graphs (ESPCN, FSRCNN): a layer list consumed from the front.

:meth:`vsr.models.opencv_pb.graph.Graph.layers` walks such a graph back from its single
output to the placeholder; :class:`Chain` then takes the layers in order, each with a
message that says what was expected.
"""

from __future__ import annotations

import numpy as np

from vsr.models.opencv_pb.graph import Layer
from vsr.models.opencv_pb.layout import NHWC_TO_NCHW
from vsr.models.opencv_pb.wire import GraphError


class Chain:
    """Consumes a layer list from the front, with messages that say what was expected."""

    def __init__(self, layers: list[Layer]) -> None:
        self.layers = layers
        self.i = 0

    def peek(self) -> str:
        return self.layers[self.i].kind if self.i < len(self.layers) else "end"

    def take(self, kind: str, what: str) -> Layer:
        if self.peek() != kind:
            raise GraphError(f"expected {what}, found {self.peek()}")
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
            raise GraphError(f"{what}: {h}x{w} kernel on {i} channels, not {size}x{size} on {cin}")
        return kernel

    def bias(self, size: int, what: str) -> np.ndarray:
        value = self.take("bias", what).value
        assert value is not None
        if value.size != size:
            raise GraphError(f"{what}: {value.size} values, expected {size}")
        return value

    def end(self) -> None:
        if self.peek() == "transpose":
            layer = self.take("transpose", "the output transpose")
            assert layer.value is not None
            if tuple(layer.value) != NHWC_TO_NCHW:
                raise GraphError(f"output transpose {tuple(layer.value)}, expected NHWC->NCHW")
        if self.peek() != "end":
            raise GraphError(f"unexpected {self.peek()} after the output")


def conv_channels(layers: list[Layer]) -> int:
    first = next((la.value for la in layers if la.kind == "conv"), None)
    if first is None:
        raise GraphError("no convolution")
    return int(first.shape[2])
