"""The fidelity report: every input stream and what became of it in the output, and the
decisions taken for the video (encoder, HDR, interlacing).

The :class:`~vsr.media.writer.Writer` keeps one :class:`Fidelity` and every part that
decides a stream's fate records it here (the stream routes, the video encoder set-up), so
``vsr run``, ``vsr run --resume`` (whose join is a Writer) and ``vsr batch`` report the
same facts: in the run summary, in ``--json`` and in ``vsr batch status --json``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["FATES", "Fidelity", "StreamFate"]

#: What can become of an input stream.
FATES = ("upscaled", "copied", "transcoded", "converted", "dropped")


@dataclass
class StreamFate:
    """One input stream (``index`` in the input) and its fate; ``detail`` says to what
    (``transcoded``: the new codec) or why (``dropped``)."""

    index: int
    kind: str  # video, audio, subtitle, data, attachment, cover art
    codec: str | None
    fate: str
    detail: str | None = None

    def line(self) -> str:
        codec = f" {self.codec}" if self.codec else ""
        detail = f" ({self.detail})" if self.detail else ""
        return f"#{self.index} {self.kind}{codec}: {self.fate}{detail}"


@dataclass
class Fidelity:
    """The streams in input order and the video decisions (``name -> value``)."""

    streams: list[StreamFate] = field(default_factory=list)
    decisions: dict[str, Any] = field(default_factory=dict)

    def record(
        self, index: int, kind: str, codec: str | None, fate: str, detail: str | None = None
    ) -> None:
        """Record (or replace) the fate of input stream ``index``."""
        if fate not in FATES:
            raise ValueError(f"unknown fate {fate!r}")
        self.streams = [s for s in self.streams if s.index != index]
        self.streams.append(StreamFate(index, kind, codec, fate, detail))
        self.streams.sort(key=lambda s: s.index)

    def decide(self, name: str, value: Any) -> None:
        self.decisions[name] = value

    def fate_of(self, index: int) -> StreamFate | None:
        return next((s for s in self.streams if s.index == index), None)

    def to_dict(self) -> dict[str, Any]:
        return {"streams": [asdict(s) for s in self.streams], "decisions": dict(self.decisions)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fidelity:
        return cls(
            [StreamFate(**s) for s in data.get("streams", [])], dict(data.get("decisions", {}))
        )

    def lines(self) -> list[str]:
        """One line per stream, then one per decision (for the run summary)."""
        out = [s.line() for s in self.streams]
        out += [f"{k}: {v}" for k, v in self.decisions.items()]
        return out
