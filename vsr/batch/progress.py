"""The progress display of a batch driver: tqdm bars on stderr, one for all jobs
(frames, ETA) and one per running job."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

from vsr.batch.jobs import JobResult, JobSpec


class Progress:
    """tqdm on stderr: one bar for all jobs (frames, ETA) and one per running job."""

    def __init__(self, specs: list[JobSpec], enabled: bool) -> None:
        from tqdm import tqdm

        self.enabled = enabled and bool(specs)
        self.totals: dict[str, int | None] = {}
        if self.enabled:
            self.totals = {s.key: _frames_estimate(s.input) for s in specs}
        known = [t for t in self.totals.values() if t]
        self.jobs = len(specs)
        self.done = 0
        self.failed = 0
        self.counted: Counter[str] = Counter()
        self.bars: dict[str, Any] = {}
        self.free: list[int] = []
        self.next_position = 1
        self.overall = tqdm(
            total=sum(known) if known else None,  # inputs that cannot be probed: 0
            unit="frame",
            desc=self._desc(),
            disable=not self.enabled,
            dynamic_ncols=True,
            file=sys.stderr,
            position=0,
        )

    def _desc(self) -> str:
        text = f"batch {self.done}/{self.jobs}"
        return text + (f", {self.failed} failed" if self.failed else "")

    def start(self, spec: JobSpec) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if self.free:
            position = self.free.pop(0)
        else:
            position, self.next_position = self.next_position, self.next_position + 1
        self.bars[spec.key] = (
            tqdm(
                total=self.totals.get(spec.key),
                unit="frame",
                desc=Path(spec.input).name,
                leave=False,
                dynamic_ncols=True,
                file=sys.stderr,
                position=position,
            ),
            position,
        )

    def progress(self, key: str, n: int) -> None:
        if not self.enabled:
            return
        self.counted[key] += n
        self.overall.update(n)
        if key in self.bars:
            self.bars[key][0].update(n)

    def finish(self, result: JobResult) -> None:
        if not self.enabled:
            return
        bar, position = self.bars.pop(result.key, (None, None))
        if bar is not None:
            bar.close()
            self.free.append(position)
        seen = self.counted.pop(result.key, 0)
        if result.ok:
            self.done += 1
            self.overall.update(result.frames - seen)
        else:
            self.failed += 1
            self.overall.update(-seen)
        self.overall.set_description(self._desc())

    def retrying(self, n: int) -> None:
        self.failed -= n
        if self.enabled:
            self.overall.set_description(self._desc())

    def close(self) -> None:
        for bar, _ in self.bars.values():
            bar.close()
        self.overall.close()


def _frames_estimate(path: str) -> int | None:
    from vsr.media.probe import probe

    try:
        return probe(Path(path)).video.frames_estimate
    except Exception:  # noqa: BLE001 - only for the progress bar; the job reports errors
        return None
