"""Read a media file as :class:`Frame` and :class:`Packet` objects, from the start or resuming.

A :class:`Reader` owns one PyAV input container and is used by exactly one thread.
What it yields is plain data (numpy arrays, bytes, ints, Fractions), so it can cross
thread boundaries; no PyAV object ever leaves this module. The demux + decode loop itself
and the conversion to plain data are :mod:`vsr.media.decode`'s (shared with live capture);
:class:`Packet`, :func:`frame_from_av`, :func:`planar_format` and
:data:`MAX_CONSECUTIVE_ERRORS` are re-exported here for the modules that import them from
the reader.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av.error

from vsr.errors import MediaError
from vsr.media.captions import frame_captions
from vsr.media.decode import (
    DecodeStats,
    Packet,
    PtsRule,
    demux_decode,
    frame_from_av,
    planar_format,
)
from vsr.media.deinterlace import Deinterlacer, check_mode, choose_filter
from vsr.media.frame import Frame
from vsr.media.probe import MediaInfo, describe_av_error, is_url, open_input, probe

__all__ = ["Reader"]

log = logging.getLogger("vsr")


class _SeekMissed(Exception):
    """After the seek, the frame to resume after did not come (no exact pts match)."""


class Reader:
    """Read one media file: video frames decoded, audio, subtitle and data packets as they
    are.

    Use as a context manager, or call :meth:`close`. :meth:`items` (or :meth:`frames`, or
    :meth:`frames_after` to resume) may be abandoned at any point (close the generator,
    then the reader).

    Args:
        path: file path or URL.
        threads: decoder threads (0 = FFmpeg chooses); threaded decoding is on.
        audio: yield audio packets.
        subtitles: yield subtitle packets.
        data: yield data stream packets (e.g. a MOV/MP4 timecode or chapter track).
        info: a :class:`MediaInfo` already probed for this path (saves a second probe).
        options: FFmpeg demuxer/protocol options (e.g. ``{"rtsp_transport": "tcp"}``).
        deinterlace: ``auto`` (interlaced input only), ``off``, ``bwdif`` or ``yadif``: the
            frames go through FFmpeg's deinterlacer before they are yielded, one frame per
            frame, each keeping its pts (the policy: :mod:`vsr.media.deinterlace`).

    Every frame carries the A/53 closed captions of the decoded frame (``Frame.captions``).

    Raises:
        InputNotFoundError, MediaError: as :func:`~vsr.media.probe.probe`.
        UsageError: an unknown ``deinterlace``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        threads: int = 0,
        audio: bool = True,
        subtitles: bool = True,
        data: bool = True,
        info: MediaInfo | None = None,
        options: dict[str, str] | None = None,
        deinterlace: str = "auto",
    ) -> None:
        self._closed = True
        self.deinterlace = check_mode(deinterlace)
        self._container: Any = None
        self.path: str | Path = str(path) if is_url(path) else Path(path)
        self.info: MediaInfo = info if info is not None else probe(path)
        self._source = path
        self._options = options
        self._threads = max(0, int(threads))
        self._audio = audio
        self._subtitles = subtitles
        self._data = data
        self._open()
        self.frames_read = 0
        self.packets_read = 0
        self.decode_errors = 0
        self._started = False

    def _open(self) -> None:
        """Open the container and pick the streams to demux."""
        self._container = open_input(self._source, options=self._options)
        self._closed = False
        try:
            self._video: Any = self._container.streams[self.info.video.index]
            self._video.thread_type = "AUTO"
            self._video.thread_count = self._threads
            streams = [self._video]
            if self._audio:
                streams += list(self._container.streams.audio)
            if self._subtitles:
                streams += list(self._container.streams.subtitles)
            if self._data:
                streams += list(self._container.streams.data)
            self._streams: list[Any] = streams
        except BaseException:
            self.close()
            raise

    def _reopen(self) -> None:
        """Start over at the beginning of the input (a fresh container)."""
        self.close()
        self._open()

    # -- properties the pipeline reports -------------------------------------------------

    @property
    def pix_fmt(self) -> str:
        """The :data:`PLANAR_FORMATS` format every yielded frame has."""
        return planar_format(self.info.video.pix_fmt)

    @property
    def time_base(self) -> Fraction:
        return self.info.video.time_base

    # -- reading ---------------------------------------------------------------------------

    def _start(self) -> None:
        if self._closed:
            raise MediaError(f"reader for {self.path} is closed")
        if self._started:
            raise MediaError(f"reader for {self.path} was already read; open a new one")
        self._started = True

    def items(self) -> Iterator[Frame | Packet]:
        """Yield frames and packets in demux order (frames as the decoder releases them).

        Damaged input: every frame that decodes is yielded; then one warning on the
        ``"vsr"`` logger says how much was lost, and iteration ends normally.

        Single use: a reader reads its input once.

        Raises:
            MediaError: the reader is closed or already read, or not a single frame could
                be decoded.
        """
        self._start()
        time_base = self.info.video.time_base
        rule = PtsRule(self.info.video.frame_rate, time_base)
        stats = DecodeStats()
        deint = self._deinterlacer()
        decoded = demux_decode(self._container, self._streams, self._video, stats)
        try:
            for is_video, item in decoded:
                if not is_video:
                    self.packets_read += 1
                    yield item
                    continue
                pts = rule.next(item)
                if deint is None:  # progressive input: no filter
                    yield self._frame(item, self.frames_read, pts, frame_captions(item))
                    continue
                # one frame late; each output keeps its input's pts and captions
                for out, (out_pts, captions) in deint.push(item, (pts, frame_captions(item))):
                    yield self._frame(out, self.frames_read, out_pts, captions)
            if deint is not None:  # the end: the filter's last frame
                for out, (out_pts, captions) in deint.flush():
                    yield self._frame(out, self.frames_read, out_pts, captions)
        finally:
            decoded.close()
            self.decode_errors += stats.errors
        self._report_damage(stats.demux_error or stats.last_error)

    def frames(self) -> Iterator[Frame]:
        """Only the video frames of :meth:`items`."""
        for item in self.items():
            if isinstance(item, Frame):
                yield item

    def frames_after(self, skip: int, after_pts: int | None) -> Iterator[Frame]:
        """The video frames from number ``skip`` on, numbered from ``skip`` (the resume of
        ``vsr run --resume``: frame ``skip - 1``, the last one already done, has pts
        ``after_pts``).

        With ``skip > 0`` and ``after_pts`` known, the input is sought to the keyframe at
        or before ``after_pts`` and frames are discarded up to and including the one whose
        pts is exactly ``after_pts``. If a later frame comes first (an imprecise seek), the
        input is opened again, decoded from the start and the first ``skip`` frames are
        discarded (the last of them must have pts ``after_pts``); so too without
        ``after_pts``. ``skip == 0`` reads from the start. Only video frames are yielded:
        open the reader with ``audio=False, subtitles=False, data=False`` to demux video
        alone.

        Damaged input: every frame that decodes is yielded; then one warning says how many
        packets failed to decode.

        Single use, like :meth:`items`.

        Raises:
            MediaError: the reader is closed or already read; the input has fewer than
                ``skip`` frames, or frame ``skip - 1`` has another pts than ``after_pts``
                (the input changed); not a single frame could be decoded.
            av.error.FFmpegError, OSError: demuxing failed.
        """
        self._start()
        if skip > 0 and after_pts is not None:
            try:
                yield from self._resume(skip, after_pts, seek=True)
                return
            except _SeekMissed:
                log.info(
                    "%s: the seek missed frame %d; decoding from the start", self.path, skip - 1
                )
            self._reopen()
        yield from self._resume(skip, after_pts if skip > 0 else None, seek=False)

    def _resume(self, skip: int, after_pts: int | None, *, seek: bool) -> Iterator[Frame]:
        """One try of :meth:`frames_after`: with ``seek``, seek and match ``after_pts``
        exactly (``_SeekMissed`` when a later frame comes first or none matches); without,
        decode from the start and discard ``skip`` frames."""
        path = self.path
        video = self._video
        time_base = self.info.video.time_base
        if seek and after_pts is not None:
            self._container.seek(after_pts, stream=video, backward=True, any_frame=False)
        rule = PtsRule(self.info.video.frame_rate, time_base)
        stats = DecodeStats()
        skipping = skip > 0
        seen = 0  # frames decoded (without seek: from the start)
        index = skip
        deint = self._deinterlacer()
        decoded = demux_decode(self._container, self._streams, video, stats)
        try:
            for is_video, item in decoded:
                if not is_video:
                    continue
                pts = rule.next(item)
                seen += 1
                keep = not skipping
                if skipping:
                    if seek:
                        if pts is None or after_pts is None or pts > after_pts:
                            raise _SeekMissed
                        if pts == after_pts:
                            skipping = False
                    elif seen == skip:
                        skipping = False
                        if after_pts is not None and pts != after_pts:
                            raise MediaError(
                                f"{path}: frame {skip - 1} has pts {pts}, the manifest says "
                                f"{after_pts}",
                                hint="the input changed; remove the work directory",
                            )
                if deint is not None:
                    # skipped frames go through the filter too, so that the first kept
                    # frame is made from the same neighbours as in a run from the start
                    tag = (pts, frame_captions(item) if keep else None, keep)
                    for out, (out_pts, captions, kept) in deint.push(item, tag):
                        if kept:
                            yield self._frame(out, index, out_pts, captions)
                            index += 1
                    continue
                if not keep:
                    continue
                yield self._frame(item, index, pts, frame_captions(item))
                index += 1
            if deint is not None:  # the end: the filter's last frame
                for out, (out_pts, captions, kept) in deint.flush():
                    if kept:
                        yield self._frame(out, index, out_pts, captions)
                        index += 1
        finally:
            decoded.close()
        if stats.demux_error is not None:
            raise stats.demux_error
        self.decode_errors += stats.errors
        if skipping:
            if seek:
                raise _SeekMissed
            raise MediaError(
                f"{path}: has {seen} frames, the manifest records {skip}",
                hint="the input changed; remove the work directory",
            )
        if index == 0:
            error = stats.last_error
            reason = f" ({describe_av_error(error)})" if error is not None else ""
            raise MediaError(
                f"cannot read {path}: no video frame could be decoded{reason}",
                hint="the file is damaged or incomplete",
            )
        if stats.errors:
            log.warning(
                "%s: input is damaged: %d packet(s) failed to decode; last error: %s",
                path,
                stats.errors,
                describe_av_error(stats.last_error) if stats.last_error is not None else "?",
            )

    def _deinterlacer(self) -> Deinterlacer | None:
        """The deinterlacer the policy runs on this input, ``None`` for none (decided
        once per input from the probe, so progressive input costs nothing per frame)."""
        order = self.info.video.field_order
        name = choose_filter(self.deinterlace, order)
        if name is None:
            return None
        log.info("%s: %s input, deinterlacing with %s", self.path, order or "progressive", name)
        every_frame = None if self.deinterlace == "auto" else True
        return Deinterlacer(name, every_frame=every_frame, field_order=order)

    def _frame(self, av_frame: Any, index: int, pts: int | None, captions: bytes | None) -> Frame:
        """A decoded (or deinterlaced) frame as a :class:`Frame`; counts it as read."""
        frame = frame_from_av(av_frame, index=index, pts=pts, time_base=self.info.video.time_base)
        frame.captions = captions
        self.frames_read += 1
        return frame

    def _report_damage(self, error: BaseException | None) -> None:
        name = str(self.path)
        if self.frames_read == 0:
            reason = f" ({describe_av_error(error)})" if error is not None else ""
            raise MediaError(
                f"cannot read {name}: no video frame could be decoded{reason}",
                hint="the file is damaged or incomplete",
            )
        vinfo = self.info.video
        expected = vinfo.frames_estimate
        lost = max(0, expected - self.frames_read) if expected is not None else 0
        # A count from duration x rate can be off by a frame or two on healthy files.
        exact = vinfo.frame_count is not None
        suspicious = lost > 0 if exact else lost > max(2, (expected or 0) // 100)
        if error is None and self.decode_errors == 0 and not suspicious:
            return
        parts = [f"{name}: input is damaged or truncated"]
        if expected is not None:
            approx = "" if exact else "~"
            parts.append(f"decoded {self.frames_read} of {approx}{expected} frames ({lost} lost)")
        else:
            parts.append(f"decoded {self.frames_read} frames")
        if self.decode_errors:
            parts.append(f"{self.decode_errors} packet(s) failed to decode")
        if error is not None:
            parts.append(f"last error: {describe_av_error(error)}")
        log.warning("; ".join(parts))

    # -- lifetime ----------------------------------------------------------------------------

    def close(self) -> None:
        """Release the container. Idempotent."""
        if self._closed or self._container is None:
            self._closed = True
            return
        self._closed = True
        with contextlib.suppress(av.error.FFmpegError, OSError):
            self._container.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # a reader dropped without close() still frees FFmpeg
        with contextlib.suppress(Exception):  # never raise from a finaliser
            self.close()
