"""What a batch reports: one :class:`JobRecord` per input and the :class:`BatchReport`
(counts, JSON form, and the fixed-width table ``vsr batch`` prints)."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vsr.batch.inputs import Refused
from vsr.batch.ledger import Row


@dataclass
class JobRecord:
    """One input in a report. ``action``: ``ran`` (this run), ``skipped`` (done before and
    unchanged), ``kept`` (failed before on a bad input, unchanged: not retried), or
    empty (``status``)."""

    key: str
    input: str
    output: str | None
    state: str
    action: str
    attempts: int
    frames: int | None
    seconds: float | None
    error: str | None
    permanent: bool
    started: float | None = None
    finished: float | None = None
    # every input stream and what became of it (vsr.media.fidelity), for a done job
    fidelity: dict[str, Any] | None = None

    @classmethod
    def from_row(cls, row: Row, action: str = "") -> JobRecord:
        return cls(
            key=row.key,
            input=row.input,
            output=row.output,
            state=row.state,
            action=action,
            attempts=row.attempts,
            frames=row.frames,
            seconds=row.seconds,
            error=row.error,
            permanent=row.permanent,
            started=row.started,
            finished=row.finished,
            fidelity=row.fidelity,
        )


@dataclass
class BatchReport:
    out: str
    ledger: str
    jobs: list[JobRecord] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)
    seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        states = Counter(j.state for j in self.jobs)
        actions = Counter(j.action for j in self.jobs)
        return {
            "total": len(self.jobs),
            "done": states["done"],
            "failed": states["failed"],
            "pending": states["pending"],
            "running": states["running"],
            "ran": actions["ran"],
            "skipped": actions["skipped"],
            "kept": actions["kept"],
            "refused": len(self.refused),
        }

    @property
    def failed(self) -> int:
        """Jobs that failed plus inputs refused: the exit code is 1 when this is not 0."""
        c = self.counts()
        return c["failed"] + c["refused"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": self.out,
            "ledger": self.ledger,
            "counts": self.counts(),
            "seconds": self.seconds,
            "jobs": [asdict(j) for j in self.jobs],
            "refused": [asdict(r) for r in self.refused],
        }

    def table(self) -> str:
        """A fixed-width table, one line per job and refused input, then the counts."""
        root = Path(self.out)

        def short(path: str | None) -> str:
            if not path:
                return "-"
            p = Path(path)
            return p.relative_to(root).as_posix() if p.is_relative_to(root) else str(p)

        def num(v: float | None, fmt: str) -> str:
            return "-" if v is None else format(v, fmt)

        rows = [("state", "tries", "frames", "seconds", "output / input", "error")]
        for j in self.jobs:
            state = j.state + (" (skipped)" if j.action == "skipped" else "")
            rows.append(
                (
                    state,
                    str(j.attempts),
                    num(j.frames, "d"),
                    num(j.seconds, ".1f"),
                    short(j.output) if j.output else j.input,
                    j.error or "",
                )
            )
        for r in self.refused:
            rows.append(("refused", "-", "-", "-", r.input, r.reason))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = [
            "  ".join(cell.ljust(w) for cell, w in zip(r[:5], widths, strict=True)) + "  " + r[5]
            for r in rows
        ]
        c = self.counts()
        summary = f"{c['total']} jobs: {c['done']} done"
        if any(j.action for j in self.jobs):  # a run, not status
            now = sum(1 for j in self.jobs if j.action == "ran" and j.state == "done")
            summary += f" ({now} now, {c['skipped']} skipped)"
        summary += f", {c['failed']} failed"
        summary += f", {c['pending']} pending" if c["pending"] else ""
        summary += f", {c['running']} running" if c["running"] else ""
        summary += f"; {c['refused']} refused" if c["refused"] else ""
        summary += f"; {self.seconds:.1f} s" if self.seconds else ""
        lines.append(summary)
        return "\n".join(line.rstrip() for line in lines)
