"""Live sinks: a recording file, a network stream, stdout, a preview window.

Each :class:`AvSink` owns one output container, written straight to its final name (or
URL, or stdout), so what was muxed so far is there even if the process dies; on a
clean stop :meth:`AvSink.close` flushes the encoders and writes the trailer. MP4 is
written fragmented (``frag_keyframe+empty_moov``) so that it stays playable when cut.
Video goes through the same encoder core as files (:class:`~vsr.media.encode.VideoEncoder`:
one timestamp rule, the live timeline's pts in ``TIME_BASE``), as H.264 with live
settings (``ultrafast``, ``zerolatency``, a keyframe a second) by default; audio is AAC
from the decoded source audio, its stream opened by
:func:`~vsr.media.routes.open_audio_encoder` as the file writer's transcoded audio is.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error
import numpy as np

from vsr.errors import EncoderError, MediaError, UsageError
from vsr.live.source import (
    TIME_BASE,
    AudioChunk,
    SourceInfo,
    check_protocol,
    missing_protocol,
)
from vsr.media.encode import VideoEncoder, to_av_frame
from vsr.media.frame import Frame
from vsr.media.probe import describe_av_error
from vsr.media.routes import open_audio_encoder

__all__ = ["AvSink", "PreviewSink", "check_preview", "parse_sink", "sink_format"]

log = logging.getLogger("vsr")

_URL_FORMATS = {
    "udp": "mpegts",
    "rtp": "rtp_mpegts",
    "srt": "mpegts",
    "rtmp": "flv",
    "tcp": "mpegts",
}
_FILE_FORMATS = {".mkv": "matroska", ".mp4": "mp4", ".ts": "mpegts", ".flv": "flv", ".nut": "nut"}
AAC_FRAME = 1024


def sink_format(target: str) -> str:
    """The FFmpeg muxer for ``target``: a file by extension, a URL by scheme, ``-`` nut.

    ``-:FMT`` writes FMT to stdout (e.g. ``-:mpegts``, ``-:rawvideo``)."""
    if target == "-":
        return "nut"
    if target.startswith("-:"):
        return target[2:]
    if "://" in target:
        scheme = target.split("://", 1)[0].lower()
        if scheme not in _URL_FORMATS:
            raise UsageError(
                f"unsupported sink URL scheme {scheme!r}",
                hint=f"use one of: {', '.join(_URL_FORMATS)}",
            )
        return _URL_FORMATS[scheme]
    suffix = Path(target).suffix.lower()
    if suffix not in _FILE_FORMATS:
        raise UsageError(
            f"cannot record to {target}: unknown extension",
            hint=f"use one of: {', '.join(_FILE_FORMATS)}",
        )
    return _FILE_FORMATS[suffix]


def parse_sink(target: str, *, overwrite: bool = True) -> tuple[str, str]:
    """Validate one ``-o`` value; return (target, muxer)."""
    fmt = sink_format(target)
    check_protocol(target)
    if "://" not in target and not target.startswith("-"):
        path = Path(target)
        if path.exists() and not overwrite:
            from vsr.errors import OutputExistsError

            raise OutputExistsError(f"output exists: {path}", hint="pass --overwrite")
    return target, fmt


class AvSink:
    """Encode upscaled frames (and the source's audio) into one container."""

    def __init__(
        self,
        target: str,
        *,
        info: SourceInfo,
        width: int,
        height: int,
        codec: str = "libx264",
        crf: int | None = None,
        audio: bool = True,
    ) -> None:
        self.target = target
        self.format = sink_format(target)
        self.frames = 0
        self.audio_samples = 0
        self._audio_next: int | None = None  # next audio pts in samples
        self._pending: list[np.ndarray] = []
        self._pending_n = 0
        self._closed = False
        options: dict[str, str] = {}
        if self.format == "mp4":
            options["movflags"] = "+frag_keyframe+empty_moov+default_base_moof"
        # Every packet goes out at once: no ~1 s bursts on the network, and a recording
        # on disk is as complete as the stream so far if the process is killed.
        options["flush_packets"] = "1"
        try:
            if target.startswith("-"):
                self._out = av.open(sys.stdout.buffer, "w", format=self.format, options=options)
            else:
                if "://" not in target:
                    Path(target).parent.mkdir(parents=True, exist_ok=True)
                self._out = av.open(target, "w", format=self.format, options=options)
        except av.error.ProtocolNotFoundError:
            raise missing_protocol(target) from None
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise MediaError(f"cannot open sink {target}: {describe_av_error(exc)}") from None
        try:
            rate = info.frame_rate or Fraction(30)
            w, h = width - width % 2, height - height % 2
            self.width, self.height = w, h
            raw = self.format == "rawvideo"
            tuned = codec == "libx264" and not raw
            self._encoder = VideoEncoder(
                self._out,
                "rawvideo" if raw else codec,
                width=w,
                height=h,
                pix_fmt="yuv420p",
                time_base=TIME_BASE,
                rate=rate,
                # libx264 gets the live settings; other encoders their FFmpeg defaults
                crf=crf,
                preset="ultrafast" if tuned else None,
                options={"tune": "zerolatency"} if tuned else None,
                defaults=tuned,
                gop_size=max(1, round(float(rate))) if tuned else None,  # a keyframe a second
                fit=True,
            )
            self._audio: Any = None
            if audio and info.audio_rate and self.format not in ("rawvideo",):
                self._audio = open_audio_encoder(
                    self._out,
                    "aac",
                    rate=info.audio_rate,
                    layout=info.audio_layout,
                    time_base=Fraction(1, info.audio_rate),
                )
                self._audio_rate = info.audio_rate
                self._audio_layout = info.audio_layout or "stereo"
        except (av.error.FFmpegError, ValueError, EncoderError) as exc:
            with contextlib.suppress(Exception):
                self._out.close()
            reason = exc.message if isinstance(exc, EncoderError) else describe_av_error(exc)
            hint = exc.hint if isinstance(exc, EncoderError) else ""
            raise EncoderError(f"cannot set up sink {target}: {reason}", hint=hint) from None

    @property
    def pts_fixes(self) -> int:
        """Frames whose timestamp did not increase and were moved one tick later."""
        return self._encoder.pts_fixes

    def write_frame(self, frame: Frame) -> None:
        """Encode ``frame`` (cropped to the even size, converted to 4:2:0) with its pts
        on the live timeline, and send its packets."""
        try:
            packets = self._encoder.encode(frame)
        except EncoderError as exc:
            raise EncoderError(f"sink {self.target}: {exc.message}", hint=exc.hint) from None
        try:
            for packet in packets:
                self._out.mux(packet)
        except (av.error.FFmpegError, ValueError, OSError) as exc:
            raise MediaError(f"sink {self.target}: {describe_av_error(exc)}") from None
        self.frames += 1

    def write_audio(self, chunk: AudioChunk) -> None:
        if self._audio is None or chunk.rate != self._audio_rate:
            return
        start = round(chunk.start * self._audio_rate)
        expected = (
            self._audio_next if self._audio_next is None else self._audio_next + self._pending_n
        )
        if expected is None:
            self._audio_next = start
        elif start > expected + self._audio_rate // 10:
            self._flush_audio(pad=True)  # a gap (reconnect): restart at the new time
            self._audio_next = start
        data = chunk.data
        if data.shape[0] == 1 and self._audio_layout == "stereo":
            data = np.repeat(data, 2, axis=0)
        self._pending.append(data[: 2 if self._audio_layout == "stereo" else 1])
        self._pending_n += data.shape[1]
        self._flush_audio(pad=False)

    def _flush_audio(self, *, pad: bool) -> None:
        if not self._pending or self._audio_next is None:
            return
        buf = np.concatenate(self._pending, axis=1)
        n_full = buf.shape[1] // AAC_FRAME * AAC_FRAME
        if pad and buf.shape[1] > n_full:
            extra = AAC_FRAME - (buf.shape[1] - n_full)
            buf = np.concatenate([buf, np.zeros((buf.shape[0], extra), np.float32)], axis=1)
            n_full = buf.shape[1]
        try:
            for off in range(0, n_full, AAC_FRAME):
                part = np.ascontiguousarray(buf[:, off : off + AAC_FRAME])
                aframe = av.AudioFrame.from_ndarray(part, format="fltp", layout=self._audio_layout)
                aframe.sample_rate = self._audio_rate
                aframe.pts = self._audio_next
                aframe.time_base = Fraction(1, self._audio_rate)
                self._audio_next += AAC_FRAME
                for packet in self._audio.encode(aframe):
                    self._out.mux(packet)
        except (av.error.FFmpegError, ValueError, OSError) as exc:
            raise MediaError(f"sink {self.target}: audio: {describe_av_error(exc)}") from None
        self.audio_samples += n_full
        rest = buf[:, n_full:]
        self._pending = [rest] if rest.shape[1] else []
        self._pending_n = rest.shape[1]

    def close(self) -> None:
        """Flush the encoders and write the trailer. Idempotent."""
        if self._closed:
            return
        self._closed = True
        log.debug("closing %s after %d frames", self.target, self.frames)
        try:
            for packet in self._encoder.flush():
                self._out.mux(packet)
            if self._audio is not None:
                self._flush_audio(pad=True)
                for packet in self._audio.encode(None):
                    self._out.mux(packet)
        finally:
            try:
                self._out.close()
            except (av.error.FFmpegError, OSError, ValueError) as exc:
                raise MediaError(f"finishing {self.target}: {describe_av_error(exc)}") from None
            if self.target.startswith("-"):
                with contextlib.suppress(Exception):
                    sys.stdout.flush()
        if self.pts_fixes:
            log.warning(
                "%s: %d frame(s) had non-increasing timestamps and were nudged forward",
                self.target,
                self.pts_fixes,
            )


def check_preview(title: str = "vsr stream") -> None:
    """Open (and keep) the preview window, or raise UsageError when OpenCV has no GUI."""
    import cv2

    try:
        cv2.namedWindow(title, cv2.WINDOW_NORMAL)
    except cv2.error:
        raise UsageError(
            "--show needs an OpenCV with a GUI; this one has none (a -headless build)",
            hint="pip install opencv-contrib-python (not -headless), or drop --show "
            "and pipe to a player: -o - | ffplay -",
        ) from None


class PreviewSink:
    """``--show``: an OpenCV window with the upscaled frames (``q`` or Esc stops)."""

    def __init__(self, title: str = "vsr stream") -> None:
        import cv2

        self._cv2 = cv2
        check_preview(title)
        self.title = title
        self.frames = 0
        self.quit = False

    def write_frame(self, frame: Frame) -> None:
        av_frame = to_av_frame(frame.planes, frame.pix_fmt)
        bgr = av_frame.to_ndarray(format="bgr24")
        self._cv2.imshow(self.title, bgr)
        key = self._cv2.waitKey(1) & 0xFF
        if key in (27, ord("q")):
            self.quit = True
        self.frames += 1

    def write_audio(self, chunk: AudioChunk) -> None:
        pass

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._cv2.destroyWindow(self.title)
