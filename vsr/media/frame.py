"""The frame contract shared by reader, model stage and writer.

A frame is planar YUV, exactly as decoded: no RGB round trip in the pipeline.
Timestamps are integers in the stream's time base; rates are Fractions.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

#: Planar formats the pipeline carries as they are. Anything else is converted by
#: the reader to ``yuv420p`` (8-bit sources) or ``yuv420p10le`` (deeper sources).
PLANAR_FORMATS: dict[str, tuple[int, int, int]] = {
    # name: (bit depth, log2 chroma subsampling x, log2 chroma subsampling y)
    "yuv420p": (8, 1, 1),
    "yuv422p": (8, 1, 0),
    "yuv444p": (8, 0, 0),
    "yuv420p10le": (10, 1, 1),
    "yuv422p10le": (10, 1, 0),
    "yuv444p10le": (10, 0, 0),
}


@dataclass(frozen=True, slots=True)
class ColorInfo:
    """Colour tags of a video stream, as FFmpeg names them (``None`` when unspecified).

    ``matrix`` is e.g. ``"bt709"``, ``"bt470bg"``, ``"smpte170m"``, ``"bt2020nc"``;
    ``range`` is ``"tv"`` (limited) or ``"pc"`` (full).
    """

    matrix: str | None = None
    range: str | None = None
    primaries: str | None = None
    transfer: str | None = None

    @property
    def full_range(self) -> bool:
        return self.range == "pc"


@dataclass(slots=True)
class Frame:
    """One decoded (or upscaled) video frame.

    ``planes`` holds Y, U, V as 2-D arrays: uint8 for 8-bit formats, uint16 (values
    0..1023) for 10-bit ones. ``pts`` is ``None`` only when the container gave none.
    ``captions``: the frame's ATSC A/53 closed captions (the ``cc_data`` bytes of its
    ``A53_CC`` side data, :mod:`vsr.media.captions`), ``None`` when it has none; whatever
    makes a new frame from this one keeps them (``dataclasses.replace``).
    """

    index: int
    pts: int | None
    time_base: Fraction
    planes: tuple[np.ndarray, np.ndarray, np.ndarray]
    pix_fmt: str
    captions: bytes | None = None

    @property
    def width(self) -> int:
        return int(self.planes[0].shape[1])

    @property
    def height(self) -> int:
        return int(self.planes[0].shape[0])

    @property
    def bit_depth(self) -> int:
        return PLANAR_FORMATS[self.pix_fmt][0]
