"""Several model stages (one per device): frames dispatched, upscaled in parallel, reordered.

There is no GPU here: the devices are CPU devices ("cpu" may repeat), which runs the same
dispatch, reorder and failure logic as several GPUs would.
"""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from faults import fault_in
from media_checks import packets

from vsr.config import RunConfig, make_config
from vsr.errors import DeviceError, StageError, UsageError
from vsr.media.frame import Frame
from vsr.media.probe import probe
from vsr.pipeline.engine import execute, prepare, run
from vsr.pipeline.model_stage import MAX_IN_FLIGHT, add_multi_device_stage, stage_names
from vsr.pipeline.runner import Runner
from vsr.pipeline.tally import Tally

CPUS = ("cpu", "cpu", "cpu")


def _vsr_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("vsr-") and t.is_alive()]


def _no_leftovers(folder: Path) -> None:
    assert not [p for p in folder.iterdir() if ".vsr-tmp" in p.name]
    assert not _vsr_threads()


def _decoded(path: Path) -> list[tuple[int, list[np.ndarray]]]:
    """(pts, [Y, U, V]) of every video frame, in the order the decoder returns them."""
    out = []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            planes = [
                np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, : p.width].copy()
                for p in f.planes
            ]
            out.append((f.pts, planes))
    return out


