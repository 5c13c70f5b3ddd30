"""HDR metadata: read HDR10 static metadata and spot dynamic HDR in the source, carry
the static metadata to the encoders that can write it, and report what happened.

What PyAV 18.1 gives (FFmpeg 8): a decoded frame's ``side_data`` holds
``MASTERING_DISPLAY_METADATA`` (FFmpeg's ``AVMasteringDisplayMetadata``, 88 bytes: R, G,
B primaries and the white point as ``AVRational`` x/y pairs, min and max luminance in
cd/m2, ``has_primaries``, ``has_luminance``) and ``CONTENT_LIGHT_LEVEL``
(``AVContentLightMetadata``: MaxCLL, MaxFALL as two unsigned ints) as raw buffers, which
are unpacked here exactly. FFmpeg's decoder copies the stream's coded side data (MP4
``mdcv``/``clli`` boxes, Matroska ``MasteringMetadata``) onto every frame, so the first
frame covers both the bitstream (HEVC/AV1 SEI or OBU) and the container. PyAV has no
getter for a stream's coded side data, so the Dolby Vision configuration record
(``dvcC``/``dvvC``) itself cannot be read: Dolby Vision is detected by the frames'
``DOVI_RPU_BUFFER``/``DOVI_METADATA`` side data or by a Dolby Vision codec tag
(``dvh1``, ``dvhe``, ``dav1``, ...). HDR10+ is ``DYNAMIC_HDR_PLUS``, HDR Vivid
``DYNAMIC_HDR_VIVID``.

Writing: PyAV cannot attach side data to the frames vsr encodes (the container is
read-only) nor set ``AVCodecContext.decoded_side_data``, so the metadata reaches the
encoder only through its own parameter string. Measured with this FFmpeg build (read
back from the first decoded frame of the output):

* ``libx265``: ``x265-params`` ``master-display=G(x,y)B(x,y)R(x,y)WP(x,y)L(max,min)``
  (chromaticity in 1/50000, luminance in 1/10000 cd/m2) and ``max-cll=MaxCLL,MaxFALL``:
  kept exactly, as SEI on every keyframe (so segments joined by stream copy keep it).
* ``libx264``: ``x264-params`` ``mastering-display=`` (x265's units) and ``cll=``
  (x264 build 163 or later): kept exactly.
* ``libsvtav1``: ``svtav1-params`` ``mastering-display=`` (decimal values) and
  ``content-light=``: kept, at AV1's precision (chromaticity in 1/65536, max luminance in
  1/256, min luminance in 1/16384 cd/m2).
* ``libvpx-vp9``, NVENC and the rest: dropped (VP9 has no such metadata in its bitstream,
  and WebM's ``Colour`` element comes from stream side data PyAV cannot set; FFmpeg's
  NVENC wrappers take none of it as an option).

Whether an encoder really writes it is checked once per process with a one-frame encode
(:func:`hdr10_carried`), so an older library that ignores the parameter is reported as
dropping it.
"""

from __future__ import annotations

import functools
import logging
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

import av
import av.error

from vsr.media.fidelity import Fidelity

__all__ = [
    "DOLBY_VISION_TAGS",
    "HDR10_ENCODERS",
    "HdrMetadata",
    "dynamic_hdr_from",
    "hdr10_carried",
    "hdr10_options",
    "hdr10_params",
    "hdr_from_frame",
    "merge_params",
    "record_hdr",
]

log = logging.getLogger("vsr")

Chromaticity = tuple[Fraction, Fraction]

#: Encoders that take HDR10 static metadata, and the option holding their parameters.
HDR10_ENCODERS: dict[str, str] = {
    "libx265": "x265-params",
    "libx264": "x264-params",
    "libsvtav1": "svtav1-params",
}
#: Codec tags (MP4 sample entries) that mean Dolby Vision.
DOLBY_VISION_TAGS = frozenset({"dvh1", "dvhe", "dav1", "dvav", "dva1", "dvc1"})

