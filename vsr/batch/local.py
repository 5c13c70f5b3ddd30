"""The local engine: ``jobs`` worker processes on this machine.

Each worker is a spawned Python process that runs one job at a time (``run_job``) and
reports progress and its result over a pipe. A worker that dies (a crash in a codec,
the OOM killer) fails only its own job; the engine starts a new worker for the next one.

Workers never outlive the driver: each asks the kernel, first thing, to SIGKILL it when
its parent dies (``prctl(PR_SET_PDEATHSIG, SIGKILL)``), so a driver killed with SIGKILL
leaves no orphan to finish a file behind the next run's back. The kernel sends it when
the *thread* that started the worker exits, so ``LocalEngine.run`` must be called from a
thread that lives as long as the run (the main thread in the CLI). Workers ignore
SIGINT: Ctrl-C reaches the driver, which stops them.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from vsr.batch.jobs import JobResult, JobSpec
from vsr.files import remove_temp_files

__all__ = ["LocalEngine", "set_parent_death_signal"]

log = logging.getLogger("vsr")

_PR_SET_PDEATHSIG = 1
_PROGRESS_EVERY = 0.2  # seconds between progress messages from a worker


def set_parent_death_signal(parent_pid: int) -> bool:
    """Linux: have the kernel SIGKILL this process when its parent dies; exit at once if
    the parent is already gone. False where this is not available."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent_pid:  # the parent died before prctl: nothing would kill us
        os._exit(1)
    return True


class _Progress:
    """Frames written, sent to the driver at most every ``_PROGRESS_EVERY`` seconds."""

    def __init__(self, conn: Connection, key: str) -> None:
        self.conn, self.key = conn, key
        self.pending = 0
        self.last = time.monotonic()

    def __call__(self, n: int) -> None:
        self.pending += n
        if time.monotonic() - self.last >= _PROGRESS_EVERY:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.conn.send(("progress", self.key, self.pending))
        self.pending, self.last = 0, time.monotonic()


