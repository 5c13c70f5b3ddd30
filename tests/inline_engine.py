"""A batch engine that runs every job in this process: the driver's logic without worker
start-up (``vsr.batch.engine.run_batch(cfg, engine=InlineEngine())``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from vsr.batch.jobs import JobResult, JobSpec, run_job


class InlineEngine:
    """Runs ``run_job`` in this process; ``ran`` lists the input names in order."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    def run(
        self,
        specs: list[JobSpec],
        on_result: Callable[[JobResult], None],
        on_start: Callable[[JobSpec], None],
    ) -> None:
        for spec in specs:
            on_start(spec)
            self.ran.append(Path(spec.input).name)
            on_result(run_job(spec))
