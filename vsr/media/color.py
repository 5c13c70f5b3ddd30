"""Colour tags and YUV <-> RGB conversion references.

Two jobs:

* Map FFmpeg's integer colour enums (as PyAV exposes them on codec contexts and frames)
  to and from the names :class:`~vsr.media.frame.ColorInfo` uses (FFmpeg's own names:
  ``"bt709"``, ``"tv"``, ...).
* Give float64 reference conversions between YUV code values and RGB in [0, 1] for
  BT.601, BT.709 and BT.2020 (plus SMPTE 240M and FCC), limited or full range, 8 or 10
  bit. Tests use them directly; the torch backend reimplements the same matrices on the
  device (use :func:`yuv_to_rgb_matrix` / :func:`rgb_to_yuv_matrix` to get them).

Normalisation used throughout: a code value ``c`` of bit depth ``b`` is normalised as
``c / (2**b - 1)``. Then ``rgb = M @ (yuv - offsets)`` and ``yuv = M_inv @ rgb + offsets``,
where the range scaling (16..235 / 16..240 for limited 8-bit) is folded into ``M``.

Unspecified tags follow what FFmpeg-based players assume: matrix BT.601 for SD
(height < 720) and BT.709 for HD; range limited ("tv").
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vsr.media.frame import ColorInfo

# FFmpeg enum values (libavutil/pixfmt.h; they follow ITU-T H.273) -> FFmpeg names.
MATRIX_NAMES: dict[int, str] = {
    0: "gbr",
    1: "bt709",
    4: "fcc",
    5: "bt470bg",
    6: "smpte170m",
    7: "smpte240m",
    8: "ycgco",
    9: "bt2020nc",
    10: "bt2020c",
    11: "smpte2085",
    12: "chroma-derived-nc",
    13: "chroma-derived-c",
    14: "ictcp",
    15: "ipt-c2",
    16: "ycgco-re",
    17: "ycgco-ro",
}
RANGE_NAMES: dict[int, str] = {1: "tv", 2: "pc"}
PRIMARIES_NAMES: dict[int, str] = {
    1: "bt709",
    4: "bt470m",
    5: "bt470bg",
    6: "smpte170m",
    7: "smpte240m",
    8: "film",
    9: "bt2020",
    10: "smpte428",
    11: "smpte431",
    12: "smpte432",
    22: "ebu3213",
}
TRANSFER_NAMES: dict[int, str] = {
    1: "bt709",
    4: "gamma22",
    5: "gamma28",
    6: "smpte170m",
    7: "smpte240m",
    8: "linear",
    9: "log100",
    10: "log316",
    11: "iec61966-2-4",
    12: "bt1361e",
    13: "iec61966-2-1",
    14: "bt2020-10",
    15: "bt2020-12",
    16: "smpte2084",
    17: "smpte428",
    18: "arib-std-b67",
}
#: FFmpeg's value for "unspecified" in each enum.
UNSPECIFIED = {"matrix": 2, "range": 0, "primaries": 2, "transfer": 2}

_TABLES: dict[str, dict[int, str]] = {
    "matrix": MATRIX_NAMES,
    "range": RANGE_NAMES,
    "primaries": PRIMARIES_NAMES,
    "transfer": TRANSFER_NAMES,
}
# ColorInfo field -> PyAV attribute on VideoCodecContext / VideoFrame.
_AV_ATTRS = {
    "matrix": "colorspace",
    "range": "color_range",
    "primaries": "color_primaries",
    "transfer": "color_trc",
}
# Aliases people type, mapped to FFmpeg's names.
_ALIASES = {
    "matrix": {"bt601": "smpte170m", "bt2020": "bt2020nc", "rgb": "gbr"},
    "range": {"limited": "tv", "mpeg": "tv", "full": "pc", "jpeg": "pc"},
    "primaries": {"bt601": "smpte170m", "jedec-p22": "ebu3213"},
    "transfer": {"bt601": "smpte170m", "srgb": "iec61966-2-1", "pq": "smpte2084"},
}


def color_name(kind: str, value: int | None) -> str | None:
    """Name of an FFmpeg colour enum value; ``None`` for unspecified/unknown/reserved."""
    if value is None:
        return None
    return _TABLES[kind].get(int(value))


def color_code(kind: str, name: str | None) -> int:
    """FFmpeg enum value for a colour name (``None`` -> the 'unspecified' value).

    Raises:
        ValueError: the name is not one FFmpeg knows for this kind.
    """
    if name is None:
        return UNSPECIFIED[kind]
    key = name.lower()
    key = _ALIASES[kind].get(key, key)
    for code, known in _TABLES[kind].items():
        if known == key:
            return code
    known_names = ", ".join(sorted(_TABLES[kind].values()))
    raise ValueError(f"unknown colour {kind} {name!r} (known: {known_names})")


def normalize_color(color: ColorInfo) -> ColorInfo:
    """The same tags with aliases (``"bt601"``, ``"full"``...) replaced by FFmpeg names."""
    values = {}
    for kind in _TABLES:
        name = getattr(color, kind)
        values[kind] = None if name is None else _TABLES[kind][color_code(kind, name)]
    return ColorInfo(**values)


def color_from_av(obj: Any, *, pix_fmt: str | None = None) -> ColorInfo:
    """Read the colour tags off a PyAV codec context or video frame.

    A ``yuvj*`` pixel format means full range even when the range tag is unset.
    """
    values = {kind: color_name(kind, getattr(obj, attr, None)) for kind, attr in _AV_ATTRS.items()}
    if pix_fmt is not None and pix_fmt.startswith("yuvj") and values["range"] is None:
        values["range"] = "pc"
    return ColorInfo(**values)


def apply_color(obj: Any, color: ColorInfo) -> None:
    """Set the colour tags of ``color`` on a PyAV codec context or video frame.

    Unspecified (``None``) tags are left as they are.
    """
    for kind, attr in _AV_ATTRS.items():
        name = getattr(color, kind)
        if name is not None:
            setattr(obj, attr, color_code(kind, name))


# --- YUV <-> RGB -------------------------------------------------------------------------

#: Luma coefficients (Kr, Kb) per matrix family.
_KR_KB: dict[str, tuple[float, float]] = {
    "bt601": (0.299, 0.114),
    "bt709": (0.2126, 0.0722),
    "bt2020": (0.2627, 0.0593),
    "smpte240m": (0.212, 0.087),
    "fcc": (0.30, 0.11),
}
_MATRIX_FAMILY = {
    "bt470bg": "bt601",
    "smpte170m": "bt601",
    "bt601": "bt601",
    "bt709": "bt709",
    "bt2020nc": "bt2020",
    "bt2020c": "bt2020",
    "bt2020": "bt2020",
    "smpte240m": "smpte240m",
    "fcc": "fcc",
}


def matrix_family(color: ColorInfo, *, height: int | None = None) -> str:
    """The coefficient set to use: ``"bt601"``, ``"bt709"``, ``"bt2020"``, ...

    An unspecified (or non-YCbCr, e.g. ``ycgco``) matrix falls back to BT.601 for SD
    (height < 720) and BT.709 for HD, as FFmpeg-based players do; without a height,
    BT.601 (swscale's default).
    """
    if color.matrix is not None and color.matrix in _MATRIX_FAMILY:
        return _MATRIX_FAMILY[color.matrix]
    if height is not None and height >= 720:
        return "bt709"
    return "bt601"


def _range_scale(full: bool, bit_depth: int) -> tuple[float, float, float, float]:
    """(y_offset, y_scale, c_offset, c_scale) in normalised units for one range/depth."""
    peak = float((1 << bit_depth) - 1)
    shift = 1 << (bit_depth - 8)
    c_offset = (1 << (bit_depth - 1)) / peak
    if full:
        return 0.0, 1.0, c_offset, 1.0
    return 16 * shift / peak, 219 * shift / peak, c_offset, 224 * shift / peak


def yuv_to_rgb_matrix(
    color: ColorInfo, *, height: int | None = None, bit_depth: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """The conversion ``rgb = M @ (yuv - offsets)`` for normalised code values.

    ``yuv`` is ``code / (2**bit_depth - 1)``; ``rgb`` is in [0, 1] for in-gamut input.

    Returns:
        ``(M, offsets)``: a 3x3 float64 matrix and a length-3 float64 offset vector.
    """
    kr, kb = _KR_KB[matrix_family(color, height=height)]
    kg = 1.0 - kr - kb
    # R'G'B' from Y' Pb Pr (Pb, Pr in [-0.5, 0.5]).
    base = np.array(
        [
            [1.0, 0.0, 2.0 * (1.0 - kr)],
            [1.0, -2.0 * (1.0 - kb) * kb / kg, -2.0 * (1.0 - kr) * kr / kg],
            [1.0, 2.0 * (1.0 - kb), 0.0],
        ],
        dtype=np.float64,
    )
    y_off, y_scale, c_off, c_scale = _range_scale(color.full_range, bit_depth)
    m = base @ np.diag([1.0 / y_scale, 1.0 / c_scale, 1.0 / c_scale])
    return m, np.array([y_off, c_off, c_off], dtype=np.float64)


def rgb_to_yuv_matrix(
    color: ColorInfo, *, height: int | None = None, bit_depth: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """The inverse conversion ``yuv = M @ rgb + offsets`` (normalised code values)."""
    m, offsets = yuv_to_rgb_matrix(color, height=height, bit_depth=bit_depth)
    return np.linalg.inv(m), offsets


def _upsample_chroma(plane: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour chroma upsampling to the luma shape (reference only)."""
    h, w = shape
    ry = -(-h // plane.shape[0])
    rx = -(-w // plane.shape[1])
    if ry > 1 or rx > 1:
        plane = np.repeat(np.repeat(plane, ry, axis=0), rx, axis=1)
    return plane[:h, :w]


def yuv_to_rgb(
    y: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    color: ColorInfo,
    bit_depth: int = 8,
    *,
    clip: bool = True,
) -> np.ndarray:
    """Convert YUV code-value planes to float64 RGB (H, W, 3) in [0, 1].

    Chroma planes smaller than luma (4:2:0, 4:2:2) are upsampled by repetition. An
    unspecified matrix is resolved from the luma height (see :func:`matrix_family`).
    """
    peak = float((1 << bit_depth) - 1)
    shape = (int(y.shape[0]), int(y.shape[1]))
    yuv = np.stack(
        [
            np.asarray(y, dtype=np.float64),
            _upsample_chroma(np.asarray(u, dtype=np.float64), shape),
            _upsample_chroma(np.asarray(v, dtype=np.float64), shape),
        ],
        axis=-1,
    )
    m, offsets = yuv_to_rgb_matrix(color, height=shape[0], bit_depth=bit_depth)
    rgb = (yuv / peak - offsets) @ m.T
    return np.clip(rgb, 0.0, 1.0) if clip else rgb


def rgb_to_yuv(
    rgb: np.ndarray,
    color: ColorInfo,
    bit_depth: int = 8,
    *,
    height: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Convert float RGB (H, W, 3) in [0, 1] to full-resolution float64 YUV code values.

    The result is not rounded or subsampled: use :func:`to_code` and :func:`subsample`.
    ``height`` resolves an unspecified matrix (default: the image height).
    """
    rgb = np.asarray(rgb, dtype=np.float64)
    h = rgb.shape[0] if height is None else height
    m, offsets = rgb_to_yuv_matrix(color, height=h, bit_depth=bit_depth)
    peak = float((1 << bit_depth) - 1)
    yuv = (rgb @ m.T + offsets) * peak
    return yuv[..., 0], yuv[..., 1], yuv[..., 2]


def subsample(plane: np.ndarray, sx: int, sy: int) -> np.ndarray:
    """Average 2x2 (``sx = sy = 1``), 2x1 or 1x1 blocks of a full-resolution plane.

    Odd sizes give ``ceil(n / 2)`` samples (the last row/column is replicated), as
    FFmpeg's chroma planes have.
    """
    if sx not in (0, 1) or sy not in (0, 1):
        raise ValueError("only 2x chroma subsampling is supported")
    out = np.asarray(plane, dtype=np.float64)
    for axis, s in ((0, sy), (1, sx)):
        if not s:
            continue
        if out.shape[axis] % 2:
            out = np.concatenate([out, np.take(out, [-1], axis=axis)], axis=axis)
        even = np.take(out, np.arange(0, out.shape[axis], 2), axis=axis)
        odd = np.take(out, np.arange(1, out.shape[axis], 2), axis=axis)
        out = (even + odd) / 2.0
    return out


def to_code(plane: np.ndarray, bit_depth: int = 8) -> np.ndarray:
    """Round and clip float code values to uint8 (8-bit) or uint16 (deeper)."""
    peak = (1 << bit_depth) - 1
    dtype = np.uint8 if bit_depth <= 8 else np.uint16
    return np.clip(np.rint(plane), 0, peak).astype(dtype)
