"""Probe a media file: streams, timing, colour tags and rotation, as frozen dataclasses.

Times are exact: time bases, rates and durations are :class:`~fractions.Fraction`,
timestamps are integers in their stream's time base. Nothing here is a float.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error

from vsr.errors import InputNotFoundError, MediaError
from vsr.media.captions import frame_captions
from vsr.media.color import color_from_av
from vsr.media.deinterlace import field_order_name
from vsr.media.frame import ColorInfo
from vsr.media.hdr import HdrMetadata, dynamic_hdr_from, hdr_from_frame

__all__ = [
    "MediaInfo",
    "StreamInfo",
    "VideoInfo",
    "describe_av_error",
    "is_url",
    "open_input",
    "probe",
    "stream_codec_name",
]


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """The video stream the pipeline reads (the first one that is not cover art).

    ``pix_fmt`` is the format the decoder produces (e.g. ``"yuvj420p"``, ``"yuv420p10le"``);
    ``frame_rate`` is the average rate (``None`` when the container does not say);
    ``duration`` is in seconds; ``start_time`` is in ``time_base`` units;
    ``frame_count`` is the container's count, ``None`` when it has none (Matroska, WebM).
    ``rotation`` is the display rotation in degrees counter-clockwise, normalised to
    0/90/180/270 (the convention of FFmpeg's ``av_display_rotation_get`` and PyAV's
    ``VideoFrame.rotation``; the legacy ``rotate`` tag is clockwise and is converted).
    """

    index: int
    codec: str
    width: int
    height: int
    pix_fmt: str
    bit_depth: int
    time_base: Fraction
    frame_rate: Fraction | None
    duration: Fraction | None
    frame_count: int | None
    color: ColorInfo
    rotation: int = 0
    start_time: int | None = None
    sample_aspect_ratio: Fraction | None = None
    profile: str | None = None
    #: HDR10 static metadata of the first frame (mastering display, MaxCLL/MaxFALL)
    hdr: HdrMetadata | None = None
    #: dynamic HDR the source carries: "HDR10+", "Dolby Vision", "HDR Vivid"
    dynamic_hdr: tuple[str, ...] = ()
    #: "progressive", "tt", "bb", "tb", "bt" (the stream's field order), "interlaced" (the
    #: stream does not say, its first frame is flagged interlaced), ``None``: unknown
    #: (:mod:`vsr.media.deinterlace`)
    field_order: str | None = None
    #: the first frame carries ATSC A/53 closed captions (:mod:`vsr.media.captions`)
    a53_captions: bool = False

    @property
    def frames_estimate(self) -> int | None:
        """``frame_count`` when known, else duration x rate rounded (``None`` if neither)."""
        if self.frame_count is not None:
            return self.frame_count
        if self.duration is not None and self.frame_rate is not None:
            return round(self.duration * self.frame_rate)
        return None

    @property
    def is_hdr(self) -> bool:
        """Whether the transfer is an HDR one: PQ (``smpte2084``) or HLG (``arib-std-b67``)."""
        return self.color.transfer in ("smpte2084", "arib-std-b67")


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """An audio, subtitle or data stream. Audio-only fields are ``None`` for the others."""

    index: int
    kind: str  # "audio", "subtitle" or "data"
    codec: str | None
    time_base: Fraction | None
    language: str | None = None
    title: str | None = None
    sample_rate: int | None = None
    channels: int | None = None
    layout: str | None = None
    start_time: int | None = None
    duration: Fraction | None = None


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """What :func:`probe` found. ``duration`` is the container's, in seconds."""

    path: Path
    format_name: str
    video: VideoInfo
    audio: tuple[StreamInfo, ...] = ()
    subtitles: tuple[StreamInfo, ...] = ()
    data: tuple[StreamInfo, ...] = ()
    duration: Fraction | None = None
    bit_rate: int | None = None


def is_url(path: str | os.PathLike[str]) -> bool:
    """True for ``rtsp://``, ``http://``... inputs (no local existence check for those)."""
    return "://" in str(path)


def describe_av_error(exc: BaseException) -> str:
    """A short lowercase reason for a PyAV/FFmpeg error, without the file name."""
    if isinstance(exc, av.error.FFmpegError):
        reason = exc.strerror or type(exc).__name__
    else:
        reason = str(exc) or type(exc).__name__
    return " ".join(str(reason).split()).rstrip(".").lower()


