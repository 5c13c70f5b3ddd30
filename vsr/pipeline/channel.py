"""A bounded channel between two stages, with end-of-stream and a shared stop signal."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any


class Stopped(Exception):
    """Raised inside a stage when the run is being stopped (another stage failed, Ctrl-C)."""


_EOF = object()
_POLL = 0.05


class Channel:
    """A bounded FIFO. ``put`` blocks while full (backpressure), ``get`` while empty;
    both give up with ``Stopped`` as soon as ``stop`` is set. ``close`` marks the end.

    ``wait_seconds`` counts the time callers spent blocked, so the runner can tell which
    stage set the pace.
    """

    def __init__(self, maxsize: int, stop: threading.Event) -> None:
        self._q: queue.Queue[Any] = queue.Queue(maxsize=maxsize)
        self._stop = stop
        self.put_wait = 0.0
        self.get_wait = 0.0

    def put(self, item: Any) -> None:
        t0 = time.perf_counter()
        try:
            while True:
                if self._stop.is_set():
                    raise Stopped
                try:
                    self._q.put(item, timeout=_POLL)
                    return
                except queue.Full:
                    continue
        finally:
            self.put_wait += time.perf_counter() - t0

    def close(self) -> None:
        """Signal end of stream (blocks like ``put`` if the channel is full)."""
        self.put(_EOF)

    def get(self) -> Any:
        """The next item, or raise ``EOFError`` at the end of stream."""
        t0 = time.perf_counter()
        try:
            while True:
                if self._stop.is_set():
                    raise Stopped
                try:
                    item = self._q.get(timeout=_POLL)
                except queue.Empty:
                    continue
                if item is _EOF:
                    raise EOFError
                return item
        finally:
            self.get_wait += time.perf_counter() - t0

    def __iter__(self):
        while True:
            try:
                yield self.get()
            except EOFError:
                return

    def qsize(self) -> int:
        return self._q.qsize()