_MASTERING = struct.Struct("=20i2i")  # 10 AVRationals, has_primaries, has_luminance
_LIGHT = struct.Struct("=2I")  # MaxCLL, MaxFALL

# x265/x264 units: chromaticity in 0.00002, luminance in 0.0001 cd/m2.
_XY_UNIT = 50000
_L_UNIT = 10000


@dataclass(frozen=True, slots=True)
class HdrMetadata:
    """HDR10 static metadata: SMPTE ST 2086 mastering display and CTA-861.3 content light
    level, exactly as the source says (``None``: not given).

    ``red``, ``green``, ``blue``, ``white_point`` are CIE 1931 (x, y); luminances are in
    cd/m2; ``max_cll``/``max_fall`` in cd/m2 (0 means unknown in the standard).
    """

    red: Chromaticity | None = None
    green: Chromaticity | None = None
    blue: Chromaticity | None = None
    white_point: Chromaticity | None = None
    max_luminance: Fraction | None = None
    min_luminance: Fraction | None = None
    max_cll: int | None = None
    max_fall: int | None = None

    @property
    def has_primaries(self) -> bool:
        return None not in (self.red, self.green, self.blue, self.white_point)

    @property
    def has_luminance(self) -> bool:
        return self.max_luminance is not None and self.min_luminance is not None

    @property
    def has_mastering_display(self) -> bool:
        """Primaries, white point and luminance all known (what the encoders need)."""
        return self.has_primaries and self.has_luminance

    @property
    def has_content_light(self) -> bool:
        return self.max_cll is not None and self.max_fall is not None

    def describe(self) -> str:
        """One line: ``mastering display R(0.68,0.32) G(...) B(...) WP(...) L(1000,0.005)
        cd/m2, MaxCLL 1000, MaxFALL 400``."""
        parts: list[str] = []
        if self.has_primaries or self.has_luminance:
            md: list[str] = []
            if self.has_primaries:
                for name, xy in (
                    ("R", self.red),
                    ("G", self.green),
                    ("B", self.blue),
                    ("WP", self.white_point),
                ):
                    assert xy is not None
                    md.append(f"{name}({_decimal(xy[0])},{_decimal(xy[1])})")
            if self.max_luminance is not None and self.min_luminance is not None:
                md.append(f"L({_decimal(self.max_luminance)},{_decimal(self.min_luminance)}) cd/m2")
            parts.append("mastering display " + " ".join(md))
        if self.max_cll is not None:
            parts.append(f"MaxCLL {self.max_cll}")
        if self.max_fall is not None:
            parts.append(f"MaxFALL {self.max_fall}")
        return ", ".join(parts)


def _decimal(value: Fraction, places: int = 6) -> str:
    """``value`` in decimal, rounded to ``places`` places, without trailing zeros."""
    scaled = round(value * 10**places)
    sign = "-" if scaled < 0 else ""
    whole, frac = divmod(abs(scaled), 10**places)
    digits = f"{frac:0{places}d}".rstrip("0")
    return f"{sign}{whole}" + (f".{digits}" if digits else "")


def _rational(num: int, den: int) -> Fraction | None:
    return Fraction(num, den) if den > 0 else None


def _side_data(frame: Any) -> dict[str, bytes]:
    """The frame's side data by type name (the first of each type), as bytes."""
    out: dict[str, bytes] = {}
    try:
        items = list(frame.side_data)
    except (AttributeError, TypeError, ValueError):
        return out
    for sd in items:
        name = getattr(getattr(sd, "type", None), "name", None)
        if name and name not in out:
            try:
                out[name] = bytes(sd)
            except (TypeError, ValueError, BufferError):
                continue
    return out


