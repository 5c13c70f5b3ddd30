"""The video encoder core: the per-encoder default options, the pixel format an encoder
gets, the output-size rule, and :class:`VideoEncoder` (which encoder to use is
:mod:`vsr.media.codecs`), which adds an encoded video stream to an output container and
encodes :class:`~vsr.media.frame.Frame` objects into it. Every sink encodes through it:
the file :class:`~vsr.media.writer.Writer` (``vsr run``, ``--resume`` segments,
``vsr batch``) and the live :class:`~vsr.live.sinks.AvSink` (``vsr stream``), so
timestamps, colour tags and encoder settings follow one rule everywhere.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from typing import Any

import av
import av.error
import numpy as np

from vsr.errors import EncoderError
from vsr.media.captions import CaptionedFrames, carries_captions
from vsr.media.color import apply_color
from vsr.media.frame import PLANAR_FORMATS, ColorInfo, Frame
from vsr.media.hdr import HdrMetadata, hdr10_options
from vsr.media.probe import describe_av_error

__all__ = [
    "NVENC_PRESETS",
    "VideoEncoder",
    "choose_pix_fmt",
    "nvenc_options",
    "output_size",
    "rescale_pts",
    "to_av_frame",
]

log = logging.getLogger("vsr")

#: x264/x265 preset names -> NVENC presets (p1 fastest ... p7 best); p1..p7 and NVENC's
#: own names (``hq``, ``ll``, ``lossless``...) pass through as they are.
NVENC_PRESETS = {
    "ultrafast": "p1",
    "superfast": "p1",
    "veryfast": "p2",
    "faster": "p3",
    "fast": "p3",
    "medium": "p4",
    "slow": "p5",
    "slower": "p6",
    "veryslow": "p7",
    "placebo": "p7",
}


def nvenc_options(crf: int | None, preset: str | None) -> dict[str, str]:
    """NVENC options for x264-style ``crf``/``preset``: constant quality ``cq`` (VBR with
    no bitrate cap; NVENC takes 1..51, 0 would mean "automatic") and presets p1..p7
    (:data:`NVENC_PRESETS`)."""
    opts: dict[str, str] = {}
    if crf is not None:
        opts.update({"rc": "vbr", "cq": str(min(51, max(1, int(crf)))), "b": "0"})
    if preset is not None:
        opts["preset"] = NVENC_PRESETS.get(preset.lower(), preset)
    return opts


def _encoder_options(codec: str, crf: int | None, preset: str | None) -> dict[str, str]:
    """vsr's options for ``codec`` at ``crf``/``preset`` (``None``: vsr's default)."""
    opts: dict[str, str] = {}
    if codec == "libvpx-vp9":
        opts.update({"row-mt": "1", "deadline": "good", "cpu-used": "4"})
        if crf is not None:
            opts.update({"crf": str(crf), "b": "0"})
        if preset is not None:
            if preset in ("good", "best", "realtime"):
                opts["deadline"] = preset
            else:
                opts["cpu-used"] = preset
    elif codec.endswith("_nvenc"):
        opts.update(nvenc_options(crf, preset))
    else:  # libx264, libx265, libsvtav1 and most others
        if crf is not None:
            opts["crf"] = str(crf)
        if preset is not None:
            opts["preset"] = preset
        if codec in ("libx264", "libx265"):
            # veryfast: on a 2-core CPU the medium preset costs more than the model itself
            # (ESPCN x3, 320x240 -> 960x720: 11.6 fps end to end at medium, 19-20 fps at
            # veryfast; see BENCHMARKS.md). --preset medium/slow for smaller files.
            opts.setdefault("preset", "veryfast")
        if codec == "libx265":
            opts["x265-params"] = "log-level=error"
        if codec == "libsvtav1":
            opts.setdefault("preset", "10")
            opts["svtav1-params"] = "progress=0"
    return opts


def choose_pix_fmt(codec: str, wanted: str) -> str:
    """The format to encode: ``wanted`` if the encoder takes it, else the nearest it does
    (with a warning).

    Raises:
        EncoderError: the encoder takes none of the usable formats.
    """
    formats = [f.name for f in (av.Codec(codec, "w").video_formats or ())]
    if not formats or wanted in formats:
        return wanted
    depth = PLANAR_FORMATS.get(wanted, (8, 1, 1))[0]
    candidates: list[str] = []
    if depth > 8:
        # hardware encoders take 10-bit 4:2:0 as p010le
        candidates += ["p010le", "yuv420p10le"]
    eight = {"yuv420p10le": "yuv420p", "yuv422p10le": "yuv422p", "yuv444p10le": "yuv444p"}
    candidates += [eight.get(wanted, wanted), "yuv420p", "nv12"]
    for cand in candidates:
        if cand in formats:
            log.warning(
                "encoder %s cannot encode %s; writing %s instead%s",
                codec,
                wanted,
                cand,
                " (10-bit precision is lost)" if depth > 8 and cand in ("yuv420p", "nv12") else "",
            )
            return cand
    raise EncoderError(
        f"encoder {codec} supports none of the usable pixel formats",
        hint=f"it takes: {', '.join(formats)}",
    )


def _subsampling(pix_fmt: str) -> tuple[int, int]:
    if pix_fmt in PLANAR_FORMATS:
        return PLANAR_FORMATS[pix_fmt][1], PLANAR_FORMATS[pix_fmt][2]
    try:
        fmt = av.VideoFormat(pix_fmt)
    except (ValueError, TypeError):
        return 1, 1
    luma = fmt.components[0]
    sx = sy = 0
    for comp in fmt.components[1:3]:
        if comp.width < luma.width:
            sx = 1
        if comp.height < luma.height:
            sy = 1
    return sx, sy


def output_size(width: int, height: int, pix_fmt: str) -> tuple[int, int]:
    """The size actually encoded for ``width`` x ``height`` in ``pix_fmt``.

    4:2:0 crops width and height down to even, 4:2:2 the width, 4:4:4 nothing (the crop
    keeps the top-left region).
    """
    sx, sy = _subsampling(pix_fmt)
    return width - (width % 2 if sx else 0), height - (height % 2 if sy else 0)


def to_av_frame(planes: tuple[np.ndarray, ...], pix_fmt: str) -> Any:
    """Build an ``av.VideoFrame`` of ``pix_fmt`` from Y, U, V arrays (copies into FFmpeg's
    padded lines). The frame size is the luma plane's."""
    depth, sx, sy = PLANAR_FORMATS[pix_fmt]
    dtype = np.uint16 if depth > 8 else np.uint8
    height, width = planes[0].shape
    frame = av.VideoFrame(int(width), int(height), pix_fmt)
    itemsize = np.dtype(dtype).itemsize
    for i, src in enumerate(planes[:3]):
        plane: Any = frame.planes[i]
        if src.shape != (plane.height, plane.width):
            raise EncoderError(
                f"plane {i} is {src.shape[1]}x{src.shape[0]}, expected "
                f"{plane.width}x{plane.height} for {width}x{height} {pix_fmt}"
            )
        row = plane.line_size // itemsize
        view = np.frombuffer(plane, dtype=dtype)[: plane.height * row].reshape(plane.height, row)
        view[:, : plane.width] = src
    return frame