def open_input(path: str | os.PathLike[str], *, options: dict[str, str] | None = None) -> Any:
    """Open ``path`` with PyAV for reading, mapping failures to vsr errors.

    Raises:
        InputNotFoundError: a local path that does not exist.
        MediaError: anything else that stops FFmpeg from opening it, in one line.
    """
    name = str(path)
    if not is_url(name):
        p = Path(name)
        if not p.exists():
            raise InputNotFoundError(
                f"input not found: {name}", hint="check the path and the current directory"
            )
        if p.is_dir():
            raise MediaError(f"cannot read {name}: it is a directory, not a media file")
    try:
        return av.open(name, "r", options=options or {})
    except av.error.InvalidDataError as exc:
        raise MediaError(
            f"cannot read {name}: not a media file ({describe_av_error(exc)})",
            hint="the file is damaged, incomplete, or not audio/video",
        ) from None
    except av.error.FFmpegError as exc:
        raise MediaError(f"cannot read {name}: {describe_av_error(exc)}") from None
    except (OSError, ValueError) as exc:
        raise MediaError(f"cannot read {name}: {describe_av_error(exc)}") from None


def _fraction(value: Any) -> Fraction | None:
    if value is None:
        return None
    frac = Fraction(value)
    return frac if frac > 0 else None


def _is_cover_art(stream: Any) -> bool:
    try:
        return bool(stream.disposition & av.stream.Disposition.attached_pic)
    except (AttributeError, TypeError):
        return False


def pick_video_stream(container: Any) -> Any | None:
    """The first video stream that is not attached cover art, or ``None``."""
    for stream in container.streams.video:
        if not _is_cover_art(stream):
            return stream
    return None


def _bit_depth(pix_fmt: str | None) -> int:
    if not pix_fmt:
        return 8
    try:
        fmt = av.VideoFormat(pix_fmt)
        return max(int(c.bits) for c in fmt.components)
    except (ValueError, TypeError):
        return 8


def _tag_rotation(stream: Any) -> int | None:
    """The legacy clockwise ``rotate`` tag as a counter-clockwise angle, if present."""
    raw = (stream.metadata or {}).get("rotate")
    if raw is None:
        return None
    try:
        return (-round(float(raw))) % 360
    except ValueError:
        return None


def _first_frame(container: Any, stream: Any, *, max_packets: int = 256) -> Any | None:
    """Decode the first frame of ``stream`` (for side data), or ``None`` if none decodes."""
    try:
        for seen, packet in enumerate(container.demux(stream), start=1):
            frames = stream.decode(packet) if packet.size else stream.decode(None)
            if frames:
                return frames[0]
            if seen >= max_packets or not packet.size:
                return None
    except (av.error.FFmpegError, OSError, ValueError):
        return None
    return None


def _duration_tag(stream: Any) -> Fraction | None:
    """Matroska's per-stream ``DURATION`` tag ("HH:MM:SS.nnnnnnnnn"), exactly."""
    raw = (stream.metadata or {}).get("DURATION")
    if not raw:
        return None
    try:
        hours, minutes, seconds = raw.strip().split(":")
        value = (int(hours) * 60 + int(minutes)) * 60 + Fraction(seconds)
    except ValueError:
        return None
    return value if value > 0 else None


def _language(stream: Any) -> str | None:
    lang = stream.language
    return None if not lang or lang == "und" else str(lang)


def _stream_duration(stream: Any) -> Fraction | None:
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return Fraction(stream.duration) * stream.time_base
    return _duration_tag(stream)


def stream_codec_name(stream: Any) -> str | None:
    """A stream's codec by its own name (``subrip``, ``av1``), ``None`` when unknown."""
    try:
        ctx = stream.codec_context
    except (AttributeError, av.error.FFmpegError):
        ctx = None
    return _codec_name(ctx) or (stream.metadata or {}).get("handler_name")


def _codec_name(ctx: Any) -> str | None:
    """The codec's own name ("subrip", "av1"), not the decoder's ("srt", "libdav1d")."""
    if ctx is None:
        return None
    try:
        return str(ctx.codec.canonical_name)
    except AttributeError:
        return str(ctx.name)


def _audio_info(stream: Any) -> StreamInfo:
    ctx = stream.codec_context
    layout = getattr(ctx, "layout", None)
    return StreamInfo(
        index=stream.index,
        kind="audio",
        codec=_codec_name(ctx),
        time_base=_fraction(stream.time_base),
        language=_language(stream),
        title=(stream.metadata or {}).get("title"),
        sample_rate=int(ctx.sample_rate) if ctx is not None and ctx.sample_rate else None,
        channels=int(ctx.channels) if ctx is not None and ctx.channels else None,
        layout=layout.name if layout is not None else None,
        start_time=stream.start_time,
        duration=_stream_duration(stream),
    )