def _mastering(raw: bytes) -> dict[str, Any]:
    if len(raw) < _MASTERING.size:
        return {}
    v = _MASTERING.unpack_from(raw)
    has_primaries, has_luminance = v[20], v[21]
    out: dict[str, Any] = {}
    if has_primaries:
        xy = [_rational(v[i], v[i + 1]) for i in range(0, 16, 2)]  # R, G, B, WP as x, y
        if None not in xy:
            pairs = [(xy[i], xy[i + 1]) for i in range(0, 8, 2)]
            out.update(red=pairs[0], green=pairs[1], blue=pairs[2], white_point=pairs[3])
    if has_luminance:
        lo, hi = _rational(v[16], v[17]), _rational(v[18], v[19])
        if lo is not None and hi is not None:
            out.update(min_luminance=lo, max_luminance=hi)
    return out


def hdr_from_frame(frame: Any) -> HdrMetadata | None:
    """The HDR10 static metadata on a decoded frame's side data, ``None`` if it has none."""
    if frame is None:
        return None
    sd = _side_data(frame)
    fields: dict[str, Any] = {}
    if "MASTERING_DISPLAY_METADATA" in sd:
        fields.update(_mastering(sd["MASTERING_DISPLAY_METADATA"]))
    light = sd.get("CONTENT_LIGHT_LEVEL")
    if light is not None and len(light) >= _LIGHT.size:
        fields["max_cll"], fields["max_fall"] = _LIGHT.unpack_from(light)
    return HdrMetadata(**fields) if fields else None


def dynamic_hdr_from(frame: Any, stream: Any = None) -> tuple[str, ...]:
    """The dynamic HDR formats the source carries: ``"HDR10+"``, ``"Dolby Vision"``,
    ``"HDR Vivid"`` (from the first frame's side data; Dolby Vision also from the
    stream's codec tag)."""
    names = set(_side_data(frame)) if frame is not None else set()
    found: list[str] = []
    if "DYNAMIC_HDR_PLUS" in names:
        found.append("HDR10+")
    tag = ""
    if stream is not None:
        try:
            tag = str(stream.codec_context.codec_tag or "").lower()
        except (AttributeError, av.error.FFmpegError, ValueError):
            tag = ""
    if names & {"DOVI_RPU_BUFFER", "DOVI_METADATA"} or tag in DOLBY_VISION_TAGS:
        found.append("Dolby Vision")
    if "DYNAMIC_HDR_VIVID" in names:
        found.append("HDR Vivid")
    return tuple(found)


# -- writing -------------------------------------------------------------------------------


def _mastering_param(hdr: HdrMetadata, number: Callable[[Fraction, int], str]) -> str:
    """``G(x,y)B(x,y)R(x,y)WP(x,y)L(max,min)``, each value written by ``number(value,
    unit)`` (the unit is x265's: 1/50000 for chromaticities, 1/10000 cd/m2)."""

    def xy(p: Chromaticity | None) -> str:
        assert p is not None
        return f"({number(p[0], _XY_UNIT)},{number(p[1], _XY_UNIT)})"

    assert hdr.max_luminance is not None and hdr.min_luminance is not None
    return (
        f"G{xy(hdr.green)}B{xy(hdr.blue)}R{xy(hdr.red)}WP{xy(hdr.white_point)}"
        f"L({number(hdr.max_luminance, _L_UNIT)},{number(hdr.min_luminance, _L_UNIT)})"
    )


def _x265_mastering(hdr: HdrMetadata) -> str:
    return _mastering_param(hdr, lambda v, unit: str(round(v * unit)))


def _svt_mastering(hdr: HdrMetadata) -> str:
    return _mastering_param(hdr, lambda v, _unit: _decimal(v))


