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
placeholder, turned into a list of layers, then matched against the torch modules.
LapSRN and EDSR graphs branch: they are matched node by node from the outputs back.

Modules:

- :mod:`.wire`: the protobuf wire format (bounded reader, :class:`GraphError`);
- :mod:`.graph`: ``GraphDef`` -> nodes, constants (``Dequantize`` included), the walk of a
  chain graph to layers, and the node-by-node matcher base;
- :mod:`.layout`: TF HWIO/DepthToSpace -> torch OIHW/PixelShuffle;
- :mod:`.chain`, :mod:`.espcn`, :mod:`.fsrcnn`: the chain families;
- :mod:`.lapsrn`, :mod:`.edsr`: the branching families (their layouts are described there);
- :mod:`.reader`: :func:`read_pb`, the entry point.

The reference for comparisons with cv2.dnn_superres (its pre- and post-processing around a
torch module) lives with the tests, in ``tests/opencv_reference.py``.
"""

from __future__ import annotations

from vsr.models.opencv_pb.reader import read_pb
from vsr.models.opencv_pb.wire import MAX_BYTES

__all__ = ["MAX_BYTES", "read_pb"]
