"""Write an output file: the muxer's life cycle around the encoder and the stream routes.

A :class:`Writer` owns its output container *and* a second, header-only input container
on the source (used as the template for copied streams and to decode audio that must be
transcoded), so no PyAV object crosses a thread boundary. It is used by one thread.
Video is encoded by :class:`~vsr.media.encode.VideoEncoder` (or copied, for the join of
``--resume``); audio and subtitles follow :mod:`vsr.media.routes`.

The output is written to a hidden temporary sibling of the final path and renamed into
place only by a successful :meth:`Writer.close`; :meth:`Writer.abort` (or any failure)
deletes it, so a failed or interrupted run never leaves a partial file at the output path.
"""

from __future__ import annotations

import contextlib
import logging
import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error

from vsr.errors import EncoderError, MediaError
from vsr.files import replace_durably, temp_sibling
from vsr.media.captions import caption_decision
from vsr.media.codecs import (
    AUTO_CODECS,
    NVENC_DEFAULT_CQ,
    check_encoder,
    default_codec,
    output_format,
    resolve_codec,
)
from vsr.media.decode import Packet, planar_format
from vsr.media.deinterlace import describe as describe_interlacing
from vsr.media.encode import VideoEncoder, choose_pix_fmt, output_size
from vsr.media.extras import add_extras
from vsr.media.fidelity import Fidelity
from vsr.media.frame import PLANAR_FORMATS, Frame
from vsr.media.hdr import record_hdr
from vsr.media.probe import MediaInfo, describe_av_error, open_input
from vsr.media.routes import Route, add_routes, copy_container_tags, flush_route, send_packet

__all__ = ["Writer"]

