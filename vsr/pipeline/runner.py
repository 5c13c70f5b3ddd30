"""Run stages in their own threads; the first error stops them all and is re-raised.

Every thread is joined: none is abandoned. Ctrl-C in the caller stops the stages
(each notices within a poll interval, or after the batch it is computing) and raises
``Interrupted``. Each stage's busy time is its wall time minus the time it spent blocked
on its channels; the busiest stage set the pace.
"""

from __future__ import annotations

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


class Runner:
    def __init__(self) -> None:
        self.stop = threading.Event()
        self.stages: list[Stage] = []
        self._error: tuple[str, BaseException] | None = None
        self._lock = threading.Lock()

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
        finally:
            stage.wall = time.perf_counter() - t0

    def run(self) -> None:
        """Start all stages and wait for them; raise StageError or Interrupted."""
        threads = [
            threading.Thread(target=self._thread_main, args=(s,), name=f"vsr-{s.name}", daemon=True)
            for s in self.stages
        ]
        for t in threads:
            t.start()
        interrupted = False
        try:
            for t in threads:
                while t.is_alive():
                    t.join(timeout=0.1)
        except KeyboardInterrupt:
            interrupted = True
            self.stop.set()
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
