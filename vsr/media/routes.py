"""Stream routing: where each of the source's audio/subtitle packets goes in the output.

For every source stream the output gets one *route*: the output stream itself (remux:
packets copied byte for byte, timestamps rescaled when muxed), a :class:`_Transcode`
(audio the container cannot hold: decoded and re-encoded, Opus for WebM, AAC otherwise)
or a :class:`_SubtitleConvert` (text subtitles in a codec the container refuses:
converted to its own text codec); data streams the container holds are remuxed the same
way. Streams that need no packets from the reader are written at set-up: Matroska
attachments (fonts, images), cover art (an attached picture: its one packet is read from
the writer's own source container) and the timecode (a MOV/MP4 ``tmcd`` track: the source's
value is written as the output video's ``timecode`` tag, from which FFmpeg makes a new
track in MOV/MP4 and a ``TIMECODE`` tag in Matroska). What a container cannot hold is
dropped with one warning per kind. Also here: the container's global tags and chapters,
and :func:`open_audio_encoder`, the one way an audio encoder stream is opened (the
transcode path here, and the live sinks' AAC).

These functions work on PyAV objects of one thread (the :class:`~vsr.media.writer.Writer`
that owns them); errors from FFmpeg are left to the caller unless said otherwise.
"""

from __future__ import annotations

import contextlib
import io
import logging
from fractions import Fraction
from typing import Any

import av
import av.error

from vsr.media.decode import Packet
from vsr.media.fidelity import Fidelity
from vsr.media.probe import describe_av_error, stream_codec_name

__all__ = [
    "DEFAULT_ASS_HEADER",
    "Route",
    "can_remux",
    "copy_stream_tags",
    "remux",
    "add_routes",
    "copy_container_tags",
    "flush_route",
    "open_audio_encoder",
    "send_packet",
]

log = logging.getLogger("vsr")

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


#: Where a source stream's packets go: the output stream (remux), or a converter.
Route = Any  # av stream | _Transcode | _SubtitleConvert


def open_audio_encoder(
    out: Any,
    codec: str,
    *,
    rate: int,
    layout: str | None,
    time_base: Fraction | None = None,
) -> Any:
    """Add an audio stream encoded with ``codec`` at ``rate`` Hz in channel ``layout`` to
    ``out`` and open its encoder now (so a failure shows before any packet).

    ``time_base``: the stream's time base, when the caller counts its pts in it
    (``None``: the muxer's choice). FFmpeg's errors are the caller's to handle.
    """
    stream = out.add_stream(codec, rate=rate, layout=layout)
    if time_base is not None:
        stream.time_base = time_base
    stream.codec_context.open()
    return stream


def can_remux(format_name: str, template: Any) -> bool:
    """Whether ``format_name`` can carry ``template``'s codec as it is (header test)."""
    try:
        with av.open(io.BytesIO(), "w", format=format_name) as test:
            test.add_stream_from_template(template)
            test.start_encoding()
    except (av.error.FFmpegError, ValueError, TypeError, NotImplementedError, OSError):
        return False
    return True


def copy_stream_tags(src: Any, dst: Any) -> None:
    meta = src.metadata or {}
    for key in ("language", "title"):
        if meta.get(key):
            dst.metadata[key] = meta[key]
    with contextlib.suppress(AttributeError, TypeError, ValueError):
        dst.disposition = src.disposition


def copy_container_tags(src: Any, out: Any, video_stream: Any, video_index: int, name: str) -> None:
    """Title, language, global tags and chapters, as ``ffmpeg`` copies by default.

    ``src`` is the source container, ``video_index`` its video stream (whose tags go to
    ``video_stream``), ``name`` the source's name for the log.
    """
    copy_stream_tags(src.streams[video_index], video_stream)
    for key, value in (src.metadata or {}).items():
        if key.lower() not in _TECHNICAL_TAGS:
            out.metadata[key] = value
    try:
        chapters = src.chapters()
        if chapters:
            out.set_chapters(chapters)
    except (AttributeError, ValueError, TypeError, av.error.FFmpegError) as exc:
        log.info("chapters of %s not copied: %s", name, exc)


def remux(out: Any, src_stream: Any, fmt: str) -> Any:
    """The output stream that carries ``src_stream``'s packets unchanged, when the
    container holds its codec; else ``None``."""
    if not can_remux(fmt, src_stream):
        return None
    stream = out.add_stream_from_template(src_stream)
    copy_stream_tags(src_stream, stream)
    return stream


def _add_audio(out: Any, src_stream: Any, fmt: str, fidelity: Fidelity) -> Route | None:
    name = src_stream.codec_context.name if src_stream.codec_context else "?"
    codec = stream_codec_name(src_stream)
    remuxed = remux(out, src_stream, fmt)
    if remuxed is not None:
        fidelity.record(src_stream.index, "audio", codec, "copied")
        return remuxed
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
        stream = open_audio_encoder(out, target, rate=rate, layout=layout)
    except (av.error.FFmpegError, ValueError) as exc:
        log.warning(
            "dropping audio stream %d (%s): %s cannot hold it and %s failed: %s",
            src_stream.index,
            name,
            fmt,
            target,
            describe_av_error(exc),
        )
        fidelity.record(
            src_stream.index,
            "audio",
            codec,
            "dropped",
            f"{fmt} cannot hold it and {target} failed: {describe_av_error(exc)}",
        )
        return None
    copy_stream_tags(src_stream, stream)
    log.warning(
        "the %s container cannot hold %s audio (stream %d): transcoding it to %s",
        fmt,
        name,
        src_stream.index,
        target.removeprefix("lib"),
    )
    fidelity.record(
        src_stream.index,
        "audio",
        codec,
        "transcoded",
        f"to {target.removeprefix('lib')}: the {fmt} container cannot hold {codec}",
    )
    return _Transcode(dec, stream)