log = logging.getLogger("vsr")


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
    Data streams, Matroska attachments, cover art and the timecode are kept where the
    container can hold them, else dropped with a warning (see :mod:`vsr.media.routes`).
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
        codec: video encoder name; ``None`` (the default): the output container's usual
            encoder (:func:`~vsr.media.encode.default_codec`: libx264, VP9 for WebM,
            libx265 for HDR); ``auto`` / ``auto-hevc``: NVENC when ``device`` is CUDA and
            the encoder opens, else libx264 / libx265 (see
            :func:`~vsr.media.encode.resolve_codec`); ``self.codec`` is the encoder chosen,
            recorded with the reason as the ``encoder`` decision of :attr:`fidelity`.
        device: the model's device, for ``auto`` (``"auto"``: CUDA when torch sees one).
        crf, preset: quality/speed, in the encoder's own terms (``None``: its default).
        pix_fmt: encoded pixel format; ``None`` keeps the source's (10-bit stays 10-bit
            where the encoder supports it, else falls back with a warning).
        audio: copy (or transcode) the source's audio streams.
        subtitles: copy the source's subtitle streams.
        extras: copy the source's data streams, attachments, cover art and timecode
            (``False``: a video-only file, such as a segment of ``vsr run --resume``).
        threads: encoder threads (0 = FFmpeg chooses).
        options: extra encoder options, passed to FFmpeg as they are.
        video_template: an already encoded input video stream (e.g. of a file another
            writer wrote with the same settings): the output video stream is copied from
            it (codec parameters, colour tags) instead of encoded, no encoder is opened,
            and :meth:`write_video_packet` fills it (stream copy). ``None``: encode.
        deinterlace: the run's ``--deinterlace`` (the reader applies it; the writer
            records the ``interlacing`` decision, :mod:`vsr.media.deinterlace`). The
            output is always flagged progressive. A/53 closed captions on the frames are
            written where the encoder can (``captions`` decision; :mod:`vsr.media.captions`).

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
        codec: str | None = None,
        crf: int | None = None,
        preset: str | None = None,
        pix_fmt: str | None = None,
        audio: bool = True,
        subtitles: bool = True,
        extras: bool = True,
        threads: int = 0,
        options: dict[str, str] | None = None,
        device: str = "auto",
        video_template: Any = None,
        deinterlace: str = "auto",
    ) -> None:
        self.path = Path(output)
        self.tmp_path = temp_sibling(self.path)
        self.source = source
        self.source_path = Path(source_path)
        self._state = "open"
        self._out: Any = None
        self._src: Any = None
        self._encoder: VideoEncoder | None = None
        self._video: Any = None
        self.frames_written = 0
        self.packets_written = 0
        self._routes: dict[int, Route] = {}
        self.copies_video = video_template is not None
        self._extras = extras
        #: every source stream and what became of it, and the video decisions
        self.fidelity = Fidelity()
        self.deinterlace = deinterlace

        check_encoder(codec)  # for auto: its software fallback
        wanted = pix_fmt or planar_format(source.video.pix_fmt)
        if wanted not in PLANAR_FORMATS:
            raise EncoderError(
                f"pixel format {wanted!r} is not supported for output",
                hint=f"use one of: {', '.join(PLANAR_FORMATS)}",
            )
        if codec is None:
            fmt = output_format(self.path)
            if fmt is None:
                raise MediaError(
                    f"cannot create {self.path}: no container has the extension "
                    f"{self.path.suffix or '(none)'!r}",
                    hint="use an extension such as .mp4, .mkv, .webm or .mov",
                )
            depth = PLANAR_FORMATS[wanted][0]
            codec, reason = default_codec(fmt, bit_depth=depth, hdr=source.video.is_hdr)
        elif codec in AUTO_CODECS:
            asked, codec = codec, resolve_codec(codec, device=device, pix_fmt=wanted)
            reason = f"--codec {asked}"
            log.info("codec %s: encoding with %s", asked, codec)
            if crf is None and codec in NVENC_DEFAULT_CQ:
                crf = NVENC_DEFAULT_CQ[codec]
        else:
            reason = "--codec"
        self.fidelity.decide("encoder", f"{codec} ({reason})")
        #: the format handed to the encoder (frames in another format are converted)
        self.pix_fmt = choose_pix_fmt(codec, wanted)
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
        return output_size(width, height, pix_fmt)

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
        vinfo = self.source.video
        if video_template is not None:
            self._video = self._add_copied_video(video_template)
        else:
            self._encoder = VideoEncoder(
                self._out,
                codec,
                width=self.width,
                height=self.height,
                pix_fmt=self.pix_fmt,
                time_base=self.time_base,
                rate=vinfo.frame_rate or Fraction(25),
                crf=crf,
                preset=preset,
                options=options,
                color=vinfo.color,
                sample_aspect_ratio=vinfo.sample_aspect_ratio,
                rotation=vinfo.rotation,
                threads=threads,
                hdr=vinfo.hdr,
            )
            self._video = self._encoder.stream
        copy_container_tags(self._src, self._out, self._video, vinfo.index, self.source_path.name)
        self.fidelity.record(
            vinfo.index,
            "video",
            vinfo.codec,
            "upscaled",
            f"{self.width}x{self.height} {self.pix_fmt}, {self.codec}"
            if video_template is None
            else f"{self.width}x{self.height}, stream copy of the upscaled segments",
        )
        # HDR10 static metadata kept or dropped, dynamic HDR dropped (a copied video holds
        # what the segments' encoder, the same codec, wrote)
        record_hdr(
            self.fidelity,
            hdr=vinfo.hdr,
            dynamic=vinfo.dynamic_hdr,
            codec=self.codec,
            source=self.source_path,
        )
        # what the reader did to an interlaced source (the same policy), and the captions
        # of a copied video (the segments' encoder, the same codec, kept them or not)
        self.fidelity.decide(
            "interlacing", describe_interlacing(self.deinterlace, vinfo.field_order)
        )
        if video_template is not None:
            copied = caption_decision(
                self.codec, source=str(self.source_path), copied=vinfo.a53_captions
            )
            if copied is not None:
                self.fidelity.decide("captions", copied)
        self._routes = add_routes(
            self._src, self._out, audio=audio, subtitles=subtitles, fidelity=self.fidelity
        )
        self._routes.update(
            add_extras(
                self._src,
                self._out,
                fidelity=self.fidelity,
                video_index=vinfo.index,
                video_stream=self._video,
                write=self._extras,
            )
        )

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

    # -- writing ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._state != "open":
            raise MediaError(f"writer for {self.path} is {self._state}")

    def write_frame(self, frame: Frame) -> None:
        """Encode one frame with its own pts (rescaled to the source time base if needed).

        Frames up to one pixel larger than the output size are cropped (top-left).

        Raises:
            EncoderError: wrong size/format, or the encoder failed.
        """
        self._check_open()
        if self._encoder is None:
            raise MediaError(f"writer for {self.path} copies its video; use write_video_packet")
        self._encoder.write(frame)
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
        try:
            send_packet(self._out, route, packet)
        except (av.error.FFmpegError, ValueError) as exc:
            raise MediaError(
                f"writing stream {packet.stream_index} packet at pts {packet.pts} to "
                f"{self.path.name} failed: {describe_av_error(exc)}"
            ) from None
        self.packets_written += 1

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
            if self._encoder is not None:
                self._encoder.finish()
            for route in self._routes.values():
                try:
                    flush_route(self._out, route)
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
        if self._encoder is not None:
            captions = caption_decision(
                self.codec,
                source=str(self.source_path),
                frames=self._encoder.caption_frames,
                dropped=self._encoder.captions_dropped,
            )
            if captions is not None:
                self.fidelity.decide("captions", captions)
        fixes = self._encoder.pts_fixes if self._encoder is not None else 0
        if fixes:
            log.warning(
                "%s: %d frame(s) had non-increasing timestamps and were nudged forward",
                self.path.name,
                fixes,
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
