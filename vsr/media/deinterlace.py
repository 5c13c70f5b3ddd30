"""Deinterlacing before the model: FFmpeg's ``bwdif`` or ``yadif`` through PyAV's filter
graph (``av.filter.Graph``), applied by the file source (:class:`~vsr.media.reader.Reader`)
and reported by the sink (:class:`~vsr.media.writer.Writer`), both from the same policy here.

Policy (``--deinterlace``, ``RunConfig.deinterlace``):

- ``auto`` (default): ``bwdif`` when the input is interlaced, nothing otherwise. The input
  is interlaced when the probe says so (:attr:`~vsr.media.probe.VideoInfo.field_order`):
  the stream's field order is ``tt``, ``bb``, ``tb`` or ``bt``, or the stream does not say
  and its first frame is flagged interlaced (``"interlaced"``). Decided once per input: a
  progressive input gets no filter and no per-frame work. A stream that starts progressive
  and turns interlaced later is not caught: name the filter for it.
- ``bwdif`` / ``yadif``: always that filter, also on input that says it is progressive.
- ``off``: never (interlaced input is upscaled as it is, fields together).

Timing: the filter runs with ``mode=send_frame``, one output frame per input frame (not
one per field, which would double the frame rate). Each output frame takes the pts (and
the A/53 captions) of the input frame it was made from: the reader's own pts rule, not
the filter's timestamps (which count in half the time base). The frame rate, frame count,
duration and the sync with audio and subtitles are therefore unchanged. The filter needs
the next frame to finish the current one, so it releases its frames one frame late and the
last one at :meth:`Deinterlacer.flush`.

Which frames: when the decoder flags frames (the probe's first frame is flagged
interlaced), ``auto`` deinterlaces only the frames flagged interlaced (``deint=interlaced``:
progressive frames of mixed content pass unchanged); when only the stream says so (frames
unflagged, e.g. progressive-segmented frames) and for an explicit ``bwdif``/``yadif``, every
frame (``deint=all``). Field parity: each frame's own flags when they are set
(``parity=auto``), else the stream's field order (``tt``/``bt``: top field first,
``bb``/``tb``: bottom field first).

The output is progressive and the encoder flags it so (``field_order`` progressive, see
:class:`~vsr.media.encode.VideoEncoder`).
"""

from __future__ import annotations

from collections import deque
from fractions import Fraction
from typing import Any

from vsr.errors import MediaError, UsageError

__all__ = [
    "DEINTERLACE_MODES",
    "FILTERS",
    "INTERLACED_ORDERS",
    "Deinterlacer",
    "check_mode",
    "choose_filter",
    "describe",
    "field_order_name",
    "is_interlaced",
]

#: ``--deinterlace`` values.
DEINTERLACE_MODES = ("auto", "off", "bwdif", "yadif")
#: The FFmpeg filters offered; ``auto`` uses the first.
FILTERS = ("bwdif", "yadif")
#: FFmpeg's ``AVFieldOrder`` (``AVCodecParameters.field_order``) by value.
_FIELD_ORDERS: dict[int, str | None] = {
    0: None,  # unknown
    1: "progressive",
    2: "tt",  # top coded first, top displayed first
    3: "bb",  # bottom coded first, bottom displayed first
    4: "tb",  # top coded first, bottom displayed first
    5: "bt",  # bottom coded first, top displayed first
}
#: Field orders of interlaced input; ``"interlaced"``: the stream does not say, its
#: frames are flagged interlaced.
INTERLACED_ORDERS = ("tt", "bb", "tb", "bt", "interlaced")
#: The field shown first, by field order (``parity`` of bwdif/yadif).
_PARITY = {"tt": "tff", "bt": "tff", "bb": "bff", "tb": "bff"}


def field_order_name(value: int | None, *, first_frame_interlaced: bool = False) -> str | None:
    """The name of FFmpeg's field order ``value`` (``None``: unknown); a stream that does
    not say it is interlaced but whose first frame is flagged so is ``"interlaced"``."""
    name = _FIELD_ORDERS.get(int(value)) if value is not None else None
    if first_frame_interlaced and name not in INTERLACED_ORDERS:
        return "interlaced"
    return name


def is_interlaced(field_order: str | None) -> bool:
    return field_order in INTERLACED_ORDERS


def check_mode(mode: str) -> str:
    """``mode`` if it is a ``--deinterlace`` value, else UsageError."""
    if mode not in DEINTERLACE_MODES:
        raise UsageError(
            f"deinterlace must be one of {', '.join(DEINTERLACE_MODES)}, got {mode!r}",
            hint="auto deinterlaces interlaced input only",
        )
    return mode


def choose_filter(mode: str, field_order: str | None) -> str | None:
    """The filter the policy runs for ``mode`` on input of ``field_order`` (``None``: none)."""
    check_mode(mode)
    if mode == "off":
        return None
    if mode == "auto":
        return FILTERS[0] if is_interlaced(field_order) else None
    return mode


