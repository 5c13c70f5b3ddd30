"""The streams besides the video, audio and subtitles: data streams (a timecode track,
KLV), Matroska attachments (fonts, images) and cover art, written where the output
container can hold them and otherwise dropped with one warning naming them; their fates
go into the Writer's :class:`~vsr.media.fidelity.Fidelity`. MP4/MOV chapter tracks are
recognised as the chapters (copied with the container tags, ``vsr.media.routes``).
"""

from __future__ import annotations

import logging
from typing import Any

import av
import av.error

from vsr.errors import MediaError
from vsr.media.fidelity import Fidelity
from vsr.media.probe import describe_av_error, stream_codec_name
from vsr.media.routes import Route, can_remux, copy_stream_tags, remux

__all__ = ["add_extras", "record_other_video"]

log = logging.getLogger("vsr")

# What each container holds of the streams the reader does not carry, as measured with
# PyAV 18.1 / FFmpeg 8: attachments only Matroska (WebM's muxer drops them without an
# error, MP4/MOV refuse the header). Cover art: Matroska as an image attachment (its
# muxer writes an attached-picture video stream as an ordinary video track, and refuses
# PNG), MP4 as an attached-picture stream with its one packet (the covr atom); MOV's muxer
# drops it without an error, WebM refuses image codecs. Timecode: a stream copy of a tmcd
# track fails in every container (EINVAL); the video stream's timecode tag makes a tmcd
# track in MOV/MP4 and is kept as a tag in Matroska/WebM.
_ATTACHMENT_FORMATS = frozenset({"matroska"})
_COVER_ART_AS = {"matroska": "attachment", "mp4": "stream"}
_TIMECODE_AS = {"mov": "track", "mp4": "track", "matroska": "tag", "webm": "tag"}
# Image codec -> (MIME type, file extension) for cover art written as an attachment.
_IMAGE_TYPES = {
    "mjpeg": ("image/jpeg", "jpg"),
    "png": ("image/png", "png"),
    "bmp": ("image/bmp", "bmp"),
    "gif": ("image/gif", "gif"),
    "webp": ("image/webp", "webp"),
    "tiff": ("image/tiff", "tif"),
}


def add_extras(
    src: Any,
    out: Any,
    *,
    fidelity: Fidelity,
    video_index: int,
    video_stream: Any = None,
    write: bool = True,
) -> dict[int, Route]:
    """Write what the container holds of the data streams (routes like audio's),
    attachments, cover art and the timecode (as the ``timecode`` tag of ``video_stream``,
    the output video stream; ``None``: not written); return the data streams' routes.
    Cover art in MP4 is a packet, muxed here: the output's header is then written here,
    so call this after every other stream is added. Without ``write`` (a video-only
    writer: the segments of ``vsr run --resume``) everything is recorded as dropped.

    Raises:
        MediaError: the cover art could not be muxed (the header or the packet refused).
    """
    record_other_video(src, fidelity, video_index)
    fmt = out.format.name
    if not write:
        _record_not_written(src, fidelity, video_index)
        return {}
    routes = _add_data(src, out, fmt, fidelity, video_index, video_stream)
    _add_attachments(src, out, fmt, fidelity)
    for packet in _add_cover_art(src, out, fmt, fidelity, video_index):
        try:
            out.mux_one(packet)
        except (av.error.FFmpegError, ValueError) as exc:
            raise MediaError(
                f"writing the cover art to {out.name} failed: {describe_av_error(exc)}"
            ) from None
    return routes


def _is_cover(stream: Any) -> bool:
    return bool(stream.disposition & av.stream.Disposition.attached_pic)


def _tag(stream: Any, key: str) -> str | None:
    """The stream tag ``key`` in any case (Matroska's demuxer gives ``TIMECODE``)."""
    for name, value in (stream.metadata or {}).items():
        if name.lower() == key and value:
            return str(value)
    return None


def _data_codec(stream: Any) -> str | None:
    """A data stream's codec, else its handler (``TimeCodeHandler``), else ``None``."""
    return stream_codec_name(stream) or getattr(stream, "name", None)


def record_other_video(src: Any, fidelity: Fidelity, video_index: int) -> None:
    """Video streams that are neither the upscaled one nor cover art: dropped."""
    for stream in src.streams.video:
        if stream.index != video_index and not _is_cover(stream):
            fidelity.record(
                stream.index,
                "video",
                stream_codec_name(stream),
                "dropped",
                "only one video stream is upscaled",
            )