def _worker_main(conn: Connection, parent_pid: int, threads: int | None) -> None:
    """A worker process: run the specs sent on ``conn`` until ``None`` or the pipe closes."""
    set_parent_death_signal(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    logging.getLogger("vsr").setLevel(logging.ERROR)
    logging.getLogger("libav").setLevel(logging.CRITICAL)
    from vsr.batch.jobs import run_job
    from vsr.pipeline import engine  # noqa: F401 - import torch and co. before timing jobs

    while True:
        try:
            spec = conn.recv()
        except (EOFError, OSError):
            return
        if spec is None:
            return
        progress = _Progress(conn, spec.key)
        try:
            result = run_job(spec, progress=progress, threads=threads)
        except BaseException as exc:  # noqa: BLE001 - report and keep the worker honest
            result = JobResult(
                key=spec.key,
                ok=False,
                output=None,
                frames=0,
                seconds=0.0,
                error=f"worker error: {type(exc).__name__}: {exc}",
                permanent=False,
            )
        progress.flush()
        conn.send(("result", result))


@dataclass
class _Worker:
    process: Any  # multiprocessing.Process (spawn context)
    conn: Connection
    spec: JobSpec | None = None
    frames: int = 0


class LocalEngine:
    """Run jobs in ``jobs`` worker processes (spawned; started on demand, kept between
    calls of ``run`` until ``close``).

    ``on_progress(key, frames)`` (optional) is called in the driver as frames are
    written; ``threads`` caps each worker's torch CPU threads (default: the cores
    divided by ``jobs``).
    """

    def __init__(
        self,
        jobs: int = 1,
        *,
        on_progress: Callable[[str, int], None] | None = None,
        threads: int | None = None,
    ) -> None:
        if jobs < 1:
            raise ValueError(f"jobs must be at least 1, got {jobs}")
        self.jobs = jobs
        self.on_progress = on_progress
        self.threads = threads
        self._ctx = multiprocessing.get_context("spawn")
        self._idle: list[_Worker] = []  # kept between runs (retry rounds) until close()

    def _start_worker(self) -> _Worker:
        here, there = self._ctx.Pipe(duplex=True)
        threads = self.threads
        if threads is None and self.jobs > 1:
            threads = max(1, (os.cpu_count() or 1) // self.jobs)
        proc = self._ctx.Process(
            target=_worker_main,
            args=(there, os.getpid(), threads),
            name="vsr-batch-worker",
            daemon=True,
        )
        proc.start()
        there.close()
        return _Worker(proc, here)

    def run(
        self,
        specs: list[JobSpec],
        on_result: Callable[[JobResult], None],
        on_start: Callable[[JobSpec], None],
    ) -> None:
        todo = deque(specs)
        idle = self._idle
        busy: list[_Worker] = []
        try:
            while todo or busy:
                while todo and len(busy) < self.jobs:
                    while idle and not idle[-1].process.is_alive():
                        self._stop([idle.pop()])  # died while idle (OOM killer...)
                    worker = idle.pop() if idle else self._start_worker()
                    spec = todo.popleft()
                    on_start(spec)
                    worker.spec, worker.frames = spec, 0
                    try:
                        worker.conn.send(spec)
                    except (OSError, ValueError):  # died while idle: the job is still ours
                        self._finish(worker, self._crashed(worker), on_result)
                        continue
                    busy.append(worker)
                waitables: list[Any] = [w.conn for w in busy] + [w.process.sentinel for w in busy]
                ready = set(wait(waitables, timeout=1.0))
                for worker in list(busy):
                    result = self._drain(worker, ready)
                    if result is None and worker.process.sentinel in ready:
                        result = self._drain(worker, {worker.conn}) or self._crashed(worker)
                    if result is not None:
                        busy.remove(worker)
                        if worker.process.is_alive():
                            idle.append(worker)
                        self._finish(worker, result, on_result)
        except BaseException:
            self.close()
            self._stop(busy)
            raise

    def close(self) -> None:
        """Stop the idle workers (the driver calls this when the batch is over)."""
        idle, self._idle[:] = list(self._idle), []
        self._stop(idle)

    def _drain(self, worker: _Worker, ready: set[Any]) -> JobResult | None:
        """Read every message waiting from ``worker``; its result if one came."""
        if worker.conn not in ready:
            return None
        try:
            while worker.conn.poll():
                kind, *rest = worker.conn.recv()
                if kind == "progress":
                    key, n = rest
                    worker.frames += n
                    if self.on_progress is not None:
                        self.on_progress(key, n)
                elif kind == "result":
                    result: JobResult = rest[0]
                    return result
        except (EOFError, OSError):
            return self._crashed(worker)
        return None

    def _crashed(self, worker: _Worker) -> JobResult:
        proc = worker.process
        proc.join(timeout=5)
        code = proc.exitcode
        how = f"exit code {code}"
        if code is not None and code < 0:
            with contextlib.suppress(ValueError):
                how = f"killed by {signal.Signals(-code).name}"
        with contextlib.suppress(OSError):
            worker.conn.close()
        assert worker.spec is not None
        remove_temp_files(worker.spec.output)
        return JobResult(
            key=worker.spec.key,
            ok=False,
            output=None,
            frames=0,
            seconds=0.0,
            error=f"the worker process died ({how})",
            permanent=False,
        )

    def _finish(
        self, worker: _Worker, result: JobResult, on_result: Callable[[JobResult], None]
    ) -> None:
        worker.spec = None
        on_result(result)

    def _stop(self, workers: list[_Worker]) -> None:
        """Stop every worker: idle ones are asked to exit; busy ones (an interrupt, an error
        in the driver) are killed, and their temporary files removed."""
        for w in workers:
            if w.spec is None and w.process.is_alive():
                with contextlib.suppress(OSError, ValueError):
                    w.conn.send(None)
            else:
                with contextlib.suppress(Exception):
                    w.process.kill()
        for w in workers:
            w.process.join(timeout=10)
            if w.process.is_alive():
                w.process.kill()
                w.process.join(timeout=5)
            with contextlib.suppress(OSError):
                w.conn.close()
            if w.spec is not None:
                remove_temp_files(w.spec.output)