def describe(mode: str, field_order: str | None) -> str:
    """The fidelity report's ``interlacing`` decision for ``mode`` on ``field_order``."""
    name = choose_filter(mode, field_order)
    source = f"{field_order} input" if field_order is not None else "input"
    if name is not None:
        forced = "" if mode == "auto" else f"--deinterlace {mode}; "
        return f"{source} deinterlaced with {name} ({forced}one frame per frame, pts kept)"
    if is_interlaced(field_order):
        return f"{source} not deinterlaced (--deinterlace off): fields upscaled together"
    if field_order is None:
        return "progressive input (field order not given)"
    return "progressive input"


class Deinterlacer:
    """One ``bwdif``/``yadif`` filter graph (``mode=send_frame``) over decoded frames.

    :meth:`push` takes a decoded ``av.VideoFrame`` and any ``tag`` (the reader's pts,
    captions...) and returns the ``(frame, tag)`` pairs the filter released: one output
    per input, in input order, each with the tag of the frame it was made from (its
    timestamps are not used). :meth:`flush` releases the last. The graph is built on the
    first frame (its size and format) and built again if they change. Used by one thread.

    Args:
        name: ``bwdif`` or ``yadif``.
        every_frame: deinterlace every frame (``deint=all``); ``False``: only the frames
            flagged interlaced (``deint=interlaced``); ``None`` (``auto``'s): only the
            flagged ones if the first frame is flagged, else every frame.
        field_order: the stream's field order, for the parity when frames are unflagged.

    Raises:
        MediaError: the filter failed.
    """

    def __init__(
        self, name: str, *, every_frame: bool | None = True, field_order: str | None = None
    ) -> None:
        if name not in FILTERS:
            raise UsageError(f"unknown deinterlacer {name!r}", hint=f"use {' or '.join(FILTERS)}")
        self.name = name
        self.every_frame = every_frame
        self.field_order = field_order
        self._graph: Any = None
        self._shape: tuple[int, int, str] | None = None
        self._tags: deque[Any] = deque()
        #: frames pushed and released
        self.frames_in = 0
        self.frames_out = 0

    def _build(self, av_frame: Any) -> None:
        import av.filter

        if av_frame.interlaced_frame:
            parity = "auto"  # the frame's own top-field-first flag
        else:
            parity = _PARITY.get(self.field_order or "", "auto")
        if self.every_frame is None:  # auto: follow the decoder's flags when it sets them
            self.every_frame = not av_frame.interlaced_frame
        deint = "all" if self.every_frame else "interlaced"
        time_base = av_frame.time_base or Fraction(1, 90000)
        try:
            graph = av.filter.Graph()
            src = graph.add_buffer(
                width=av_frame.width,
                height=av_frame.height,
                format=av_frame.format,
                time_base=time_base,
            )
            node = graph.add(self.name, f"mode=send_frame:parity={parity}:deint={deint}")
            sink = graph.add("buffersink")
            graph.link_nodes(src, node, sink).configure()
        except (av.error.FFmpegError, ValueError) as exc:
            raise MediaError(f"cannot set up the {self.name} deinterlacer: {exc}") from None
        self._graph = graph
        self._shape = (av_frame.width, av_frame.height, av_frame.format.name)

    def push(self, av_frame: Any, tag: Any = None) -> list[tuple[Any, Any]]:
        """Filter one decoded frame; the frames released (one frame late, see above)."""
        shape = (av_frame.width, av_frame.height, av_frame.format.name)
        out: list[tuple[Any, Any]] = []
        if self._graph is not None and shape != self._shape:
            out = self.flush()  # a new size or format: finish the old graph, start anew
        if self._graph is None:
            self._build(av_frame)
        self._tags.append(tag)
        self.frames_in += 1
        self._send(av_frame)
        self._drain(out)
        return out

    def flush(self) -> list[tuple[Any, Any]]:
        """Release the frames still in the filter (at the end of the input)."""
        out: list[tuple[Any, Any]] = []
        if self._graph is None:
            return out
        self._send(None)
        self._drain(out)
        self._graph = None
        self._shape = None
        if self._tags:
            raise MediaError(
                f"the {self.name} deinterlacer released {self.frames_out} frames for "
                f"{self.frames_in}"
            )
        return out

    def _send(self, av_frame: Any) -> None:
        import av.error

        try:
            self._graph.push(av_frame)
        except (av.error.FFmpegError, ValueError) as exc:
            raise MediaError(f"the {self.name} deinterlacer failed: {exc}") from None

    def _drain(self, out: list[tuple[Any, Any]]) -> None:
        import av.error

        while True:
            try:
                frame = self._graph.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                return
            except (av.error.FFmpegError, ValueError) as exc:
                raise MediaError(f"the {self.name} deinterlacer failed: {exc}") from None
            if not self._tags:
                raise MediaError(
                    f"the {self.name} deinterlacer released more frames than it was given"
                )
            self.frames_out += 1
            out.append((frame, self._tags.popleft()))
