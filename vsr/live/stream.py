"""The live engine: ``stream(cfg) -> StreamReport``.

capture (:class:`~vsr.live.source.AvSource`) -> [LatestQueue: newest wins, drops
counted] -> model stage (:func:`~vsr.pipeline.model_stage.model_loop`, batches of one) ->
[small blocking queue] -> sink stage -> every sink (:class:`~vsr.live.sinks.AvSink`
files/network/stdout, the preview), as three stages of the one
:class:`~vsr.pipeline.runner.Runner`. Audio and the source's description go from capture
straight to the sink stage on their own lossless queue (audio is never dropped). Frames
older than ``max_latency`` when the model stage would take them are dropped too (counted
as late), so latency stays bounded when the model is too slow.

Stopping: ``--duration``, the end of a file, a preview window closed, Ctrl-C or SIGTERM
all *finish* the run: capture stops, what is queued is upscaled and written, and every
sink is closed (trailer written), so the recording is playable. An error in any stage
*aborts*: the other stages stop at once, the sinks are still closed, and the caller gets
``StageError`` naming the stage.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from typing import Any

import numpy as np

from vsr.errors import UsageError
from vsr.live.auto import backend_name, choose_model
from vsr.live.options import StreamConfig, Upscaler, make_upscaler
from vsr.live.policy import LatestQueue
from vsr.live.sinks import AvSink, PreviewSink, check_preview, parse_sink
from vsr.live.source import TIME_BASE, AudioChunk, AvSource, LiveFrame, SourceInfo
from vsr.live.stats import LiveStats, StatsSnapshot
from vsr.media.frame import Frame
from vsr.pipeline.model_stage import model_loop
from vsr.pipeline.runner import Runner
from vsr.pipeline.tally import Tally

__all__ = ["StreamConfig", "StreamReport", "stream"]

log = logging.getLogger("vsr")


@dataclass
class StreamReport:
    source: str
    sinks: list[str]
    model: str
    scale: int
    backend: str | None  # the backend that ran the model (torch, openvino, opencv)
    input_size: tuple[int, int] | None
    output_size: tuple[int, int] | None
    stopped: str  # "end", "duration", "interrupt", "preview", "source lost"
    stats: dict[str, Any] = field(default_factory=dict)
    auto: dict[str, Any] | None = None  # --model auto: model, backend, reason, rates

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        s = StatsSnapshot(**self.stats)
        size = f"{self.output_size[0]}x{self.output_size[1]}" if self.output_size else "-"
        on = f" on {self.backend}" if self.backend else ""
        return (
            f"{', '.join(self.sinks) or '(no sink)'}: {size}, {self.model} x{self.scale}{on}, "
            f"stopped ({self.stopped}) after {s.seconds:.1f} s; {s.line()}"
        )


def queue_bound(rate: Fraction | None, max_latency: float) -> int:
    """Frames the capture queue holds: what arrives within ``max_latency`` (4 to 64).

    Latency itself is bounded by the age rule (older frames are dropped as late), so the
    queue only has to absorb bursts (a network source delivers what piled up while it
    was being probed all at once) without dropping frames that are still fresh.
    """
    fps = float(rate) if rate else 30.0
    return max(4, min(64, math.ceil(fps * max_latency)))


class MediaWindow:
    """``--duration S`` as FFmpeg's ``-t`` means it: S seconds of media in the recording,
    counted from the first frame captured (by the frames' timestamps on the live
    timeline, not by the wall clock, so the time a network source takes to open and
    probe does not count). Frames at or after the end are not recorded, and audio is cut
    at the end. ``None``: no limit."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.start: float | None = None  # seconds on the live timeline
        self.video_done = False  # a frame at or after the end was seen
        self.audio_done = False  # audio at or after the end was seen

    @property
    def end(self) -> float | None:
        if self.seconds is None or self.start is None:
            return None
        return self.start + self.seconds

    def holds_frame(self, frame: Frame) -> bool:
        """Whether ``frame`` (pts in :data:`~vsr.live.source.TIME_BASE`) is recorded."""
        if self.seconds is None or frame.pts is None:
            return True
        t = float(frame.pts * TIME_BASE)
        if self.start is None:
            self.start = t
        return t < self.start + self.seconds - 1e-9

    #: Seconds of video past the end after which audio is no longer waited for (audio is
    #: interleaved with the video within a fraction of a second in every container).
    AUDIO_SLACK = 1.0

    def past_audio_slack(self, item: LiveFrame) -> bool:
        end = self.end
        if end is None or item.frame.pts is None:
            return True
        return float(item.frame.pts * TIME_BASE) >= end + self.AUDIO_SLACK

    def cut_audio(self, chunk: AudioChunk) -> AudioChunk | None:
        """``chunk`` up to the end (``None``: it starts at or after the end)."""
        end = self.end
        if end is None:
            return chunk
        if chunk.start >= end:
            self.audio_done = True
            return None
        keep = round((end - chunk.start) * chunk.rate)
        if keep >= chunk.data.shape[1]:
            return chunk
        return AudioChunk(chunk.data[:, :keep], chunk.rate, chunk.layout, chunk.start)