def hdr10_params(codec: str, hdr: HdrMetadata) -> dict[str, str]:
    """The ``key=value`` parameters that make ``codec`` write ``hdr`` (empty when the
    encoder cannot carry it); they go into its :data:`HDR10_ENCODERS` option."""
    out: dict[str, str] = {}
    light = f"{hdr.max_cll},{hdr.max_fall}" if hdr.has_content_light else None
    if codec == "libx265":
        if hdr.has_mastering_display or light:
            # hdr10: signal HDR10 SEI; repeat-headers: headers and SEI on every keyframe
            out.update({"hdr10": "1", "repeat-headers": "1"})
        if hdr.has_mastering_display:
            out["master-display"] = _x265_mastering(hdr)
        if light:
            out["max-cll"] = light
    elif codec == "libx264":
        if hdr.has_mastering_display:
            out["mastering-display"] = _x265_mastering(hdr)
        if light:
            out["cll"] = light
    elif codec == "libsvtav1":
        if hdr.has_mastering_display:
            out["mastering-display"] = _svt_mastering(hdr)
        if light:
            out["content-light"] = light
    return out


def merge_params(existing: str | None, extra: dict[str, str]) -> str:
    """``existing`` (``"k=v:k2=v2"``) with ``extra`` appended; a key already in
    ``existing`` keeps its value (an explicit option wins)."""
    items = [p for p in (existing or "").split(":") if p]
    keys = {p.split("=", 1)[0].strip() for p in items}
    items += [f"{k}={v}" for k, v in extra.items() if k not in keys]
    return ":".join(items)


def hdr10_options(codec: str, options: dict[str, str], hdr: HdrMetadata | None) -> dict[str, str]:
    """Encoder ``options`` with ``hdr`` merged into ``codec``'s parameter string (a copy;
    unchanged when ``hdr`` is ``None`` or the encoder cannot carry it)."""
    key = HDR10_ENCODERS.get(codec)
    params = hdr10_params(codec, hdr) if hdr is not None and key is not None else {}
    if not params or key is None:
        return dict(options)
    return {**options, key: merge_params(options.get(key), params)}


#: What :func:`hdr10_carried` encodes and expects back.
_PROBE = HdrMetadata(
    red=(Fraction(17, 25), Fraction(8, 25)),
    green=(Fraction(53, 200), Fraction(69, 100)),
    blue=(Fraction(3, 20), Fraction(3, 50)),
    white_point=(Fraction(3127, 10000), Fraction(329, 1000)),
    max_luminance=Fraction(1000),
    min_luminance=Fraction(1, 200),
    max_cll=1000,
    max_fall=400,
)
_PROBE_QUIET = {"libx265": "log-level=error", "libsvtav1": "progress=0"}


@functools.lru_cache(maxsize=8)
def hdr10_carried(codec: str) -> bool:
    """Whether ``codec`` really writes HDR10 static metadata here: a 64x64 frame is
    encoded with :func:`hdr10_options` and the decoded frame must carry the mastering
    display and content light level back (within AV1's precision). Cached per process."""
    key = HDR10_ENCODERS.get(codec)
    if key is None:
        return False
    try:
        enc: Any = av.CodecContext.create(codec, "w")
        formats = [f.name for f in (enc.codec.video_formats or ())]
        enc.width = enc.height = 64
        enc.pix_fmt = "yuv420p10le" if "yuv420p10le" in formats else "yuv420p"
        enc.time_base = Fraction(1, 25)
        enc.framerate = Fraction(25)
        enc.options = hdr10_options(codec, {key: _PROBE_QUIET.get(codec, "")}, _PROBE)
        enc.open()
        frame = av.VideoFrame(64, 64, enc.pix_fmt)
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        frame.pts = 0
        packets = list(enc.encode(frame)) + list(enc.encode(None))
        dec: Any = _decoder(enc.codec.canonical_name)
        got = None
        for packet in [*packets, None]:
            for out in dec.decode(packet):
                got = got or hdr_from_frame(out)
        return _close_to(got, _PROBE)
    except Exception as exc:  # any failure means "not carried here"
        log.debug("HDR10 metadata probe of %s failed: %s", codec, exc)
        return False


def _decoder(name: str) -> Any:
    """A decoder context for codec ``name``: FFmpeg's native AV1 decoder decodes only
    with a hardware accelerator, so AV1 goes to libdav1d when there is one."""
    for cand in ("libdav1d", name) if name == "av1" else (name,):
        try:
            return av.CodecContext.create(cand, "r")
        except (ValueError, av.error.FFmpegError):
            continue
    raise ValueError(f"no decoder for {name}")


