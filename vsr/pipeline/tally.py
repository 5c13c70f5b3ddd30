"""What a file run counts, checks and reports, in one place for ``run``, ``--resume`` and
``batch``: frames read, upscaled and written, packets copied; the frame-count check; the
per-stage busy times.

``checkpoint(stage, **where)`` is the fault-injection seam: the stages call it at fixed
points (a frame read, a batch about to be upscaled, a frame written) and it does nothing.
Tests replace it (``monkeypatch.setattr(vsr.pipeline.tally, "checkpoint", ...)``) to make
a stage fail at a chosen point; production code has no fault parameter.
"""

from __future__ import annotations

from dataclasses import dataclass

from vsr.errors import MediaError
from vsr.pipeline.runner import Runner

__all__ = ["Tally", "checkpoint", "stage_times"]


def checkpoint(stage: str, **where: int) -> None:
    """A fixed point in ``stage`` (``reader``, ``model``, ``writer``); ``where`` says how
    far it is (``frames``; segment writers add ``segment`` and ``in_segment``). Does
    nothing: the test seam for failing a stage on purpose."""


@dataclass
class Tally:
    """Counters a file run keeps; each is written by one stage only."""

    reader: int = 0  # frames decoded
    model: int = 0  # frames upscaled
    writer: int = 0  # frames written
    packets: int = 0  # audio/subtitle packets written

    def read(self) -> None:
        self.reader += 1
        checkpoint("reader", frames=self.reader)

    def wrote(self, **position: int) -> None:
        """A frame was written; ``position``: where in its file (segment writers)."""
        self.writer += 1
        checkpoint("writer", frames=self.writer, **position)

    def before_batch(self) -> None:
        """Called by the model stage before each batch it upscales."""
        checkpoint("model", frames=self.model)

    def check(self) -> None:
        """Raise MediaError when a frame was read but not written (or the other way)."""
        if self.writer != self.reader:
            raise MediaError(f"frame count mismatch: read {self.reader}, wrote {self.writer}")


def stage_times(runner: Runner, seconds: float) -> dict[str, dict[str, float]]:
    """Each stage's busy seconds and the fraction of ``seconds`` (the run's wall time)."""
    return {
        s.name: {
            "busy_seconds": round(s.busy, 3),
            "busy_fraction": round(s.busy / seconds, 3) if seconds > 0 else 0.0,
        }
        for s in runner.stages
    }
