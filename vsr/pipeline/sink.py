"""The sink side of a file run: the :class:`Sink` protocol and the one loop that feeds a
sink from the model stage.

Sinks: :class:`~vsr.media.writer.Writer` (``vsr run``, ``vsr batch``; the output file),
:class:`~vsr.pipeline.segments.SegmentWriter` (``vsr run --resume``; segment files). Both
encode through :class:`~vsr.media.encode.VideoEncoder`, as the live sinks of ``vsr
stream`` do (:class:`~vsr.live.sinks.AvSink`), so timestamps, colour tags and encoder
settings follow one rule everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from vsr.media.frame import Frame
from vsr.pipeline.tally import Tally

__all__ = ["Sink", "sink_loop"]


class Sink(Protocol):
    def write_frame(self, frame: Frame) -> None: ...

    def write_packet(self, packet: Any) -> None: ...

    def close(self) -> None:
        """Finish the output (flush, trailer, move into place)."""

    def abort(self) -> None:
        """Discard what is unfinished; a no-op after a successful close."""


def sink_loop(
    items: Iterable[object],
    sink: Sink,
    tally: Tally,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Write every frame and packet of ``items`` to ``sink``, check that every frame read
    was written, and close it; on any error (or a stop) abort it instead.

    ``tally.writer``/``tally.packets`` count what was written; ``progress(1)`` follows
    each frame. A sink with a ``position()`` method adds it to the writer checkpoint.
    """
    position: Callable[[], dict[str, int]] = getattr(sink, "position", dict)
    try:
        for item in items:
            if isinstance(item, Frame):
                sink.write_frame(item)
                tally.wrote(**position())
                if progress is not None:
                    progress(1)
            else:
                sink.write_packet(item)
                tally.packets += 1
        tally.check()
        sink.close()
    finally:
        sink.abort()  # no-op after a successful close
