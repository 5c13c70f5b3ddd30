"""The runner and channels on their own: errors surface, nothing hangs, no thread is left."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from vsr.errors import Interrupted, StageError
from vsr.pipeline.channel import Channel, Stopped
from vsr.pipeline.runner import Runner


def _vsr_threads() -> list[threading.Thread]:
    """vsr's threads still running (a thread interrupted inside ``join`` may stay listed
    by ``threading.enumerate`` for a moment after it has stopped)."""
    return [t for t in threading.enumerate() if t.name.startswith("vsr-") and t.is_alive()]


def _chain(runner: Runner, n: int, *, fail_in: str | None = None, slow: float = 0.0):
    a, b = runner.channel(2), runner.channel(2)
    got: list[int] = []

    def src() -> None:
        for i in range(n):
            if fail_in == "src" and i == 3:
                raise ValueError("boom in src")
            a.put(i)
        a.close()

    def mid() -> None:
        for i in a:
            if fail_in == "mid" and i == 3:
                raise ValueError("boom in mid")
            time.sleep(slow)
            b.put(i * 2)
        b.close()

    def sink() -> None:
        for i in b:
            if fail_in == "sink" and i == 6:
                raise ValueError("boom in sink")
            got.append(i)

    runner.add("src", src, outputs=[a])
    runner.add("mid", mid, inputs=[a], outputs=[b])
    runner.add("sink", sink, inputs=[b])
    return got


def test_items_flow_in_order_through_bounded_channels():
    runner = Runner()
    got = _chain(runner, 100)
    runner.run()
    assert got == [2 * i for i in range(100)]
    assert not _vsr_threads()


@pytest.mark.parametrize("stage", ["src", "mid", "sink"])
def test_first_error_stops_every_stage_and_is_reraised_with_the_stage_name(stage):
    runner = Runner()
    _chain(runner, 10_000, fail_in=stage)
    t0 = time.monotonic()
    with pytest.raises(StageError) as err:
        runner.run()
    assert time.monotonic() - t0 < 5
    assert err.value.stage == stage
    assert "boom" in err.value.one_line()
    assert isinstance(err.value.cause, ValueError)
    assert not _vsr_threads()


def test_keyboard_interrupt_stops_and_joins_everything():
    # Under a shell's background job SIGINT starts ignored and interrupt_main() does
    # nothing: install Python's default handler for the test, as in a terminal.
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        runner = Runner()
        _chain(runner, 10_000, slow=0.01)
        timer = threading.Timer(0.3, lambda: _interrupt_main())
        timer.start()
        t0 = time.monotonic()
        with pytest.raises(Interrupted):
            runner.run()
        assert time.monotonic() - t0 < 5
        assert not _vsr_threads()
    finally:
        signal.signal(signal.SIGINT, old)


def _interrupt_main() -> None:
    import _thread

    _thread.interrupt_main()


def test_busiest_stage_is_reported_as_the_bottleneck():
    runner = Runner()
    _chain(runner, 30, slow=0.01)
    runner.run()
    assert runner.bottleneck() == "mid"


def test_channel_put_and_get_give_up_when_stopped():
    stop = threading.Event()
    ch = Channel(1, stop)
    ch.put(1)
    threading.Timer(0.1, stop.set).start()
    with pytest.raises(Stopped):
        ch.put(2)  # full: blocks until stopped
    stop2 = threading.Event()
    empty = Channel(1, stop2)
    threading.Timer(0.1, stop2.set).start()
    with pytest.raises(Stopped):
        empty.get()
    done = Channel(2, threading.Event())
    done.put("x")
    done.close()
    assert list(done) == ["x"]


def _frame(i: int, w: int = 4, h: int = 4):
    from fractions import Fraction

    import numpy as np

    from vsr.media.frame import Frame

    y = np.zeros((h, w), np.uint8)
    c = np.zeros((h // 2, w // 2), np.uint8)
    return Frame(i, i, Fraction(1, 25), (y, c, c), "yuv420p")


def _drive_model_stage(items, batch_size):
    from vsr.pipeline.model_stage import model_loop
    from vsr.pipeline.tally import Tally

    stop = threading.Event()
    inp, out = Channel(100, stop), Channel(100, stop)
    for it in items:
        inp.put(it)
    inp.close()
    batches: list[int] = []

    def upscale(frames):
        batches.append(len(frames))
        return [f"up{f.index}" for f in frames]

    tally = Tally()
    model_loop(upscale, inp, out, batch_size, tally)
    out.close()
    return list(out), batches, {"model": tally.model}


def test_model_stage_batches_frames_and_keeps_packets_in_place():
    items = ["a0", _frame(0), "a1", "a2", _frame(1), _frame(2), "a3", _frame(3), _frame(4), "a4"]
    got, batches, counts = _drive_model_stage(items, batch_size=2)
    assert got == ["a0", "up0", "a1", "a2", "up1", "up2", "a3", "up3", "up4", "a4"]
    assert batches == [2, 2, 1]
    assert counts["model"] == 5


def test_model_stage_refuses_a_size_change_with_a_clear_error():
    from vsr.errors import MediaError

    with pytest.raises(MediaError, match="10x4"):
        _drive_model_stage([_frame(0), _frame(1, w=10)], batch_size=4)