def _record_not_written(src: Any, fidelity: Fidelity, video_index: int) -> None:
    """The fates for a writer without ``extras``: chapters copied, the rest dropped."""
    chapters = _chapter_count(src)
    for stream in src.streams.data:
        if _is_chapter_track(src, stream, chapters):
            fidelity.record(stream.index, "chapters", None, "copied", f"{chapters} chapters")
        else:
            fidelity.record(stream.index, "data", _data_codec(stream), "dropped", "video only")
    for stream in src.streams.attachments:
        fidelity.record(stream.index, "attachment", stream.mimetype, "dropped", "video only")
    for stream in src.streams.video:
        if stream.index != video_index and _is_cover(stream):
            codec = stream_codec_name(stream)
            fidelity.record(stream.index, "cover art", codec, "dropped", "video only")


def _add_data(
    src: Any, out: Any, fmt: str, fidelity: Fidelity, video_index: int, video_stream: Any
) -> dict[int, Route]:
    """Routes for the data streams the container holds (remux); the chapter track and
    the timecode as said in :func:`add_routes`; one warning for those dropped."""
    routes: dict[int, Route] = {}
    chapters = _chapter_count(src)
    dropped: list[str] = []
    timecode_as = _TIMECODE_AS.get(fmt) if video_stream is not None else None
    timecode = _tag(src.streams[video_index], "timecode")
    timecode_kept = False
    for stream in src.streams.data:
        index, codec = stream.index, _data_codec(stream)
        if _is_chapter_track(src, stream, chapters):
            fidelity.record(index, "chapters", None, "copied", f"{chapters} chapters")
            continue
        value = _tag(stream, "timecode")
        if value is not None:  # a tmcd track: its value, from the first sample
            if timecode_kept:
                reason = "only one timecode is kept"
            elif timecode_as is None:
                reason = f"the {fmt} container cannot hold a timecode"
            else:
                timecode, timecode_kept = value, True
                if timecode_as == "track":
                    detail = f"timecode {value}, written as a new tmcd track"
                    fidelity.record(index, "data", codec, "copied", detail)
                else:
                    detail = (
                        f"to the video stream's timecode tag ({value}): {fmt} has no timecode track"
                    )
                    fidelity.record(index, "data", codec, "converted", detail)
                continue
        else:
            try:
                route = remux(out, stream, fmt)
            except (av.error.FFmpegError, ValueError, TypeError) as exc:
                log.info("data stream %d: %s", index, describe_av_error(exc))
                route = None
            if route is not None:
                routes[index] = route
                fidelity.record(index, "data", codec, "copied")
                continue
            reason = f"the {fmt} container cannot hold it"
        dropped.append(f"#{index} ({codec or 'unknown'}): {reason}")
        fidelity.record(index, "data", codec, "dropped", reason)
    if timecode is not None and timecode_as is not None:
        video_stream.metadata["timecode"] = timecode
        # MOV/MP4 count the timecode in frames at the stream's rate; a stream copied from
        # a template (the join of --resume) has its time base there (12288 fps: refused)
        rate = src.streams[video_index].average_rate
        ctx = video_stream.codec_context
        if rate and ctx is not None and ctx.framerate != rate:
            ctx.framerate = rate
    if dropped:
        log.warning("dropping data stream(s) of %s output: %s", fmt, "; ".join(dropped))
    return routes


def _add_attachments(src: Any, out: Any, fmt: str, fidelity: Fidelity) -> None:
    """Matroska attachments (fonts for ASS subtitles, other files): copied (name, MIME
    type, bytes, other tags) where the container holds attachments, else dropped with one
    warning naming them."""
    dropped: list[str] = []
    for stream in src.streams.attachments:
        name, mimetype = _tag(stream, "filename"), stream.mimetype
        label = f"{name or '(no name)'} (#{stream.index})"
        if fmt not in _ATTACHMENT_FORMATS:
            reason = f"the {fmt} container cannot hold attachments"
        elif not name:
            reason = "it has no file name"
        else:
            try:
                new = out.add_attachment(name, mimetype or "application/octet-stream", stream.data)
                for key, value in (stream.metadata or {}).items():
                    if key.lower() not in ("filename", "mimetype"):
                        new.metadata[key] = value
            except (av.error.FFmpegError, ValueError, TypeError, MemoryError) as exc:
                reason = f"it could not be added: {describe_av_error(exc)}"
            else:
                fidelity.record(stream.index, "attachment", mimetype, "copied", name)
                continue
        dropped.append(f"{label}: {reason}")
        fidelity.record(stream.index, "attachment", mimetype, "dropped", f"{name}: {reason}")
    if dropped:
        log.warning("dropping attachment(s) of %s output: %s", fmt, "; ".join(dropped))