def warm_up(up: Upscaler, width: int = 64, height: int = 48) -> None:
    """One small frame through the model before capture starts (first-call set-up cost
    would otherwise drop the first second of a live source)."""
    planes = (
        np.full((height, width), 64, np.uint8),
        np.full((height // 2, width // 2), 128, np.uint8),
        np.full((height // 2, width // 2), 128, np.uint8),
    )
    up.upscale([Frame(0, 0, Fraction(1, 30), planes, "yuv420p")])


@contextlib.contextmanager
def _finish_on_signals(finish: threading.Event, state: dict[str, Any]) -> Iterator[None]:
    """While streaming, Ctrl-C (SIGINT) and SIGTERM finish the run instead of raising.

    The first signal sets ``finish``: capture stops, what is queued is written and every
    sink is closed. Later ones are logged and otherwise ignored, so a recording is never
    cut in the middle of its trailer. Only the main thread can install handlers; from
    another thread the caller's handlers stay (and ``finish`` is the way to stop).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum: int, _frame: Any) -> None:
        if finish.is_set() and state["stopped"] == "interrupt":
            log.warning("still finishing the recording; please wait")
            return
        state["stopped"] = "interrupt"
        finish.set()

    saved = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def stream(
    cfg: StreamConfig,
    *,
    upscaler: Upscaler | None = None,
    source: AvSource | None = None,
    on_stats: Callable[[StatsSnapshot], None] | None = None,
    finish: threading.Event | None = None,
) -> StreamReport:
    """Run until the source ends, ``cfg.duration`` seconds of media are recorded
    (:class:`MediaWindow`), ``finish`` is set or Ctrl-C.

    Raises:
        UsageError: no sink and no preview; bad sink names.
        StageError: a stage failed (the sinks are closed first).
    """
    if not cfg.sinks and not cfg.show:
        raise UsageError("nothing to do: give -o SINK and/or --show")
    for target in cfg.sinks:
        parse_sink(target, overwrite=cfg.overwrite)
    if cfg.max_latency_ms <= 0:
        raise UsageError("--max-latency must be positive")
    if cfg.show:
        check_preview()
    src = source or AvSource(
        cfg.source,
        realtime=cfg.realtime,
        reconnect=cfg.reconnect,
        backoff=cfg.backoff,
        input_size=cfg.input_size,
        input_fps=cfg.input_fps,
        timeout=cfg.timeout,
        audio=cfg.audio,
    )
    auto: dict[str, Any] | None = None
    if upscaler is None and cfg.inference.model == "auto":
        if not cfg.target_fps or cfg.target_fps <= 0:
            raise UsageError("--model auto needs --target-fps N")
        size = cfg.input_size or (640, 360)
        choice, upscaler = choose_model(cfg, cfg.target_fps, size=size)
        log.warning("--model auto: %s", choice.reason)
        auto = asdict(choice)
        chosen = replace(
            cfg.inference, model=choice.model, scale=choice.scale, backend=choice.backend
        )
        cfg = replace(cfg, inference=chosen)
    up = upscaler or make_upscaler(cfg)
    w0 = time.monotonic()
    warm_up(up)
    warm = time.monotonic() - w0  # the first guess of the time a frame takes
    runner = Runner(finish=finish)  # finish: stop capture, drain, close sinks
    abort = runner.stop  # an error: every stage stops now
    stats = LiveStats()
    frames: LatestQueue[LiveFrame] = LatestQueue(cfg.queue_size or 8, abort, keep_all=cfg.keep_all)
    upscaled: LatestQueue[tuple[Frame, float, float]] = LatestQueue(16, abort, keep_all=True)
    ctrl: queue.Queue[SourceInfo | AudioChunk | None] = queue.Queue()
    state: dict[str, Any] = {"info": None, "stopped": "end", "ema": warm}
    max_latency = cfg.max_latency_ms / 1000

    window = MediaWindow(cfg.duration)

    def capture() -> None:
        try:
            for item in src.items(runner.finish):
                if abort.is_set():
                    return
                if isinstance(item, LiveFrame):
                    if not window.holds_frame(item.frame):
                        # The video is complete; audio demuxed a little later may still
                        # belong before the end (unless there is none, or it is past it).
                        info = state["info"]
                        no_audio = info is None or not info.audio_rate or not cfg.audio
                        if no_audio or window.audio_done or window.past_audio_slack(item):
                            state["stopped"] = "duration"
                            runner.finish.set()
                            return
                        window.video_done = True
                        continue
                    stats.captured()
                    if frames.put(item) is not None:
                        stats.dropped()
                elif isinstance(item, AudioChunk):
                    chunk = window.cut_audio(item)
                    if chunk is not None:
                        ctrl.put(chunk)
                    elif window.video_done:  # both have reached the end
                        state["stopped"] = "duration"
                        runner.finish.set()
                        return
                else:
                    if isinstance(item, SourceInfo) and state["info"] is None:
                        state["info"] = item
                        if cfg.queue_size is None:
                            frames.maxsize = queue_bound(item.frame_rate, max_latency)
                    ctrl.put(item)
        finally:
            while stats.reconnects < src.reconnects:
                stats.reconnected()
            frames.close()
            ctrl.put(None)

    def model() -> None:
        # The model stage of every mode (batches of one here); what is live is which
        # frames it is given: late ones (they could not reach the sinks within
        # max_latency, counting the time upscaling and writing take now, a moving
        # average) are dropped as the stage takes them.
        t0 = time.perf_counter()
        waits = [0.0]
        times: collections.deque[tuple[float, float]] = collections.deque()

        def fresh_frames() -> Iterator[Frame]:
            while True:
                w0 = time.perf_counter()
                try:
                    item = frames.get()
                except EOFError:
                    return
                finally:
                    waits[0] += time.perf_counter() - w0
                while stats.reconnects < src.reconnects:
                    stats.reconnected()
                picked = time.monotonic()
                if not cfg.keep_all and picked - item.captured + state["ema"] > max_latency:
                    stats.dropped(late=True)
                    continue
                times.append((item.captured, picked))
                yield item.frame

        class ToSinks:
            def put(self, out: Frame) -> None:
                captured, picked = times.popleft()
                w0 = time.perf_counter()
                upscaled.put((out, captured, picked))
                waits[0] += time.perf_counter() - w0
                stats.set_busy("model", time.perf_counter() - t0 - waits[0])

        try:
            model_loop(up.upscale, fresh_frames(), ToSinks(), 1, Tally())
        finally:
            stats.set_busy("model", time.perf_counter() - t0 - waits[0])
            upscaled.close()

    sinks: list[Any] = []

    def open_sinks(info: SourceInfo) -> None:
        w, h = info.width * up.scale, info.height * up.scale
        for target in cfg.sinks:
            sinks.append(
                AvSink(
                    target,
                    info=info,
                    width=w,
                    height=h,
                    codec=cfg.codec,
                    crf=cfg.crf,
                    audio=cfg.audio,
                )
            )
        if cfg.show:
            sinks.append(PreviewSink())

    def write_audio(chunk: AudioChunk) -> None:
        for s in sinks:
            s.write_audio(chunk)

    def sink() -> None:
        t_busy = 0.0
        ctrl_done = False

        def drain_ctrl(*, until_end: bool) -> float:
            """Write the audio chunks queued on ``ctrl``; the seconds it took. Only what
            is queued now, or (``until_end``) up to ctrl's end marker or an abort."""
            nonlocal ctrl_done
            spent = 0.0
            while not ctrl_done:
                try:
                    c = ctrl.get(timeout=0.05) if until_end else ctrl.get_nowait()
                except queue.Empty:
                    if not until_end or abort.is_set():
                        break
                    continue
                if c is None:
                    ctrl_done = True
                elif isinstance(c, AudioChunk):
                    b0 = time.perf_counter()
                    write_audio(c)
                    spent += time.perf_counter() - b0
            return spent

        try:
            while not sinks:  # the first item on ctrl is the source's description
                try:
                    first = ctrl.get(timeout=0.05)
                except queue.Empty:
                    if abort.is_set():
                        return
                    continue
                if first is None:
                    return
                if isinstance(first, SourceInfo):
                    open_sinks(first)
            while True:
                t_busy += drain_ctrl(until_end=False)
                try:
                    out, captured, picked = upscaled.get(timeout=0.02)
                except TimeoutError:
                    continue
                except EOFError:
                    break
                b0 = time.perf_counter()
                for s in sinks:
                    s.write_frame(out)
                    if isinstance(s, PreviewSink) and s.quit:
                        state["stopped"] = "preview"
                        runner.finish.set()
                done = time.monotonic()
                stats.written(done - captured)
                state["ema"] = 0.8 * state["ema"] + 0.2 * (done - picked)
                t_busy += time.perf_counter() - b0
                stats.set_busy("sink", t_busy)
            # The video has ended; the audio queued behind it belongs to the recording
            # too (capture closes the frame queue first, then ends this one).
            drain_ctrl(until_end=True)
        finally:
            first_error: BaseException | None = None
            for s in sinks:
                try:
                    s.close()
                except BaseException as exc:  # noqa: BLE001 - close every sink
                    first_error = first_error or exc
            if first_error is not None:
                raise first_error

    runner.add("capture", capture)
    runner.add("model", model)
    runner.add("sink", sink)
    ticks = {"next": time.monotonic() + 1.0}

    def tick() -> None:
        now = time.monotonic()
        if on_stats is not None and now >= ticks["next"]:
            ticks["next"] = now + 1.0
            on_stats(stats.snapshot(window=1.0))

    with _finish_on_signals(runner.finish, state):
        runner.run(tick)
    if src.lost and state["stopped"] == "end":
        state["stopped"] = "source lost"
    info: SourceInfo | None = state["info"]
    opts = cfg.inference
    return StreamReport(
        source=cfg.source,
        sinks=list(cfg.sinks) + (["preview"] if cfg.show else []),
        model=opts.model,
        scale=up.scale,
        backend=backend_name(up, None if opts.backend == "auto" else opts.backend),
        input_size=(info.width, info.height) if info else None,
        output_size=(info.width * up.scale, info.height * up.scale) if info else None,
        stopped=state["stopped"],
        stats=stats.snapshot().to_dict(),
        auto=auto,
    )
