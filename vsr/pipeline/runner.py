"""Run stages in their own threads; the first error stops them all and is re-raised.

Every mode (``vsr run``, ``--resume``, ``batch``, ``stream``) runs its stages here.

- ``stop`` (abort): set by the first error or by Ctrl-C; every channel operation gives
  up with ``Stopped``, so all stages unwind at once.
- ``finish`` (graceful, for live sources): set by the caller (duration over, Ctrl-C
  handled as a finish, preview closed) or by an error; the source stops producing, and
  the stages after it drain what is queued and close their sinks.

Every thread is joined: none is abandoned. Ctrl-C in the caller (when it is not handled
as a finish) stops the stages (each notices within a poll interval, or after the batch
it is computing) and raises ``Interrupted``. The stage threads block SIGINT and SIGTERM,
so the threads FFmpeg and x264 start inherit the mask and no write of theirs is cut
short; signals reach the main thread only. Each stage's busy time is its wall time minus
the time it spent blocked on its channels; the busiest stage set the pace.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from vsr.errors import Interrupted, StageError
from vsr.pipeline.channel import Channel, Stopped


@dataclass
class Stage:
    name: str
    fn: Callable[[], None]
    inputs: list[Channel] = field(default_factory=list)
    outputs: list[Channel] = field(default_factory=list)
    wall: float = 0.0

    @property
    def busy(self) -> float:
        waits = sum(c.get_wait for c in self.inputs) + sum(c.put_wait for c in self.outputs)
        return max(0.0, self.wall - waits)


_POLL = 0.05


class Runner:
    def __init__(self, *, finish: threading.Event | None = None) -> None:
        self.stop = threading.Event()
        self.finish = finish if finish is not None else threading.Event()
        self.stages: list[Stage] = []
        self._error: tuple[str, BaseException] | None = None
        self._lock = threading.Lock()
        self._running = 0
        self._all_done = threading.Event()

    def channel(self, maxsize: int) -> Channel:
        return Channel(maxsize, self.stop)

    def add(
        self,
        name: str,
        fn: Callable[[], None],
        *,
        inputs: list[Channel] | None = None,
        outputs: list[Channel] | None = None,
    ) -> Stage:
        stage = Stage(name, fn, inputs or [], outputs or [])
        self.stages.append(stage)
        return stage

    def _thread_main(self, stage: Stage) -> None:
        if hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        t0 = time.perf_counter()
        try:
            stage.fn()
        except Stopped:
            pass
        except BaseException as exc:  # noqa: BLE001 - every error must reach the caller
            with self._lock:
                if self._error is None:
                    self._error = (stage.name, exc)
            self.stop.set()
            self.finish.set()
        finally:
            stage.wall = time.perf_counter() - t0
            with self._lock:
                self._running -= 1
                if self._running == 0:
                    self._all_done.set()

    def run(self, tick: Callable[[], None] | None = None) -> None:
        """Start all stages and wait for them, calling ``tick()`` (if given) about every
        50 ms meanwhile; raise StageError or Interrupted."""
        threads = [
            threading.Thread(target=self._thread_main, args=(s,), name=f"vsr-{s.name}", daemon=True)
            for s in self.stages
        ]
        self._running = len(threads)
        if not threads:
            self._all_done.set()
        for t in threads:
            t.start()
        interrupted = False
        try:
            # No Thread.join while waiting: the event lets ``tick`` run (live: the
            # duration, per-second stats), and a KeyboardInterrupt inside join() could
            # leave a thread that is still closing its sinks reported as stopped.
            while not self._all_done.wait(_POLL):
                if tick is not None:
                    tick()
            for t in threads:
                self._join_uninterruptibly(t)
        except KeyboardInterrupt:
            interrupted = True
            self.stop.set()
            self.finish.set()
            for t in threads:
                self._join_uninterruptibly(t)
        if interrupted:
            raise Interrupted("interrupted", hint="no output was written")
        if self._error is not None:
            name, exc = self._error
            if isinstance(exc, KeyboardInterrupt):
                raise Interrupted("interrupted", hint="no output was written") from exc
            raise StageError(name, exc) from exc

    @staticmethod
    def _join_uninterruptibly(t: threading.Thread) -> None:
        while t.is_alive():
            try:
                t.join(timeout=0.1)
            except KeyboardInterrupt:
                continue

    def bottleneck(self) -> str | None:
        if not self.stages:
            return None
        return max(self.stages, key=lambda s: s.busy).name
