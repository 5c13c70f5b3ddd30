"""``read_pb``: an OpenCV dnn_superres ``.pb`` file -> a state dict for its torch module.

Parses the file (:mod:`.graph`), guesses the family from the op counts, runs that
family's matcher (:mod:`.espcn`, :mod:`.fsrcnn`, :mod:`.lapsrn`, :mod:`.edsr`) and checks
the result against the architecture and scale asked for; every failure is one
WeightsError.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from vsr.errors import WeightsError
from vsr.models.opencv_pb.edsr import read_edsr
from vsr.models.opencv_pb.espcn import read_espcn
from vsr.models.opencv_pb.fsrcnn import read_fsrcnn
from vsr.models.opencv_pb.graph import Graph, parse_graph
from vsr.models.opencv_pb.lapsrn import read_lapsrn
from vsr.models.opencv_pb.wire import MAX_BYTES, GraphError

_FAMILY_NAMES = {"espcn": "ESPCN", "fsrcnn": "FSRCNN", "lapsrn": "LapSRN", "edsr": "EDSR"}
_Reader = Callable[[Graph], tuple[dict[str, torch.Tensor], dict[str, str], int]]
_READERS: dict[str, _Reader] = {
    "espcn": lambda graph: read_espcn(graph.layers()),
    "fsrcnn": lambda graph: read_fsrcnn(graph.layers()),
    "lapsrn": read_lapsrn,
    "edsr": read_edsr,
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
            raise GraphError(f"{size} bytes is too large for a dnn_superres graph")
        graph = Graph(parse_graph(path.read_bytes()))
    except (GraphError, OSError) as exc:
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
    except GraphError as exc:
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
