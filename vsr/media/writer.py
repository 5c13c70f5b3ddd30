"""Encode video frames and remux the source's audio/subtitles into the output file.

A :class:`Writer` owns its output container *and* a second, header-only input container
on the source (used as the template for copied streams and to decode audio that must be
transcoded), so no PyAV object crosses a thread boundary. It is used by one thread.

The output is written to a hidden temporary sibling of the final path and renamed into
place only by a successful :meth:`Writer.close`; :meth:`Writer.abort` (or any failure)
deletes it, so a failed or interrupted run never leaves a partial file at the output path.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error
import numpy as np

from vsr.errors import EncoderError, MediaError, UsageError
from vsr.files import replace_durably, temp_sibling
from vsr.media.color import apply_color
from vsr.media.frame import PLANAR_FORMATS, Frame
from vsr.media.probe import MediaInfo, describe_av_error, open_input
from vsr.media.reader import Packet, planar_format

__all__ = [
    "AUTO_CODECS",
    "KNOWN_ENCODERS",
    "Writer",
    "encoder_available",
    "nvenc_options",
    "resolve_codec",
    "to_av_frame",
]

log = logging.getLogger("vsr")

#: Video encoders the writer knows how to configure (others get generic options).
KNOWN_ENCODERS = ("libx264", "libx265", "libsvtav1", "libvpx-vp9", "h264_nvenc", "hevc_nvenc")
#: ``codec`` values resolved per run: (NVENC encoder tried on CUDA, software fallbacks).
AUTO_CODECS: dict[str, tuple[str, tuple[str, ...]]] = {
    "auto": ("h264_nvenc", ("libx264",)),
    "auto-hevc": ("hevc_nvenc", ("libx265", "libx264")),
}
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
#: NVENC's ``cq`` when ``auto`` picked it and no crf was given: the software encoder's
#: default crf (x264 23, x265 28), so that ``auto`` keeps a comparable quality.
NVENC_DEFAULT_CQ = {"h264_nvenc": 23, "hevc_nvenc": 28}

_AUDIO_FALLBACK = {"webm": "libopus"}  # everything else: aac
# Text subtitles are converted to the container's own text codec when it refuses theirs.
_TEXT_SUBTITLE_TARGET = {
    "mp4": "mov_text",
    "mov": "mov_text",
    "matroska": "subrip",
    "webm": "webvtt",
}
_TEXT_SUBTITLE_CODECS = frozenset(
    {"subrip", "srt", "ass", "ssa", "mov_text", "webvtt", "text", "microdvd", "subviewer"}
    | {"subviewer1", "jacosub", "sami", "realtext", "mpl2", "pjs", "vplayer", "stl"}
)
#: Minimal ASS header; FFmpeg's text subtitle encoders need one to open.
DEFAULT_ASS_HEADER = (
    b"[Script Info]\nScriptType: v4.00+\nPlayResX: 384\nPlayResY: 288\n\n"
    b"[V4+ Styles]\nFormat: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, "
    b"OutlineColour, BackColour, Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, "
    b"Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding\n"
    b"Style: Default,Arial,16,&Hffffff,&Hffffff,&H0,&H0,0,0,0,0,100,100,0,0,1,1,0,2,10,10,10,0"
    b"\n\n[Events]\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, "
    b"Text\n"
)
# Container tags that describe the old file, not its content: never copied.
_TECHNICAL_TAGS = frozenset(
    {"major_brand", "minor_version", "compatible_brands", "encoder", "duration"}
)


def encoder_available(codec: str) -> bool:
    """True if this FFmpeg build has the encoder ``codec`` (hardware may still be missing)."""
    try:
        av.Codec(codec, "w")
    except (ValueError, av.error.FFmpegError):
        return False
    return True


@functools.lru_cache(maxsize=16)
def encoder_opens(codec: str, pix_fmt: str = "yuv420p") -> bool:
    """Whether ``codec`` really opens here for ``pix_fmt`` (a tiny 256x256 encoder is
    opened and dropped): hardware encoders need their device and driver, which
    :func:`encoder_available` cannot tell. Cached per process."""
    if not encoder_available(codec):
        return False
    try:
        ctx: Any = av.CodecContext.create(codec, "w")
        ctx.width = ctx.height = 256
        ctx.pix_fmt = pix_fmt
        ctx.time_base = Fraction(1, 25)
        ctx.framerate = Fraction(25)
        ctx.open()
    except Exception as exc:  # any failure means "not usable here"
        log.debug("encoder %s (%s) does not open: %s", codec, pix_fmt, exc)
        return False
    return True


def _on_cuda(device: str) -> bool:
    name = device.strip().lower()
    if name == "auto":
        try:
            import torch
        except ImportError:
            return False
        return bool(torch.cuda.is_available())
    return name.startswith("cuda")


def resolve_codec(codec: str, *, device: str = "auto", pix_fmt: str | None = None) -> str:
    """The encoder to use for ``codec``: itself, or for ``auto`` (``auto-hevc``)
    ``h264_nvenc`` (``hevc_nvenc``) when ``device`` is CUDA (``auto``: CUDA when torch
    sees a GPU) and that encoder opens here for ``pix_fmt``'s bit depth, else
    ``libx264`` (``libx265``, else ``libx264``)."""
    if codec not in AUTO_CODECS:
        return codec
    nvenc, fallbacks = AUTO_CODECS[codec]
    # the format _choose_pix_fmt would hand NVENC: p010le for 10-bit, else 4:4:4 or 4:2:0
    wanted = pix_fmt or "yuv420p"
    if PLANAR_FORMATS.get(wanted, (8, 1, 1))[0] > 8:
        probe_fmt = "p010le"
    else:
        probe_fmt = "yuv444p" if wanted == "yuv444p" else "yuv420p"
    if _on_cuda(device) and encoder_opens(nvenc, probe_fmt):
        return nvenc
    return next((c for c in fallbacks if encoder_available(c)), fallbacks[-1])


def check_encoder(codec: str) -> None:
    """Raise UsageError (exit 2) when this FFmpeg build has no encoder ``codec``
    (for ``auto``: not even its software fallback)."""
    if codec in AUTO_CODECS:
        codec = resolve_codec(codec, device="cpu")
    if not encoder_available(codec):
        known = ", ".join(c for c in KNOWN_ENCODERS if encoder_available(c))
        raise UsageError(
            f"video encoder {codec!r} is not available in this FFmpeg build",
            hint=f"available: {known}",
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


def _rescale(value: int | None, src: Fraction, dst: Fraction) -> int | None:
    """Rescale a timestamp exactly when possible, else to the nearest tick."""
    if value is None:
        return None
    if src == dst:
        return value
    return round(Fraction(value) * src / dst)


def _encoder_options(codec: str, crf: int | None, preset: str | None) -> dict[str, str]:
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


def _choose_pix_fmt(codec: str, wanted: str) -> str:
    """The format to encode: ``wanted`` if the encoder takes it, else the nearest it does."""
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


def _can_remux(format_name: str, template: Any) -> bool:
    """Whether ``format_name`` can carry ``template``'s codec as it is (header test)."""
    try:
        with av.open(io.BytesIO(), "w", format=format_name) as test:
            test.add_stream_from_template(template)
            test.start_encoding()
    except (av.error.FFmpegError, ValueError, TypeError, NotImplementedError, OSError):
        return False
    return True