def _close_to(got: HdrMetadata | None, want: HdrMetadata) -> bool:
    if got is None or not got.has_mastering_display or not got.has_content_light:
        return False
    pairs: list[tuple[Any, Any]] = [
        (got.max_cll, want.max_cll),
        (got.max_fall, want.max_fall),
        (got.max_luminance, want.max_luminance),
        (got.min_luminance, want.min_luminance),
    ]
    for name in ("red", "green", "blue", "white_point"):
        a, b = getattr(got, name), getattr(want, name)
        pairs += [(a[0], b[0]), (a[1], b[1])]
    return all(abs(Fraction(a) - Fraction(b)) <= Fraction(1, 1000) for a, b in pairs)


# -- the report ----------------------------------------------------------------------------

_warned: set[tuple[str, str]] = set()


def _warn_once(source: str, message: str) -> None:
    """Log ``message`` once per source file and process: a ``--resume`` run opens a
    Writer per segment and one for the join, and each would say the same."""
    key = (source, message)
    if key in _warned:
        return
    _warned.add(key)
    log.warning("%s: %s", os.path.basename(source), message)


_DYNAMIC_WHY = {
    "HDR10+": (
        "its per-frame metadata cannot be handed to the encoder (PyAV cannot attach it to "
        "the frames vsr encodes, and x265 takes HDR10+ only as a JSON dynamic-metadata "
        "file, dhdr10-info, which vsr does not have)"
    ),
    "Dolby Vision": (
        "its RPU metadata describes the source frames and no encoder vsr uses re-creates it"
    ),
    "HDR Vivid": "no encoder vsr uses writes its per-frame metadata",
}


def record_hdr(
    fidelity: Fidelity,
    *,
    hdr: HdrMetadata | None,
    dynamic: tuple[str, ...],
    codec: str,
    source: str | os.PathLike[str],
) -> None:
    """Record what becomes of the source's HDR metadata with ``codec`` (``"hdr"``,
    ``"dynamic_hdr"``; nothing for a source without any) and warn, once per source, for
    what is dropped."""
    name = os.fspath(source)
    if hdr is not None:
        what = hdr.describe()
        incomplete = (hdr.has_primaries or hdr.has_luminance) and not hdr.has_mastering_display
        written = hdr
        if incomplete:  # the encoders take a whole mastering display or none
            written = replace(
                hdr,
                red=None,
                green=None,
                blue=None,
                white_point=None,
                max_luminance=None,
                min_luminance=None,
            )
        if not hdr10_carried(codec):
            fidelity.decide("hdr", f"HDR10 metadata dropped: {codec} cannot carry it")
            _warn_once(
                name,
                f"HDR10 metadata dropped ({what}): {codec} cannot carry it; players may "
                "show the output wrongly or as SDR (libx265, libsvtav1 and libx264 keep it)",
            )
        elif hdr10_params(codec, written):
            note = " (the source's mastering display is incomplete: not written)"
            fidelity.decide("hdr", f"HDR10 kept: {written.describe()}{note if incomplete else ''}")
        else:
            fidelity.decide(
                "hdr", "HDR10 metadata dropped: the source's mastering display is incomplete"
            )
            _warn_once(name, f"HDR10 metadata dropped ({what}): incomplete in the source")
    if dynamic:
        reasons = "; ".join(f"{d}: {_DYNAMIC_WHY.get(d, 'not carried')}" for d in dynamic)
        kept = str(fidelity.decisions.get("hdr", "")).startswith("HDR10 kept")
        base = "the static HDR10 metadata" if kept else "the colour tags"
        fidelity.decide("dynamic_hdr", f"dropped: {', '.join(dynamic)} ({reasons})")
        _warn_once(
            name,
            f"dynamic HDR dropped: {', '.join(dynamic)} ({reasons}); the output keeps {base} only",
        )
