"""ATSC A/53 closed captions carried in the video bitstream (H.264/HEVC SEI, MPEG-2 user
data), passed from the decoded frames to the encoded ones.

The decoder exports them as frame side data ``A53_CC`` (the ``cc_data`` triplets); the
reader copies the bytes onto :attr:`~vsr.media.frame.Frame.captions` (:func:`frame_captions`),
the model stage keeps them on the upscaled frame, and the encoder writes them back as side
data of the frame it encodes, which encoders with the ``a53cc`` option (:data:`A53_ENCODERS`)
turn into SEI / user data again.

PyAV 18.1 cannot add side data to a frame: ``VideoFrame.side_data`` is a read-only mapping
(no setter, no "new side data" call; its buffers are not writable). It can add side data
to a *packet* (``av.packet.PacketSideData`` and ``Packet.set_sidedata``), and FFmpeg's
decoders copy a packet's ``A53_CC`` side data onto the frames they decode. So
:class:`CaptionedFrames` builds a captioned frame by decoding the frame's own planes as
one ``rawvideo`` packet carrying the captions: the decoded frame holds the same pixels and
the side data, made by FFmpeg itself. Only frames with captions take this path (one extra
copy of the planes); the others are built as before.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import numpy as np

from vsr.errors import EncoderError
from vsr.media.frame import PLANAR_FORMATS

__all__ = [
    "A53_ENCODERS",
    "CaptionedFrames",
    "caption_decision",
    "carries_captions",
    "frame_captions",
]

log = logging.getLogger("vsr")

#: Encoders that write ``A53_CC`` frame side data into the bitstream (their ``a53cc``
#: option, set on by vsr): H.264/HEVC SEI, MPEG-2 user data.
A53_ENCODERS = frozenset({"libx264", "libx265", "h264_nvenc", "hevc_nvenc", "mpeg2video"})
#: ``AV_PKT_DATA_A53_CC`` (FFmpeg's AVPacketSideDataType), PyAV's ``"a53_cc"``.
_PKT_A53_CC: Final = "a53_cc"
#: sources and encoders already warned about (one warning per run, not per segment)
_warned: set[tuple[str, str]] = set()


def carries_captions(codec: str) -> bool:
    """Whether the encoder ``codec`` writes A/53 captions."""
    return codec in A53_ENCODERS


def frame_captions(av_frame: Any) -> bytes | None:
    """The ``A53_CC`` side data of a decoded ``av.VideoFrame``, ``None`` when it has none."""
    from av.sidedata.sidedata import Type

    try:
        for data in av_frame.side_data:  # iterating PyAV 18's container yields SideData
            if data.type is Type.A53_CC:
                return bytes(data)
    except ValueError:  # a side-data type newer than PyAV's enum: no captions read
        return None
    return None


class CaptionedFrames:
    """Builds ``av.VideoFrame`` objects that carry A/53 captions as ``A53_CC`` side data
    (see the module notes: a ``rawvideo`` decoder fed one packet with ``a53_cc`` side data
    per frame). Made and used by one thread (the encoder's)."""

    def __init__(self) -> None:
        self._decoder: Any = None
        self._shape: tuple[int, int, str] | None = None

    def make(self, planes: tuple[np.ndarray, ...], pix_fmt: str, captions: bytes) -> Any:
        """A frame of ``pix_fmt`` (a :data:`PLANAR_FORMATS` name) from Y, U, V with
        ``captions`` attached; not flagged as a keyframe or picture type (the encoder
        chooses).

        Raises:
            EncoderError: FFmpeg refused the frame.
        """
        import av
        import av.error
        from av.packet import PacketSideData, packet_sidedata_type_from_literal

        depth = PLANAR_FORMATS[pix_fmt][0]
        dtype = np.dtype("<u2") if depth > 8 else np.dtype(np.uint8)
        height, width = planes[0].shape
        shape = (int(width), int(height), pix_fmt)
        if self._decoder is None or self._shape != shape:
            decoder = av.CodecContext.create("rawvideo", "r")
            decoder.width, decoder.height = shape[0], shape[1]
            decoder.pix_fmt = pix_fmt
            self._decoder, self._shape = decoder, shape
        data = b"".join(np.ascontiguousarray(p, dtype=dtype).tobytes() for p in planes[:3])
        packet = av.Packet(data)
        # the constructor (type, size) is public Cython API but missing from PyAV's stubs
        make_side: Any = PacketSideData
        side = make_side(packet_sidedata_type_from_literal(_PKT_A53_CC), len(captions))
        memoryview(side)[:] = captions
        packet.set_sidedata(side, move=True)
        try:
            frames = self._decoder.decode(packet)
        except (av.error.FFmpegError, ValueError) as exc:
            raise EncoderError(f"attaching A/53 captions to a frame failed: {exc}") from None
        if len(frames) != 1:
            raise EncoderError(f"attaching A/53 captions: rawvideo gave {len(frames)} frames")
        frame = frames[0]
        frame.pict_type = 0  # AV_PICTURE_TYPE_NONE: rawvideo says I, which forces a keyframe
        return frame


def caption_decision(
    codec: str, *, source: str, frames: int = 0, dropped: int = 0, copied: bool = False
) -> str | None:
    """The fidelity report's ``captions`` decision for a writer with the encoder ``codec``:
    ``frames`` frames were encoded with their captions, ``dropped`` frames had captions the
    encoder could not write; ``copied``: the video is a stream copy of segments ``codec``
    encoded from ``source``, whose first frame has captions. ``None`` when there were none.
    Dropping logs one warning per ``source`` and codec (not one per segment)."""
    if not (frames or dropped or copied):
        return None
    if dropped or (copied and not carries_captions(codec)):
        reason = f"{codec} cannot carry A/53 closed captions"
        key = (source, codec)
        if key not in _warned:
            _warned.add(key)
            log.warning(
                "%s: the input has A/53 closed captions; they are dropped: %s (libx264, "
                "libx265 and mpeg2video keep them)",
                source,
                reason,
            )
        return f"captions dropped: {reason}" + (f" ({dropped} frames had them)" if dropped else "")
    if copied:
        return "A/53 closed captions passed through (in the upscaled segments)"
    return f"A/53 closed captions passed through ({frames} frames)"
