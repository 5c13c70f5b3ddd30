"""Rates, latency percentiles and drop counters of a live run."""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field

__all__ = ["LiveStats", "StatsSnapshot", "percentile"]


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100, nearest rank on sorted values); ``None`` if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]


@dataclass
class StatsSnapshot:
    seconds: float
    frames_in: int
    frames_out: int
    dropped: int  # dropped by the queue (model behind) + too late (over --max-latency)
    dropped_queue: int
    dropped_late: int
    fps_in: float
    fps_out: float
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_max_ms: float | None
    reconnects: int
    bottleneck: str | None
    busy: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def line(self) -> str:
        def ms(v: float | None) -> str:
            return "-" if v is None else f"{v:.0f}"

        return (
            f"in {self.fps_in:.1f} fps, out {self.fps_out:.1f} fps, "
            f"latency p50 {ms(self.latency_p50_ms)} ms p95 {ms(self.latency_p95_ms)} ms, "
            f"frames {self.frames_out}/{self.frames_in}, dropped {self.dropped}, "
            f"reconnects {self.reconnects}, bottleneck {self.bottleneck or '-'}"
        )


class LiveStats:
    """Thread-safe counters. Latency is seconds from capture (decode done) to the frame
    having been handed to every sink."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.t0 = time.monotonic()
        self.frames_in = 0
        self.frames_out = 0
        self.dropped_queue = 0
        self.dropped_late = 0
        self.reconnects = 0
        self.latencies: list[float] = []
        self.busy: dict[str, float] = {}
        self._window: list[tuple[float, int, int]] = [(self.t0, 0, 0)]

    def captured(self) -> None:
        with self._lock:
            self.frames_in += 1

    def dropped(self, *, late: bool = False, n: int = 1) -> None:
        with self._lock:
            if late:
                self.dropped_late += n
            else:
                self.dropped_queue += n

    def written(self, latency: float) -> None:
        with self._lock:
            self.frames_out += 1
            self.latencies.append(latency)

    def reconnected(self) -> None:
        with self._lock:
            self.reconnects += 1

    def set_busy(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.busy[stage] = seconds

    def snapshot(self, *, window: float | None = None) -> StatsSnapshot:
        """Totals; the rates and percentiles over the last ``window`` seconds (the whole
        run when ``None``)."""
        now = time.monotonic()
        with self._lock:
            elapsed = max(now - self.t0, 1e-9)
            if window is None:
                t_ref, in_ref, out_ref = self.t0, 0, 0
                lat = list(self.latencies)
            else:
                t_ref, in_ref, out_ref = self._window[-1]
                lat = self.latencies[-max(1, self.frames_out - out_ref) :]
                if self.frames_out == out_ref:
                    lat = []
                self._window.append((now, self.frames_in, self.frames_out))
                del self._window[:-2]
            span = max(now - t_ref, 1e-9)
            busy = dict(self.busy)
            bottleneck = max(busy, key=lambda k: busy[k]) if busy else None
            p50, p95 = percentile(lat, 50), percentile(lat, 95)
            return StatsSnapshot(
                seconds=round(elapsed, 3),
                frames_in=self.frames_in,
                frames_out=self.frames_out,
                dropped=self.dropped_queue + self.dropped_late,
                dropped_queue=self.dropped_queue,
                dropped_late=self.dropped_late,
                fps_in=round((self.frames_in - in_ref) / span, 2),
                fps_out=round((self.frames_out - out_ref) / span, 2),
                latency_p50_ms=None if p50 is None else round(p50 * 1000, 1),
                latency_p95_ms=None if p95 is None else round(p95 * 1000, 1),
                latency_max_ms=round(max(lat) * 1000, 1) if lat else None,
                reconnects=self.reconnects,
                bottleneck=bottleneck,
                busy={k: round(v / elapsed, 3) for k, v in busy.items()},
            )