def rescale_pts(value: int | None, src: Fraction, dst: Fraction) -> int | None:
    """Rescale a timestamp from time base ``src`` to ``dst``: exactly when the result is
    a whole number of ``dst`` ticks, else to the nearest tick."""
    if value is None:
        return None
    if src == dst:
        return value
    return round(Fraction(value) * src / dst)


# -- the encoder core ----------------------------------------------------------------------


class VideoEncoder:
    """One encoded video stream in an output container, and its timestamps.

    The stream is added to ``out`` and its encoder opened at once, so a missing GPU or a
    bad option fails before any work. :meth:`encode` turns a :class:`Frame` into packets
    (:meth:`write` also muxes them), :meth:`flush` drains the encoder at the end.

    Frames: planar YUV of the encoder's size, or up to one pixel larger (cropped,
    top-left); another planar format is converted to ``pix_fmt`` (depth/chroma only, the
    range kept).

    Timestamps, one rule for every sink: a frame's pts is rescaled from its own time base
    to the stream's (exactly when possible, else to the nearest tick); a frame without
    pts gets the last pts plus one frame step at ``rate`` (the first gets 0); a pts that
    does not increase becomes the last pts + 1 and is counted in :attr:`pts_fixes`, for
    the owner to report.

    Scan: the stream is flagged progressive (``field_order``): vsr encodes whole frames
    (interlaced input is deinterlaced by the reader, :mod:`vsr.media.deinterlace`).

    Captions: a frame's A/53 closed captions (``Frame.captions``) are attached to the
    encoded frame as ``A53_CC`` side data, which encoders with ``a53cc`` (set on) write
    into the bitstream (:mod:`vsr.media.captions`); counted in :attr:`caption_frames`,
    or in :attr:`captions_dropped` for an encoder that cannot carry them.

    Args:
        out: the output container (``av.open(..., "w")``), before its header is written.
        codec: the encoder (already resolved: no ``auto``).
        width, height: the encoded size (see :func:`output_size`).
        pix_fmt: the encoded pixel format (see :func:`choose_pix_fmt`).
        time_base: the stream's time base; encoded pts count in it.
        rate: the nominal frame rate (encoder hint, and the step for frames without pts).
        crf, preset: quality/speed in the encoder's terms (``None``: vsr's default).
        options: extra encoder options, over vsr's defaults.
        defaults: apply vsr's per-encoder defaults (``preset=veryfast`` for x264...) under
            ``options``; ``False``: ``options`` only (FFmpeg's defaults for the rest).
        color: colour tags written on the stream and on every frame.
        sample_aspect_ratio: written when not 1.
        rotation: display rotation in degrees (0: none).
        threads: encoder threads (0: FFmpeg chooses).
        gop_size: the keyframe interval in frames (``None``: the encoder's default).
        fit: frames of any other size are scaled to ``width`` x ``height`` instead of
            refused (a live source may come back at another size after a reconnect).
        hdr: HDR10 static metadata to write, merged into the encoder's parameter string
            (``x265-params``...; parameters already given there win) where the encoder
            takes it (:func:`vsr.media.hdr.hdr10_options`); ``None``: none.

    Raises:
        EncoderError: the container cannot hold ``codec``, or the encoder does not open.
    """

    def __init__(
        self,
        out: Any,
        codec: str,
        *,
        width: int,
        height: int,
        pix_fmt: str,
        time_base: Fraction,
        rate: Fraction,
        crf: int | None = None,
        preset: str | None = None,
        options: dict[str, str] | None = None,
        defaults: bool = True,
        color: ColorInfo | None = None,
        sample_aspect_ratio: Fraction | None = None,
        rotation: float = 0,
        threads: int = 0,
        gop_size: int | None = None,
        fit: bool = False,
        hdr: HdrMetadata | None = None,
    ) -> None:
        self.codec = codec
        self.width = width
        self.height = height
        self.pix_fmt = pix_fmt
        self.time_base = time_base
        self.rate = rate
        self.color = color if color is not None else ColorInfo()
        self.fit = fit
        #: the pts of the last frame encoded (stream time base)
        self.last_pts: int | None = None
        #: frames whose pts did not increase and were moved to last + 1
        self.pts_fixes = 0
        #: packets whose dts the encoder got wrong and that were given their pts
        self.dts_fixes = 0
        self._last_dts: int | None = None
        self.frames = 0
        #: frames encoded with their A/53 captions, and frames whose captions were dropped
        self.caption_frames = 0
        self.captions_dropped = 0
        self.carries_captions = carries_captions(codec)
        self._captioned = CaptionedFrames()
        self._out = out
        fmt = out.format.name
        try:
            stream = out.add_stream(codec, rate=rate)
        except ValueError as exc:
            raise EncoderError(
                f"the {fmt} container cannot hold {codec} video ({exc})",
                hint="pick another --codec or output extension",
            ) from None
        except av.error.FFmpegError as exc:
            raise EncoderError(f"cannot set up encoder {codec}: {describe_av_error(exc)}") from None
        ctx = stream.codec_context
        ctx.width = width
        ctx.height = height
        ctx.pix_fmt = pix_fmt
        ctx.time_base = time_base
        stream.time_base = time_base
        ctx.framerate = rate
        if threads:
            ctx.thread_count = int(threads)
        if gop_size is not None:
            ctx.gop_size = int(gop_size)
        if sample_aspect_ratio is not None and sample_aspect_ratio != 1:
            ctx.sample_aspect_ratio = sample_aspect_ratio
        apply_color(ctx, self.color)
        ctx.field_order = 1  # AV_FIELD_PROGRESSIVE: whole frames, never fields
        if rotation:
            stream.set_display_rotation(rotation)
        base = _encoder_options(codec, crf, preset) if defaults else {}
        if self.carries_captions:
            base["a53cc"] = "1"  # A53_CC side data -> SEI / user data
        ctx.options = hdr10_options(codec, {**base, **(options or {})}, hdr)
        try:
            ctx.open()  # now, so a missing GPU or bad option fails before any work
        except (av.error.FFmpegError, ValueError) as exc:
            raise EncoderError(
                f"cannot open encoder {codec} ({width}x{height} {pix_fmt}): "
                f"{describe_av_error(exc)}",
                hint="hardware encoders need their GPU and driver; try libx264",
            ) from None
        #: the output stream (``av`` video stream)
        self.stream: Any = stream

    # -- timestamps ------------------------------------------------------------------------

    def next_pts(self, pts: int | None, time_base: Fraction) -> int:
        """The stream pts for a frame with ``pts`` in ``time_base`` (the rule above);
        it becomes :attr:`last_pts`."""
        out = rescale_pts(pts, time_base, self.time_base)
        if out is None:
            out = 0 if self.last_pts is None else self.last_pts + self._step()
        if self.last_pts is not None and out <= self.last_pts:
            # Encoders need strictly increasing pts; only broken input gets here.
            self.pts_fixes += 1
            out = self.last_pts + 1
        self.last_pts = out
        return out

    def _step(self) -> int:
        return max(1, round(1 / (self.rate * self.time_base)))

    #: How many frames an encoder's dts may lie before its pts (B-frame reordering).
    MAX_REORDER = 64

    def _checked_dts(self, packets: Any) -> list[Any]:
        """The encoder's packets, a dts that cannot be right replaced: libx265 (seen with
        FFmpeg 8.1) can return an uninitialised dts, far below the pts, when it encodes
        only one or two frames, and the muxer then refuses the packet. Such a dts (above
        the pts, or more than :attr:`MAX_REORDER` frames below it) becomes the pts, kept
        above the previous packet's dts."""
        out = list(packets)
        reach = self.MAX_REORDER * self._step()
        for packet in out:
            pts, dts = packet.pts, packet.dts
            if pts is not None and dts is not None and (dts > pts or pts - dts > reach):
                fixed = pts
                if self._last_dts is not None and fixed <= self._last_dts:
                    fixed = self._last_dts + 1
                log.debug("%s gave dts %d for pts %d; using %d", self.codec, dts, pts, fixed)
                packet.dts = dts = fixed
                self.dts_fixes += 1
            if dts is not None:
                self._last_dts = dts
        return out

    # -- frames ----------------------------------------------------------------------------

    def prepare(self, frame: Frame) -> Any:
        """``frame`` as an ``av.VideoFrame`` of the encoder's size and format, colour
        tagged, without its pts (up to one pixel larger: cropped; another size: scaled
        with ``fit``, else refused).

        Raises:
            EncoderError: wrong size, format or sample type, or the conversion failed.
        """
        w, h = self.width, self.height
        if frame.pix_fmt not in PLANAR_FORMATS:
            raise EncoderError(f"frame pixel format {frame.pix_fmt!r} is not planar YUV")
        same = w <= frame.width <= w + 1 and h <= frame.height <= h + 1
        if not same and not self.fit:
            raise EncoderError(
                f"frame {frame.index} is {frame.width}x{frame.height}, the output is {w}x{h}"
            )
        depth, sx, sy = PLANAR_FORMATS[frame.pix_fmt]
        dtype = np.uint16 if depth > 8 else np.uint8
        cw, ch = -(-w // (1 << sx)), -(-h // (1 << sy))
        planes = (
            (frame.planes[0][:h, :w], frame.planes[1][:ch, :cw], frame.planes[2][:ch, :cw])
            if same
            else frame.planes
        )
        if any(p.dtype != dtype for p in planes):
            raise EncoderError(
                f"frame {frame.index} planes must be {np.dtype(dtype).name} for {frame.pix_fmt}"
            )
        color = self.color
        if frame.captions is not None and self.carries_captions:
            av_frame = self._captioned.make(planes, frame.pix_fmt, frame.captions)
        else:
            av_frame = to_av_frame(planes, frame.pix_fmt)
        apply_color(av_frame, color)
        if frame.pix_fmt != self.pix_fmt or not same:
            # Depth/chroma conversion (or fit): keep the range (swscale would go to limited).
            rng = 2 if color.full_range else 1
            size = {} if same else {"width": w, "height": h}
            try:
                av_frame = av_frame.reformat(
                    format=self.pix_fmt, src_color_range=rng, dst_color_range=rng, **size
                )
            except (av.error.FFmpegError, ValueError) as exc:
                raise EncoderError(
                    f"converting frame {frame.index} from {frame.pix_fmt} to {self.pix_fmt} "
                    f"failed: {describe_av_error(exc)}"
                ) from None
            apply_color(av_frame, color)
        return av_frame

    def encode(self, frame: Frame) -> list[Any]:
        """Encode ``frame`` with its timestamp (the rule above); return the packets the
        encoder gave back (none yet, often), for the caller to mux.

        Raises:
            EncoderError: see :meth:`prepare`, or the encoder failed.
        """
        av_frame = self.prepare(frame)
        av_frame.pts = self.next_pts(frame.pts, frame.time_base)
        av_frame.time_base = self.time_base
        try:
            packets = self._checked_dts(self.stream.encode(av_frame))
        except (av.error.FFmpegError, ValueError) as exc:
            raise EncoderError(
                f"encoding frame {frame.index} with {self.codec} failed: {describe_av_error(exc)}"
            ) from None
        self.frames += 1
        if frame.captions is not None:
            if self.carries_captions:
                self.caption_frames += 1
            else:
                self.captions_dropped += 1
        return packets

    def write(self, frame: Frame) -> None:
        """:meth:`encode` ``frame`` and mux its packets into the container.

        Raises:
            EncoderError: encoding or muxing failed.
        """
        self._mux(self.encode(frame), f"encoding frame {frame.index} with {self.codec}")

    def _mux(self, packets: list[Any], what: str) -> None:
        try:
            for packet in packets:
                self._out.mux_one(packet)
        except (av.error.FFmpegError, ValueError) as exc:
            raise EncoderError(f"{what} failed: {describe_av_error(exc)}") from None

    def flush(self) -> list[Any]:
        """Drain the encoder; return its last packets, for the caller to mux.

        Raises:
            EncoderError: the encoder failed.
        """
        try:
            return self._checked_dts(self.stream.encode(None))
        except (av.error.FFmpegError, ValueError) as exc:
            raise EncoderError(
                f"flushing encoder {self.codec} failed: {describe_av_error(exc)}"
            ) from None

    def finish(self) -> None:
        """:meth:`flush` and mux the last packets into the container.

        Raises:
            EncoderError: flushing or muxing failed.
        """
        self._mux(self.flush(), f"flushing encoder {self.codec}")
