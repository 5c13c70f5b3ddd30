"""The latency policy between capture and the model: a small queue where the newest wins.

``put`` never blocks the producer (capture): when the queue is full the *oldest* item is
dropped and counted. With ``keep_all`` it is an ordinary bounded queue instead (``put``
blocks: lossless capture, latency unbounded).
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Generic, TypeVar

from vsr.pipeline.channel import Stopped

T = TypeVar("T")

__all__ = ["LatestQueue"]

_POLL = 0.05


class LatestQueue(Generic[T]):
    """Bounded FIFO that drops its oldest item instead of blocking ``put``.

    ``close`` marks the end of the stream; ``get`` then drains what is left and raises
    ``EOFError``. Both sides give up with :class:`Stopped` once ``stop`` is set.
    ``dropped`` counts items discarded by ``put``; ``get_wait``/``put_wait`` the seconds
    callers spent blocked (for the bottleneck).
    """

    def __init__(self, maxsize: int, stop: threading.Event, *, keep_all: bool = False) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self.keep_all = keep_all
        self._stop = stop
        self._items: collections.deque[T] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = 0
        self.put_count = 0
        self.get_wait = 0.0
        self.put_wait = 0.0

    def put(self, item: T) -> T | None:
        """Add ``item``; return the item dropped to make room (``None`` when none was)."""
        t0 = time.perf_counter()
        with self._cond:
            try:
                if self._closed:
                    raise ValueError("put on a closed queue")
                dropped: T | None = None
                while len(self._items) >= self.maxsize:
                    if not self.keep_all:
                        dropped = self._items.popleft()
                        self.dropped += 1
                        break
                    if self._stop.is_set():
                        raise Stopped
                    self._cond.wait(_POLL)
                self._items.append(item)
                self.put_count += 1
                self._cond.notify_all()
                return dropped
            finally:
                self.put_wait += time.perf_counter() - t0

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> T:
        """The oldest item; ``EOFError`` after ``close`` once empty; ``TimeoutError`` when
        ``timeout`` seconds passed with nothing to take."""
        t0 = time.perf_counter()
        deadline = None if timeout is None else t0 + timeout
        with self._cond:
            try:
                while not self._items:
                    if self._stop.is_set():
                        raise Stopped
                    if self._closed:
                        raise EOFError
                    wait = _POLL
                    if deadline is not None:
                        left = deadline - time.perf_counter()
                        if left <= 0:
                            raise TimeoutError
                        wait = min(wait, left)
                    self._cond.wait(wait)
                item = self._items.popleft()
                self._cond.notify_all()
                return item
            finally:
                self.get_wait += time.perf_counter() - t0

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)