def _add_subtitle(out: Any, src_stream: Any, fmt: str, fidelity: Fidelity) -> Route | None:
    name = src_stream.codec_context.name if src_stream.codec_context else "?"
    codec = stream_codec_name(src_stream)
    remuxed = remux(out, src_stream, fmt)
    if remuxed is not None:
        fidelity.record(src_stream.index, "subtitle", codec, "copied")
        return remuxed
    target = _TEXT_SUBTITLE_TARGET.get(fmt)
    if target is not None and name in _TEXT_SUBTITLE_CODECS:
        try:
            dec = src_stream.codec_context
            dec.open()
            stream = out.add_stream(target)
            stream.time_base = Fraction(1, 1000)
            stream.codec_context.time_base = Fraction(1, 1000)
            stream.codec_context.subtitle_header = dec.subtitle_header or DEFAULT_ASS_HEADER
            stream.codec_context.open()
        except (av.error.FFmpegError, ValueError) as exc:
            log.warning(
                "dropping subtitle stream %d: cannot convert %s to %s: %s",
                src_stream.index,
                name,
                target,
                describe_av_error(exc),
            )
            fidelity.record(
                src_stream.index,
                "subtitle",
                codec,
                "dropped",
                f"cannot convert it to {target}: {describe_av_error(exc)}",
            )
            return None
        copy_stream_tags(src_stream, stream)
        log.warning(
            "the %s container cannot hold %s subtitles (stream %d): converting them to %s",
            fmt,
            name,
            src_stream.index,
            target,
        )
        fidelity.record(
            src_stream.index,
            "subtitle",
            codec,
            "converted",
            f"to {target}: the {fmt} container cannot hold {codec}",
        )
        return _SubtitleConvert(dec, stream)
    log.warning(
        "dropping subtitle stream %d: the %s container cannot hold %s subtitles",
        src_stream.index,
        fmt,
        name,
    )
    fidelity.record(
        src_stream.index, "subtitle", codec, "dropped", f"the {fmt} container cannot hold it"
    )
    return None


def add_routes(
    src: Any,
    out: Any,
    *,
    audio: bool,
    subtitles: bool,
    fidelity: Fidelity,
) -> dict[int, Route]:
    """Output streams for the source's audio (if ``audio``) and subtitle (if
    ``subtitles``) streams: remuxed, transcoded or converted, each with its language,
    title and disposition. Returns the routes by source stream index (streams the
    container cannot take at all are left out, with a warning). Each stream's fate goes
    into ``fidelity``. The other streams (data, attachments, cover art, timecode) are
    :mod:`vsr.media.extras`.
    """
    fmt = out.format.name
    routes: dict[int, Route] = {}
    for src_stream in src.streams.audio:
        if not audio:
            codec = stream_codec_name(src_stream)
            fidelity.record(src_stream.index, "audio", codec, "dropped", "--no-audio")
            continue
        route = _add_audio(out, src_stream, fmt, fidelity)
        if route is not None:
            routes[src_stream.index] = route
    if subtitles:
        for src_stream in src.streams.subtitles:
            route = _add_subtitle(out, src_stream, fmt, fidelity)
            if route is not None:
                routes[src_stream.index] = route
    return routes


def send_packet(out: Any, route: Route, packet: Packet) -> None:
    """Mux one source packet through its ``route`` (copied, transcoded or converted)."""
    av_packet = av.Packet(packet.data)
    av_packet.pts = packet.pts
    av_packet.dts = packet.dts
    if packet.duration is not None:
        av_packet.duration = packet.duration
    av_packet.time_base = packet.time_base
    av_packet.is_keyframe = packet.is_keyframe
    if isinstance(route, _Transcode):
        for frame in route.decoder.decode(av_packet):
            for encoded in route.stream.encode(frame):
                out.mux_one(encoded)
    elif isinstance(route, _SubtitleConvert):
        _convert_subtitle(out, route, packet, av_packet)
    else:
        av_packet.stream = route  # rescaled to the stream's time base when muxed
        out.mux_one(av_packet)


def _convert_subtitle(out: Any, route: _SubtitleConvert, packet: Packet, av_packet: Any) -> None:
    cues = route.decoder.decode2(av_packet)
    if cues is None or len(cues) == 0:
        return  # an empty "gap" sample (mov_text writes those): nothing to show
    sub = route.stream.codec_context.encode_subtitle(cues)
    # The encoder stamps AV_TIME_BASE times; keep the source packet's exact timing.
    sub.pts = packet.pts
    sub.dts = packet.pts if packet.dts is None else packet.dts
    if packet.duration is not None:
        sub.duration = packet.duration
    sub.time_base = packet.time_base
    sub.stream = route.stream
    out.mux_one(sub)


def flush_route(out: Any, route: Route) -> None:
    """Drain a transcoding route's decoder and encoder into ``out`` (others: nothing)."""
    if not isinstance(route, _Transcode):
        return
    for frame in route.decoder.decode(None):
        for encoded in route.stream.encode(frame):
            out.mux_one(encoded)
    for encoded in route.stream.encode(None):
        out.mux_one(encoded)