def _attached_pictures(src: Any, streams: list[Any]) -> dict[int, bytes]:
    """The one packet of each attached-picture stream in ``streams`` (by index): FFmpeg
    queues them when the input is opened, ahead of every other packet."""
    wanted = {s.index for s in streams}
    found: dict[int, bytes] = {}
    try:
        for packet in src.demux():
            if packet.stream_index not in wanted:
                break
            if packet.size:
                found.setdefault(packet.stream_index, bytes(packet))
            if len(found) == len(wanted):
                break
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        log.info("cover art not read: %s", describe_av_error(exc))
    return found


def _add_cover_art(src: Any, out: Any, fmt: str, fidelity: Fidelity, video_index: int) -> list[Any]:
    """Cover art (attached pictures) copied as the container holds it (see
    ``_COVER_ART_AS``), else dropped with one warning. Returns the packets to mux (MP4)."""
    covers = [s for s in src.streams.video if s.index != video_index and _is_cover(s)]
    if not covers:
        return []
    how = _COVER_ART_AS.get(fmt)
    pictures = _attached_pictures(src, covers) if how is not None else {}
    packets: list[Any] = []
    dropped: list[str] = []
    for stream in covers:
        index, codec = stream.index, stream_codec_name(stream)
        data = pictures.get(index)
        image = _IMAGE_TYPES.get(codec or "")
        name = _tag(stream, "filename") or (f"cover.{image[1]}" if image else None)
        mimetype = _tag(stream, "mimetype") or (image[0] if image else None)
        if how is None:
            reason = f"the {fmt} container cannot hold cover art"
        elif data is None:
            reason = "its picture could not be read"
        elif how == "attachment":
            if name is None or mimetype is None:
                reason = f"{fmt} has no attachment type for {codec} pictures"
            else:
                try:
                    new = out.add_attachment(name, mimetype, data)
                    if _tag(stream, "title"):
                        new.metadata["title"] = _tag(stream, "title")
                except (av.error.FFmpegError, ValueError, TypeError, MemoryError) as exc:
                    reason = f"it could not be added: {describe_av_error(exc)}"
                else:
                    fidelity.record(index, "cover art", codec, "copied", f"{name} (attachment)")
                    continue
        elif not can_remux(fmt, stream):  # e.g. a picture whose size FFmpeg could not tell
            reason = f"the {fmt} container cannot hold this {codec} picture"
        else:
            try:
                new = out.add_stream_from_template(stream)
                copy_stream_tags(stream, new)
                new.disposition = av.stream.Disposition.attached_pic
            except (av.error.FFmpegError, ValueError, TypeError) as exc:
                reason = f"the {fmt} container cannot hold {codec} cover art ({exc})"
            else:
                packet = av.Packet(data)
                packet.stream = new
                packet.time_base = new.time_base
                packet.pts = packet.dts = 0
                packet.is_keyframe = True
                packets.append(packet)
                fidelity.record(index, "cover art", codec, "copied", "attached picture")
                continue
        dropped.append(f"#{index} ({codec or 'unknown'}): {reason}")
        fidelity.record(index, "cover art", codec, "dropped", reason)
    if dropped:
        log.warning("dropping cover art of %s output: %s", fmt, "; ".join(dropped))
    return packets


def _chapter_count(src: Any) -> int:
    try:
        return len(src.chapters())
    except (AttributeError, ValueError, TypeError, av.error.FFmpegError):
        return 0


def _is_chapter_track(src: Any, stream: Any, chapters: int) -> bool:
    """MP4/MOV keep chapters in a text track that FFmpeg shows as a codec-less data stream
    with one sample per chapter; the chapters themselves are copied as chapters."""
    return (
        chapters > 0
        and "mov" in src.format.name
        and stream.codec_context is None
        and stream.frames == chapters
    )
