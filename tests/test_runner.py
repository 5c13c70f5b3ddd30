"""The runner and channels on their own: errors surface, nothing hangs, no thread is left."""

from __future__ import annotations

import threading
import time

import pytest

from vsr.errors import Interrupted, StageError
from vsr.pipeline.channel import Channel, Stopped
from vsr.pipeline.runner import Runner


def _vsr_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("vsr-")]


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
    runner = Runner()
    _chain(runner, 10_000, slow=0.01)
    timer = threading.Timer(0.3, lambda: _interrupt_main())
    timer.start()
    t0 = time.monotonic()
    with pytest.raises(Interrupted):
        runner.run()
    assert time.monotonic() - t0 < 5
    assert not _vsr_threads()


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