def _copy_stream_tags(src: Any, dst: Any) -> None:
    meta = src.metadata or {}
    for key in ("language", "title"):
        if meta.get(key):
            dst.metadata[key] = meta[key]
    with contextlib.suppress(AttributeError, TypeError, ValueError):
        dst.disposition = src.disposition


class _Transcode:
    """Audio that the output container cannot hold as it is: decode, re-encode."""

    def __init__(self, decoder: Any, stream: Any) -> None:
        self.decoder = decoder
        self.stream = stream


class _SubtitleConvert:
    """Text subtitles in a codec the container refuses: decode, re-encode as its own."""

    def __init__(self, decoder: Any, stream: Any) -> None:
        self.decoder = decoder
        self.stream = stream


class Writer:
    """Write the upscaled video plus the source's audio and subtitles.

    Output size rule: the output is ``width`` x ``height`` (input size x scale), cropped
    down to even by at most one pixel where the output pixel format needs it: 4:2:0 needs
    even width and height, 4:2:2 even width, 4:4:4 nothing. The crop keeps the top-left
    region. :meth:`output_size` tells the size in advance.

    Timing: the video stream uses the source's time base, and every frame is encoded with
    its own pts, so timestamps (and variable frame rate) survive. Audio and subtitle
    packets are copied byte for byte with their timestamps rescaled to the output stream
    (exactly when the output time base allows it, else to the nearest tick: Matroska
    counts in milliseconds). Audio the container cannot hold is transcoded (Opus for WebM,
    AAC otherwise); text subtitles it cannot hold are converted to its own text codec
    (mov_text, SubRip, WebVTT); other subtitles are dropped. Each of these logs a warning.
    Containers that cannot start below zero (Matroska, WebM) may shift every stream by
    the same amount when the source starts negative (AAC priming in MP4): sync is kept.

    Colour tags, rotation, stream languages/titles, global tags and chapters of the source
    are written to the output.

    Threads: a writer is used by one thread; create it in that thread too, so that its
    FFmpeg objects never leave it.

    Args (all keyword-only):
        output: the final output path; the container follows its extension.
        source: the probed source.
        source_path: the source file (opened again here, header only).
        width, height: the output size before the even-size rule.
        codec: video encoder name (``libx264`` by default), or ``auto`` / ``auto-hevc``:
            NVENC when ``device`` is CUDA and the encoder opens, else libx264 / libx265
            (see :func:`resolve_codec`); ``self.codec`` is the encoder chosen.
        device: the model's device, for ``auto`` (``"auto"``: CUDA when torch sees one).
        crf, preset: quality/speed, in the encoder's own terms (``None``: its default).
        pix_fmt: encoded pixel format; ``None`` keeps the source's (10-bit stays 10-bit
            where the encoder supports it, else falls back with a warning).
        audio: copy (or transcode) the source's audio streams.
        subtitles: copy the source's subtitle streams.
        threads: encoder threads (0 = FFmpeg chooses).
        options: extra encoder options, passed to FFmpeg as they are.
        video_template: an already encoded input video stream (e.g. of a file another
            writer wrote with the same settings): the output video stream is copied from
            it (codec parameters, colour tags) instead of encoded, no encoder is opened,
            and :meth:`write_video_packet` fills it (stream copy). ``None``: encode.

    Raises:
        EncoderError: unknown/unavailable encoder, or the container cannot hold it.
        MediaError: the output cannot be created, or the source cannot be opened.
    """

    def __init__(
        self,
        *,
        output: str | os.PathLike[str],
        source: MediaInfo,
        source_path: str | os.PathLike[str],
        width: int,
        height: int,
        codec: str = "libx264",
        crf: int | None = None,
        preset: str | None = None,
        pix_fmt: str | None = None,
        audio: bool = True,
        subtitles: bool = True,
        threads: int = 0,
        options: dict[str, str] | None = None,
        device: str = "auto",
        video_template: Any = None,
    ) -> None:
        self.path = Path(output)
        self.tmp_path = temp_sibling(self.path)
        self.source = source
        self.source_path = Path(source_path)
        self._state = "open"
        self._out: Any = None
        self._src: Any = None
        self.frames_written = 0
        self.packets_written = 0
        self._last_pts: int | None = None
        self._pts_fixes = 0
        self._routes: dict[int, Any] = {}
        self.copies_video = video_template is not None

        check_encoder(codec)  # for auto: its software fallback
        wanted = pix_fmt or planar_format(source.video.pix_fmt)
        if wanted not in PLANAR_FORMATS:
            raise EncoderError(
                f"pixel format {wanted!r} is not supported for output",
                hint=f"use one of: {', '.join(PLANAR_FORMATS)}",
            )
        if codec in AUTO_CODECS:
            asked, codec = codec, resolve_codec(codec, device=device, pix_fmt=wanted)
            log.info("codec %s: encoding with %s", asked, codec)
            if crf is None and codec in NVENC_DEFAULT_CQ:
                crf = NVENC_DEFAULT_CQ[codec]
        #: the format handed to the encoder (frames in another format are converted)
        self.pix_fmt = _choose_pix_fmt(codec, wanted)
        self.width, self.height = self.output_size(width, height, self.pix_fmt)
        if self.width <= 0 or self.height <= 0:
            raise EncoderError(f"output size {width}x{height} is too small")
        self.codec = codec
        self.time_base = source.video.time_base

        try:
            self._open(codec, crf, preset, audio, subtitles, threads, options, video_template)
        except BaseException:
            self.abort()
            raise

    # -- public helpers ------------------------------------------------------------------

    @staticmethod
    def output_size(width: int, height: int, pix_fmt: str) -> tuple[int, int]:
        """The size actually written for ``width`` x ``height`` in ``pix_fmt``.

        4:2:0 crops width and height down to even, 4:2:2 the width, 4:4:4 nothing.
        """
        sx, sy = _subsampling(pix_fmt)
        return width - (width % 2 if sx else 0), height - (height % 2 if sy else 0)

    # -- setup -----------------------------------------------------------------------------

    def _open(
        self,
        codec: str,
        crf: int | None,
        preset: str | None,
        audio: bool,
        subtitles: bool,
        threads: int,
        options: dict[str, str] | None,
        video_template: Any = None,
    ) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._src = open_input(self.source_path)
        try:
            self._out = av.open(str(self.tmp_path), "w")
        except (av.error.FFmpegError, ValueError, OSError) as exc:
            raise MediaError(
                f"cannot create {self.path}: {describe_av_error(exc)}",
                hint="use an extension such as .mp4, .mkv, .webm or .mov",
            ) from None
        fmt = self._out.format.name
        if video_template is not None:
            stream = self._add_copied_video(video_template)
        else:
            stream = self._add_encoded_video(codec, crf, preset, threads, options, fmt)
        self._video = stream
        self._copy_container_tags(stream)

        if audio:
            for src_stream in self._src.streams.audio:
                self._add_audio(src_stream, fmt)
        if subtitles:
            for src_stream in self._src.streams.subtitles:
                self._add_subtitle(src_stream, fmt)

    def _add_copied_video(self, template: Any) -> Any:
        """The output video stream as a copy of ``template`` (no encoder)."""
        try:
            stream = self._out.add_stream_from_template(template)
        except (av.error.FFmpegError, ValueError) as exc:
            raise MediaError(
                f"{self.path.name} cannot hold the copied video: {describe_av_error(exc)}"
            ) from None
        stream.time_base = self.time_base
        if self.source.video.rotation:
            stream.set_display_rotation(self.source.video.rotation)
        return stream

    def _add_encoded_video(
        self,
        codec: str,
        crf: int | None,
        preset: str | None,
        threads: int,
        options: dict[str, str] | None,
        fmt: str,
    ) -> Any:
        """The output video stream with its encoder set up and opened."""
        vinfo = self.source.video
        rate = vinfo.frame_rate or Fraction(25)
        try:
            stream = self._out.add_stream(codec, rate=rate)
        except ValueError as exc:
            raise EncoderError(
                f"the {fmt} container cannot hold {codec} video ({exc})",
                hint="pick another --codec or output extension",
            ) from None
        except av.error.FFmpegError as exc:
            raise EncoderError(f"cannot set up encoder {codec}: {describe_av_error(exc)}") from None
        ctx = stream.codec_context
        ctx.width = self.width
        ctx.height = self.height
        ctx.pix_fmt = self.pix_fmt
        ctx.time_base = self.time_base
        stream.time_base = self.time_base
        ctx.framerate = rate
        if threads:
            ctx.thread_count = int(threads)
        if vinfo.sample_aspect_ratio is not None and vinfo.sample_aspect_ratio != 1:
            ctx.sample_aspect_ratio = vinfo.sample_aspect_ratio
        apply_color(ctx, vinfo.color)
        if vinfo.rotation:
            stream.set_display_rotation(vinfo.rotation)
        ctx.options = {**_encoder_options(codec, crf, preset), **(options or {})}
        try:
            ctx.open()  # now, so a missing GPU or bad option fails before any work
        except (av.error.FFmpegError, ValueError) as exc:
            raise EncoderError(
                f"cannot open encoder {codec} ({self.width}x{self.height} {self.pix_fmt}): "
                f"{describe_av_error(exc)}",
                hint="hardware encoders need their GPU and driver; try libx264",
            ) from None
        return stream

    def _copy_container_tags(self, video_stream: Any) -> None:
        """Title, language, global tags and chapters, as ``ffmpeg`` copies by default."""
        src_video = self._src.streams[self.source.video.index]
        _copy_stream_tags(src_video, video_stream)
        for key, value in (self._src.metadata or {}).items():
            if key.lower() not in _TECHNICAL_TAGS:
                self._out.metadata[key] = value
        try:
            chapters = self._src.chapters()
            if chapters:
                self._out.set_chapters(chapters)
        except (AttributeError, ValueError, TypeError, av.error.FFmpegError) as exc:
            log.info("chapters of %s not copied: %s", self.source_path.name, exc)
        if self._src.streams.data:
            log.info(
                "%s: %d data stream(s) (e.g. timecode) are not copied",
                self.source_path.name,
                len(self._src.streams.data),
            )

    def _remux(self, src_stream: Any, fmt: str) -> bool:
        """Route ``src_stream``'s packets unchanged when the container holds its codec."""
        if not _can_remux(fmt, src_stream):
            return False
        out = self._out.add_stream_from_template(src_stream)
        _copy_stream_tags(src_stream, out)
        self._routes[src_stream.index] = out
        return True

    def _add_audio(self, src_stream: Any, fmt: str) -> None:
        name = src_stream.codec_context.name if src_stream.codec_context else "?"
        if self._remux(src_stream, fmt):
            return
        target = _AUDIO_FALLBACK.get(fmt, "aac")
        dec = src_stream.codec_context
        rate = int(dec.sample_rate or 48000)
        rates = av.Codec(target, "w").audio_rates
        if rates and rate not in rates:
            rate = 48000 if 48000 in rates else max(rates)
        layout = dec.layout.name if dec.layout is not None else "stereo"
        if target == "libopus" and dec.channels and dec.channels > 2:
            layout = "stereo"  # Opus beyond stereo needs channel mapping families
        try:
            out = self._out.add_stream(target, rate=rate, layout=layout)
            out.codec_context.open()
        except (av.error.FFmpegError, ValueError) as exc:
            log.warning(
                "dropping audio stream %d (%s): %s cannot hold it and %s failed: %s",
                src_stream.index,
                name,
                fmt,
                target,
                describe_av_error(exc),
            )
            return
        _copy_stream_tags(src_stream, out)
        log.warning(
            "the %s container cannot hold %s audio (stream %d): transcoding it to %s",
            fmt,
            name,
            src_stream.index,
            target.removeprefix("lib"),
        )
        self._routes[src_stream.index] = _Transcode(dec, out)

    def _add_subtitle(self, src_stream: Any, fmt: str) -> None:
        name = src_stream.codec_context.name if src_stream.codec_context else "?"
        if self._remux(src_stream, fmt):
            return
        target = _TEXT_SUBTITLE_TARGET.get(fmt)
        if target is not None and name in _TEXT_SUBTITLE_CODECS:
            try:
                dec = src_stream.codec_context
                dec.open()
                out = self._out.add_stream(target)
                out.time_base = Fraction(1, 1000)
                out.codec_context.time_base = Fraction(1, 1000)
                out.codec_context.subtitle_header = dec.subtitle_header or DEFAULT_ASS_HEADER
                out.codec_context.open()
            except (av.error.FFmpegError, ValueError) as exc:
                log.warning(
                    "dropping subtitle stream %d: cannot convert %s to %s: %s",
                    src_stream.index,
                    name,
                    target,
                    describe_av_error(exc),
                )
                return
            _copy_stream_tags(src_stream, out)
            log.warning(
                "the %s container cannot hold %s subtitles (stream %d): converting them to %s",
                fmt,
                name,
                src_stream.index,
                target,
            )
            self._routes[src_stream.index] = _SubtitleConvert(dec, out)
            return
        log.warning(
            "dropping subtitle stream %d: the %s container cannot hold %s subtitles",
            src_stream.index,
            fmt,
            name,
        )

    # -- writing ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._state != "open":
            raise MediaError(f"writer for {self.path} is {self._state}")

    def _mux(self, packets: Any) -> None:
        for packet in packets:
            self._out.mux_one(packet)

    def write_frame(self, frame: Frame) -> None:
        """Encode one frame with its own pts (rescaled to the source time base if needed).

        Frames up to one pixel larger than the output size are cropped (top-left).

        Raises:
            EncoderError: wrong size/format, or the encoder failed.
        """
        self._check_open()
        w, h = self.width, self.height
        if frame.pix_fmt not in PLANAR_FORMATS:
            raise EncoderError(f"frame pixel format {frame.pix_fmt!r} is not planar YUV")
        if not (w <= frame.width <= w + 1 and h <= frame.height <= h + 1):
            raise EncoderError(
                f"frame {frame.index} is {frame.width}x{frame.height}, the output is {w}x{h}"
            )
        depth, sx, sy = PLANAR_FORMATS[frame.pix_fmt]
        dtype = np.uint16 if depth > 8 else np.uint8
        cw, ch = -(-w // (1 << sx)), -(-h // (1 << sy))
        planes = (
            frame.planes[0][:h, :w],
            frame.planes[1][:ch, :cw],
            frame.planes[2][:ch, :cw],
        )
        if any(p.dtype != dtype for p in planes):
            raise EncoderError(
                f"frame {frame.index} planes must be {np.dtype(dtype).name} for {frame.pix_fmt}"
            )
        color = self.source.video.color
        av_frame = to_av_frame(planes, frame.pix_fmt)
        apply_color(av_frame, color)
        if frame.pix_fmt != self.pix_fmt:
            # Depth/chroma conversion only: keep the range (swscale would go to limited).
            rng = 2 if color.full_range else 1
            try:
                av_frame = av_frame.reformat(
                    format=self.pix_fmt, src_color_range=rng, dst_color_range=rng
                )
            except (av.error.FFmpegError, ValueError) as exc:
                raise EncoderError(
                    f"converting frame {frame.index} from {frame.pix_fmt} to {self.pix_fmt} "
                    f"failed: {describe_av_error(exc)}"
                ) from None
            apply_color(av_frame, color)

        pts = _rescale(frame.pts, frame.time_base, self.time_base)
        if pts is None:
            pts = self._next_pts()
        if self._last_pts is not None and pts <= self._last_pts:
            # Encoders need strictly increasing pts; only broken input gets here.
            self._pts_fixes += 1
            pts = self._last_pts + 1
        self._last_pts = pts
        av_frame.pts = pts
        av_frame.time_base = self.time_base
        try:
            self._mux(self._video.encode(av_frame))
        except (av.error.FFmpegError, ValueError) as exc:
            raise EncoderError(
                f"encoding frame {frame.index} with {self.codec} failed: {describe_av_error(exc)}"
            ) from None
        self.frames_written += 1

    def write_video_packet(self, packet: Any) -> None:
        """Mux one encoded video packet as it is (stream copy; needs ``video_template``).

        ``packet`` is an ``av.Packet`` demuxed in this thread; its timestamps are in its
        own time base and are rescaled to the output stream's. Each packet counts as
        one frame in :attr:`frames_written`.

        Raises:
            MediaError: the writer encodes its video, or the muxer refused the packet.
        """
        self._check_open()
        if not self.copies_video:
            raise MediaError(f"writer for {self.path} encodes its video; use write_frame")
        packet.stream = self._video
        try:
            self._out.mux_one(packet)
        except (av.error.FFmpegError, ValueError) as exc:
            raise MediaError(
                f"writing video packet at pts {packet.pts} to {self.path.name} failed: "
                f"{describe_av_error(exc)}"
            ) from None
        self.frames_written += 1

    def _next_pts(self) -> int:
        if self._last_pts is None:
            return 0
        rate = self.source.video.frame_rate or Fraction(25)
        return self._last_pts + max(1, round(1 / (rate * self.time_base)))

    def write_packet(self, packet: Packet) -> None:
        """Remux one audio/subtitle packet of the source (by input stream index).

        Packets of streams that are not written (audio off, or a subtitle codec the
        container refuses) are ignored.

        Raises:
            MediaError: the muxer refused the packet.
        """
        self._check_open()
        route = self._routes.get(packet.stream_index)
        if route is None:
            return
        av_packet = av.Packet(packet.data)
        av_packet.pts = packet.pts
        av_packet.dts = packet.dts
        if packet.duration is not None:
            av_packet.duration = packet.duration
        av_packet.time_base = packet.time_base
        av_packet.is_keyframe = packet.is_keyframe
        try:
            if isinstance(route, _Transcode):
                for frame in route.decoder.decode(av_packet):
                    self._mux(route.stream.encode(frame))
            elif isinstance(route, _SubtitleConvert):
                self._convert_subtitle(route, packet, av_packet)
            else:
                av_packet.stream = route  # rescaled to the stream's time base when muxed
                self._out.mux_one(av_packet)
        except (av.error.FFmpegError, ValueError) as exc:
            raise MediaError(
                f"writing stream {packet.stream_index} packet at pts {packet.pts} to "
                f"{self.path.name} failed: {describe_av_error(exc)}"
            ) from None
        self.packets_written += 1

    def _convert_subtitle(self, route: _SubtitleConvert, packet: Packet, av_packet: Any) -> None:
        cues = route.decoder.decode2(av_packet)
        if cues is None or len(cues) == 0:
            return  # an empty "gap" sample (mov_text writes those): nothing to show
        out = route.stream.codec_context.encode_subtitle(cues)
        # The encoder stamps AV_TIME_BASE times; keep the source packet's exact timing.
        out.pts = packet.pts
        out.dts = packet.pts if packet.dts is None else packet.dts
        if packet.duration is not None:
            out.duration = packet.duration
        out.time_base = packet.time_base
        out.stream = route.stream
        self._out.mux_one(out)

    # -- finishing -------------------------------------------------------------------------

    def close(self) -> None:
        """Flush encoders and muxer, then move the file into place. Idempotent.

        Raises:
            EncoderError, MediaError: flushing or finishing failed (the temp file is
                removed and nothing appears at the output path), or no frame was written.
        """
        if self._state == "closed":
            return
        self._check_open()
        try:
            if self.frames_written == 0:
                raise MediaError(f"no video frames were written to {self.path}")
            try:
                if not self.copies_video:
                    self._mux(self._video.encode(None))
            except (av.error.FFmpegError, ValueError) as exc:
                raise EncoderError(
                    f"flushing encoder {self.codec} failed: {describe_av_error(exc)}"
                ) from None
            for route in self._routes.values():
                if isinstance(route, _Transcode):
                    try:
                        for frame in route.decoder.decode(None):
                            self._mux(route.stream.encode(frame))
                        self._mux(route.stream.encode(None))
                    except (av.error.FFmpegError, ValueError) as exc:
                        raise MediaError(
                            f"flushing audio transcoder failed: {describe_av_error(exc)}"
                        ) from None
            try:
                self._out.close()
            except (av.error.FFmpegError, OSError, ValueError) as exc:
                raise MediaError(
                    f"finishing {self.path.name} failed: {describe_av_error(exc)}"
                ) from None
            self._out = None
            self._close_source()
            replace_durably(self.tmp_path, self.path)
        except BaseException:
            self.abort()
            raise
        self._state = "closed"
        if self._pts_fixes:
            log.warning(
                "%s: %d frame(s) had non-increasing timestamps and were nudged forward",
                self.path.name,
                self._pts_fixes,
            )

    def abort(self) -> None:
        """Discard the output: close everything and delete the temp file. Idempotent.

        After :meth:`close` succeeded, this does nothing (the output stays).
        """
        if self._state in ("closed", "aborted"):
            return
        self._state = "aborted"
        if self._out is not None:
            with contextlib.suppress(Exception):  # discarding anyway; the first error matters
                self._out.close()
            self._out = None
        self._close_source()
        try:
            self.tmp_path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not remove temporary file %s: %s", self.tmp_path, exc)

    def _close_source(self) -> None:
        if self._src is not None:
            with contextlib.suppress(Exception):
                self._src.close()
            self._src = None

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:  # never leave a temp file behind
        with contextlib.suppress(Exception):
            if getattr(self, "_state", "closed") == "open":
                self.abort()