def _frame(i: int, w: int = 4, h: int = 4) -> Frame:
    y = np.zeros((h, w), np.uint8)
    c = np.zeros((h // 2, w // 2), np.uint8)
    return Frame(i, i, Fraction(1, 25), (y, c, c), "yuv420p")


# -- (a) a real run on three CPU devices ----------------------------------------------------


def test_three_cpu_devices_give_the_same_video_as_one(clip_mp4, tmp_path):
    one, many = tmp_path / "one.mp4", tmp_path / "many.mp4"
    kw = dict(model="espcn", scale=3, batch_size=2, quiet=True)
    r1 = run(RunConfig.from_values(dict(input=clip_mp4, output=one, **kw)))
    r3 = run(RunConfig.from_values(dict(input=clip_mp4, output=many, devices=CPUS, **kw)))

    n = probe(clip_mp4).video.frame_count
    assert r1.frames_out == r3.frames_in == r3.frames_out == n
    a, b = _decoded(one), _decoded(many)
    assert len(a) == len(b) == n
    # same pts, in the same order, as the single-device run and as the source
    assert [pts for pts, _ in b] == [pts for pts, _ in a]
    src_pts = sorted(Fraction(p) for p, _ in _decoded(clip_mp4))
    assert [p - src_pts[0] for p in src_pts] == sorted(Fraction(p - b[0][0]) for p, _ in b)
    # bit-identical pixels: same model on the same CPU, so any frame out of place shows
    for (_, pa), (_, pb) in zip(a, b, strict=True):
        for x, y in zip(pa, pb, strict=True):
            np.testing.assert_array_equal(x, y)
    assert packets(many, "audio") == packets(clip_mp4, "audio")

    workers = ["model[cpu#0]", "model[cpu#1]", "model[cpu#2]"]
    assert list(r3.stages) == ["reader", "dispatch", *workers, "reorder", "writer"]
    assert all(r3.stages[w]["busy_seconds"] > 0 for w in workers)  # every device worked
    assert r3.bottleneck in r3.stages
    assert r3.device.count("cpu") == 3
    _no_leftovers(tmp_path)


# -- (b) the reorder logic on its own --------------------------------------------------------


def _stream(n_frames: int) -> list[object]:
    """Frames with audio/subtitle stand-ins around them (strings), packets first and last."""
    items: list[object] = ["head"]
    for i in range(n_frames):
        if i % 3 == 0:
            items.append(f"a{i}")
        items.append(_frame(i))
        if i % 7 == 0:
            items += [f"s{i}", f"t{i}"]
    items.append("tail")
    return items


def _drive(items: list[object], upscales, batch_size: int) -> tuple[list[object], dict]:
    """Run the multi-device stage between a source and a sink stage."""
    runner = Runner()
    inp, out = runner.channel(3), runner.channel(3)
    got: list[object] = []
    tally = Tally()

    def source() -> None:
        for it in items:
            inp.put(it)
        inp.close()

    def sink() -> None:
        got.extend(out)

    runner.add("source", source, outputs=[inp])
    add_multi_device_stage(runner, upscales, inp, out, batch_size, tally)
    runner.add("sink", sink, inputs=[out])
    runner.run()
    return got, {"model": tally.model}


def _expected(items: list[object]) -> list[object]:
    return [f"up{x.index}" if isinstance(x, Frame) else x for x in items]


def test_batches_finishing_out_of_order_come_out_in_order_with_packets_in_place():
    finished: list[int] = []  # first frame of each batch, in the order they finished
    used: dict[str, int] = {}
    lock = threading.Lock()

    def fake(name: str, low: float, high: float, seed: int):
        rng = random.Random(seed)

        def upscale(frames: list[Frame]) -> list[str]:
            time.sleep(rng.uniform(low, high))
            with lock:
                finished.append(frames[0].index)
                used[name] = used.get(name, 0) + 1
            return [f"up{f.index}" for f in frames]

        return upscale

    # device 0 is the slowest, so a later batch always overtakes it
    upscales = [
        ("model[d0]", fake("d0", 0.03, 0.06, 1)),
        ("model[d1]", fake("d1", 0.0, 0.01, 2)),
        ("model[d2]", fake("d2", 0.0, 0.02, 3)),
    ]
    items = _stream(31)
    got, counts = _drive(items, upscales, batch_size=2)
    assert got == _expected(items)
    assert counts["model"] == 31
    assert finished != sorted(finished)  # really out of order
    assert sorted(finished) == list(range(0, 31, 2))  # each batch upscaled once
    assert set(used) == {"d0", "d1", "d2"}
    assert not _vsr_threads()


@pytest.mark.parametrize("batch_size", [1, 3, 50])
def test_reorder_with_other_batch_sizes_and_a_single_device(batch_size):
    def upscale(frames: list[Frame]) -> list[str]:
        return [f"up{f.index}" for f in frames]

    items = _stream(10)
    for n in (1, 2):
        got, _ = _drive(items, [(f"model[{i}]", upscale) for i in range(n)], batch_size)
        assert got == _expected(items)
    got, counts = _drive(["p0", "p1"], [("model[a]", upscale), ("model[b]", upscale)], 2)
    assert got == ["p0", "p1"] and counts["model"] == 0  # packets only


def test_a_stuck_device_holds_back_the_others_within_the_in_flight_bound():
    """While device 0 is stuck on the first batch, the others may run ahead only until
    their slots are full: memory stays bounded."""
    n = 3
    others: list[int] = []
    seen_while_stuck: list[int] = []

    def slow(frames: list[Frame]) -> list[str]:
        if frames[0].index == 0:
            time.sleep(0.5)
            seen_while_stuck.append(len(others))
        return [f"up{f.index}" for f in frames]

    def fast(frames: list[Frame]) -> list[str]:
        others.append(frames[0].index)
        return [f"up{f.index}" for f in frames]

    items = _stream(40)
    upscales = [("model[slow]", slow)] + [(f"model[f{i}]", fast) for i in range(n - 1)]
    got, _ = _drive(items, upscales, batch_size=1)
    assert got == _expected(items)
    assert n - 1 <= seen_while_stuck[0] <= (n - 1) * MAX_IN_FLIGHT


def test_stage_names_number_repeated_devices():
    assert stage_names(["cuda:0", "cuda:1"]) == ["model[cuda:0]", "model[cuda:1]"]
    names = stage_names(["cpu", "cuda:0", "CPU"])
    assert names == ["model[cpu#0]", "model[cuda:0]", "model[cpu#1]"]


# -- (c) failures ----------------------------------------------------------------------------


@pytest.mark.parametrize("devices", [(), CPUS], ids=["one-device", "three-devices"])
@pytest.mark.parametrize("failing_call", [1, 3])
def test_a_failing_device_fails_the_run_like_a_single_device(
    clip_mp4, tmp_path, monkeypatch, devices, failing_call
):
    out = tmp_path / "f.mp4"
    cfg = RunConfig.from_values(
        dict(input=clip_mp4, output=out, model="bicubic", scale=2, batch_size=2, devices=devices)
    )
    job = prepare(cfg)
    assert len(job.backends) == max(1, len(devices)) and job.backend is job.backends[0]
    bad = job.backends[-1]
    real = bad.upscale
    calls = 0

    def failing(frames: list[Frame]) -> list[Frame]:
        nonlocal calls
        calls += 1
        if calls == failing_call:
            raise RuntimeError("boom on the last device")
        return real(frames)

    monkeypatch.setattr(bad, "upscale", failing)
    t0 = time.monotonic()
    with pytest.raises(StageError) as err:
        execute(job)
    assert time.monotonic() - t0 < 30
    assert err.value.stage == ("model[cpu#2]" if devices else "model")
    assert isinstance(err.value.cause, RuntimeError)
    assert err.value.exit_code == 1
    assert "boom on the last device" in err.value.one_line()
    assert not out.exists()
    _no_leftovers(tmp_path)


def test_fault_injection_in_the_model_stage_works_with_several_devices(clip_mp4, tmp_path):
    out = tmp_path / "f.mp4"
    cfg = RunConfig.from_values(
        dict(input=clip_mp4, output=out, model="bicubic", scale=2, batch_size=2, devices=CPUS)
    )
    t0 = time.monotonic()
    with fault_in("model"), pytest.raises(StageError) as err:
        run(cfg)
    assert time.monotonic() - t0 < 30
    assert err.value.stage.startswith("model[cpu#") and "injected" in err.value.one_line()
    assert not out.exists()
    _no_leftovers(tmp_path)


@pytest.mark.parametrize("stage", ["reader", "writer"])
def test_other_stages_failing_stop_every_device(clip_mp4, tmp_path, stage):
    out = tmp_path / "f.mp4"
    cfg = RunConfig.from_values(
        dict(input=clip_mp4, output=out, model="bicubic", scale=2, batch_size=2, devices=CPUS)
    )
    with fault_in(stage), pytest.raises(StageError) as err:
        run(cfg)
    assert err.value.stage == stage
    assert not out.exists()
    _no_leftovers(tmp_path)


# -- (d) configuration -----------------------------------------------------------------------


def _usage_error(**kw) -> UsageError:
    with pytest.raises(UsageError) as err:
        make_config({"input": Path("in.mp4"), **kw})
    line = err.value.one_line()
    assert "\n" not in line
    return err.value


def test_devices_config_is_validated_with_one_line_errors():
    assert make_config({"input": Path("x.mp4"), "devices": CPUS}).inference.devices == CPUS
    assert make_config(
        {"input": Path("x.mp4"), "devices": ["cuda:0", "cuda:1"]}
    ).inference.devices == (
        "cuda:0",
        "cuda:1",
    )
    assert make_config({"input": Path("x.mp4")}).inference.devices == ()
    assert "twice" in _usage_error(devices=("cuda:0", "cuda:1", "cuda:0")).message
    assert "twice" in _usage_error(devices=("cuda", "cuda:0")).message
    assert "twice" in _usage_error(devices=("mps", "MPS")).message
    assert "torch backend" in _usage_error(devices=CPUS, backend="opencv").message
    assert "not both" in _usage_error(devices=CPUS, device="cuda").message
    assert "auto" in _usage_error(devices=("auto", "cpu")).message
    assert "list of device names" in _usage_error(devices="cuda:0").message
    assert "list of device names" in _usage_error(devices=(0, 1)).message


def test_devices_from_a_toml_config_file(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('[run]\ndevices = ["cpu", "cpu"]\nbatch_size = 2\n')
    cfg = make_config({"input": Path("x.mp4")}, good)
    assert cfg.inference.devices == ("cpu", "cpu") and cfg.inference.batch_size == 2
    flags = make_config({"input": Path("x.mp4"), "devices": ("cpu",)}, good)
    assert flags.inference.devices == ("cpu",)  # a flag beats the file
    for text in ('devices = "cuda:0"\n', "devices = [0, 1]\n", 'devices = ["cuda:1", "cuda:1"]\n'):
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        with pytest.raises(UsageError) as err:
            make_config({"input": Path("x.mp4")}, bad)
        assert "\n" not in err.value.one_line()


def test_bad_devices_in_a_config_file_exit_2_with_one_line(clip_mp4, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('devices = ["cuda:0", "cuda:0"]\n')
    out = tmp_path / "o.mp4"
    proc = subprocess.run(
        [sys.executable, "-m", "vsr", "run", str(clip_mp4), "-o", str(out), "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "twice" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_unknown_or_missing_devices_are_refused_before_anything_is_written(clip_mp4, tmp_path):
    out = tmp_path / "o.mp4"
    base = dict(input=clip_mp4, output=out, model="bicubic", scale=2)
    with pytest.raises(UsageError) as err:
        prepare(RunConfig.from_values(dict(**base, devices=("cpu", "tpu:0"))))
    assert "tpu" in err.value.one_line() and "\n" not in err.value.one_line()
    with pytest.raises(UsageError, match="twice"):  # RunConfig made without make_config
        prepare(RunConfig.from_values(dict(**base, devices=("cuda:0", "cuda:0"))))
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError):
            prepare(RunConfig.from_values(dict(**base, devices=("cpu", "cuda:0"))))
    assert not out.exists()
    _no_leftovers(tmp_path)


def test_cpu_devices_split_the_cores(clip_mp4, tmp_path, monkeypatch):
    import os

    before = torch.get_num_threads()
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    job = prepare(
        RunConfig.from_values(
            dict(input=clip_mp4, output=tmp_path / "o.mp4", model="espcn", devices=("cpu",) * 3)
        )
    )
    try:
        assert torch.get_num_threads() == 8 // 3
        # each device has its own copy of the network
        modules = {id(b.module) for b in job.backends}
        assert len(modules) == 3
    finally:
        torch.set_num_threads(before)


def test_devices_flag_on_the_command_line(clip_mp4, tmp_path):
    """``vsr run --devices cpu,cpu``: two model stages, every frame written."""
    import json

    from typer.testing import CliRunner

    from vsr.cli import app

    out = tmp_path / "two.mp4"
    args = ["run", str(clip_mp4), "-o", str(out), "-x", "2", "--devices", "cpu, cpu", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert {"model[cpu#0]", "model[cpu#1]"} <= set(report["stages"])
    assert report["frames_out"] == report["frames_in"] == probe(clip_mp4).video.frame_count
    bad = CliRunner().invoke(app, ["run", str(clip_mp4), "--devices", "cpu", "--device", "cpu"])
    assert bad.exit_code == 2 and "not both" in bad.stderr