def _other_info(stream: Any, kind: str) -> StreamInfo:
    ctx = stream.codec_context
    codec = _codec_name(ctx)
    if codec is None:
        codec = (stream.metadata or {}).get("handler_name")
    return StreamInfo(
        index=stream.index,
        kind=kind,
        codec=codec,
        time_base=_fraction(stream.time_base),
        language=_language(stream),
        title=(stream.metadata or {}).get("title"),
        start_time=stream.start_time,
        duration=_stream_duration(stream),
    )


def info_from_container(container: Any, path: str | os.PathLike[str]) -> MediaInfo:
    """Build :class:`MediaInfo` from an open input container.

    Decodes the first video frame (rotation lives in frame side data in PyAV 18), so the
    container is left positioned after it: use a fresh container for reading.

    Raises:
        MediaError: there is no video stream.
    """
    name = str(path)
    video = pick_video_stream(container)
    if video is None:
        kinds = ", ".join(
            f"{s.type} {s.codec_context.name if s.codec_context else '?'}"
            for s in container.streams
        )
        raise MediaError(
            f"cannot read {name}: no video stream" + (f" (it has: {kinds})" if kinds else ""),
            hint="vsr upscales video; give it a file with a video track",
        )
    ctx = video.codec_context
    first = _first_frame(container, video)

    pix_fmt = ctx.pix_fmt or (first.format.name if first is not None else None)
    if first is not None and first.format.name != pix_fmt:
        pix_fmt = first.format.name  # the decoder's actual output wins
    pix_fmt = pix_fmt or "yuv420p"
    width = ctx.width or (first.width if first is not None else 0)
    height = ctx.height or (first.height if first is not None else 0)

    color = color_from_av(ctx, pix_fmt=pix_fmt)
    if first is not None:  # some codecs only tag the frames
        frame_color = color_from_av(first, pix_fmt=pix_fmt)
        color = ColorInfo(
            matrix=color.matrix or frame_color.matrix,
            range=color.range or frame_color.range,
            primaries=color.primaries or frame_color.primaries,
            transfer=color.transfer or frame_color.transfer,
        )

    rotation = 0
    if first is not None and first.rotation:
        rotation = round(first.rotation) % 360
    else:
        rotation = _tag_rotation(video) or 0

    time_base = _fraction(video.time_base) or Fraction(1, 90000)
    frame_rate = _fraction(video.average_rate) or _fraction(video.base_rate)
    duration = _stream_duration(video)
    if duration is None and container.duration:
        duration = Fraction(container.duration, av.time_base)
    frame_count = int(video.frames) if video.frames and video.frames > 0 else None
    sar = _fraction(video.sample_aspect_ratio)

    vinfo = VideoInfo(
        index=video.index,
        codec=_codec_name(ctx) or "unknown",
        width=int(width),
        height=int(height),
        pix_fmt=pix_fmt,
        bit_depth=_bit_depth(pix_fmt),
        time_base=time_base,
        frame_rate=frame_rate,
        duration=duration,
        frame_count=frame_count,
        color=color,
        rotation=rotation,
        start_time=video.start_time,
        sample_aspect_ratio=sar,
        profile=video.profile,
        hdr=hdr_from_frame(first),
        dynamic_hdr=dynamic_hdr_from(first, video),
        field_order=field_order_name(
            ctx.field_order, first_frame_interlaced=first is not None and first.interlaced_frame
        ),
        a53_captions=first is not None and frame_captions(first) is not None,
    )
    audio = tuple(_audio_info(s) for s in container.streams.audio)
    subtitles = tuple(_other_info(s, "subtitle") for s in container.streams.subtitles)
    data = tuple(_other_info(s, "data") for s in container.streams.data)
    return MediaInfo(
        path=Path(name),
        format_name=container.format.name,
        video=vinfo,
        audio=audio,
        subtitles=subtitles,
        data=data,
        duration=Fraction(container.duration, av.time_base) if container.duration else None,
        bit_rate=int(container.bit_rate) if container.bit_rate else None,
    )


def probe(path: str | os.PathLike[str]) -> MediaInfo:
    """Describe the media file at ``path``.

    Raises:
        InputNotFoundError: the path does not exist.
        MediaError: not a media file, damaged beyond opening, or no video stream.
    """
    container = open_input(path)
    try:
        return info_from_container(container, path)
    except MediaError:
        raise
    except (av.error.FFmpegError, OSError, ValueError, AttributeError) as exc:
        raise MediaError(f"cannot read {path}: {describe_av_error(exc)}") from None
    finally:
        container.close()
