"""Resumable runs (``vsr run --resume``, ``run_segmented``): segments, manifest, resume
after a crash or Ctrl-C, starting over on changed settings, the stream-copy join."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from faults import fault_in
from media_checks import packets

from vsr.config import RunConfig
from vsr.errors import MediaError, StageError
from vsr.media.frame import ColorInfo
from vsr.media.probe import probe
from vsr.media.sample import make_sample_clip
from vsr.pipeline import segments
from vsr.pipeline.engine import run
from vsr.pipeline.manifest import MANIFEST_NAME, default_work_dir
from vsr.pipeline.segments import run_segmented

FAST = {"model": "bicubic", "scale": 2, "device": "cpu"}


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 s at 30 fps with audio; B-frames; a keyframe every 10 frames."""
    folder = tmp_path_factory.mktemp("seg_media")
    return make_sample_clip(folder / "clip.mp4", width=64, height=48, frames=90, rate=Fraction(30))


@pytest.fixture(scope="module")
def short(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1 s at 30 fps with audio."""
    folder = tmp_path_factory.mktemp("seg_short")
    return make_sample_clip(folder / "short.mp4", width=64, height=48, frames=30, rate=Fraction(30))


def _cfg(src: Path, out: Path, **kw: object) -> RunConfig:
    return RunConfig.from_values(dict(input=src, output=out, quiet=True, **{**FAST, **kw}))  # type: ignore[arg-type]


def _video(path: Path) -> tuple[Fraction, list[int], list[np.ndarray], tuple[int, int]]:
    """Time base, pts of every frame (display order) and decoded luma planes."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = list(c.decode(s))
        size = (s.codec_context.width, s.codec_context.height)
        return (
            Fraction(s.time_base),
            [f.pts for f in frames],
            [f.to_ndarray(format="gray") for f in frames],
            size,
        )


def _audio(path: Path) -> tuple[int, int]:
    """Audio packet count and total duration (in its time base) of the first track."""
    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        ps = [p for p in c.demux(a) if p.size]
        return len(ps), sum(p.duration or 0 for p in ps)


def _manifest(work: Path) -> dict:
    return json.loads((work / MANIFEST_NAME).read_text())


def _check_work_dir_clean(work: Path) -> None:
    """Only the manifest, the lock and the segments it records: no partial segment."""
    recorded = {s["file"] for s in _manifest(work)["segments"]}
    present = {p.name for p in work.iterdir()} - {MANIFEST_NAME, ".lock"}
    assert present == recorded, present ^ recorded
    assert not [t for t in threading.enumerate() if t.name.startswith("vsr-") and t.is_alive()]


def _snapshot(work: Path) -> dict[str, tuple[int, int]]:
    return {
        s["file"]: ((work / s["file"]).stat().st_ino, (work / s["file"]).stat().st_mtime_ns)
        for s in _manifest(work)["segments"]
    }


def test_segmented_output_equals_an_ordinary_run(clip, tmp_path):
    # crf 0 is lossless in x264, so both files must decode to the very same planes.
    ordinary = tmp_path / "ordinary.mp4"
    seg_out = tmp_path / "segmented.mp4"
    work = default_work_dir(seg_out)
    seen: list[dict] = []

    def progress(n: int) -> None:  # at the last frame the manifest holds the earlier ones
        if (work / MANIFEST_NAME).exists():
            seen[:] = [_manifest(work)]

    run(_cfg(clip, ordinary, crf=0))
    report = run_segmented(_cfg(clip, seg_out, crf=0), segment_seconds=0.5, progress=progress)

    assert report.segments == 6 and report.resumed_segments == 0
    assert report.frames_in == report.frames_out == 90
    tb_a, pts_a, planes_a, size_a = _video(ordinary)
    tb_b, pts_b, planes_b, size_b = _video(seg_out)
    assert (tb_a, pts_a, size_a) == (tb_b, pts_b, size_b) == (tb_a, _video(clip)[1], (128, 96))
    assert len(planes_b) == 90
    assert all(np.array_equal(a, b) for a, b in zip(planes_a, planes_b, strict=True))
    assert _audio(seg_out) == _audio(ordinary) == _audio(clip)
    assert packets(seg_out, "audio") == packets(clip, "audio")
    # the work directory is gone, nothing else was left next to the output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ordinary.mp4", "segmented.mp4"]

    # the manifest: the input's identity, the parameter hash, the segments
    manifest = seen[0]
    ident = manifest["input"]
    assert ident["path"] == str(clip.resolve()) and ident["size"] == clip.stat().st_size
    assert ident["mtime_ns"] == clip.stat().st_mtime_ns and len(manifest["params"]) == 64
    segs = manifest["segments"]
    assert [s["index"] for s in segs] == list(range(5))  # the 6th was being written
    assert [(s["first_frame"], s["last_frame"], s["frames"]) for s in segs] == [
        (i * 15, i * 15 + 14, 15) for i in range(5)
    ]
    assert [s["first_pts"] for s in segs] == [i * 7680 for i in range(5)]  # 1/15360 s
    # in the joined output every segment starts on a keyframe
    with av.open(str(seg_out)) as c:
        keys = {p.pts for p in c.demux(c.streams.video[0]) if p.size and p.is_keyframe}
    assert {i * 7680 for i in range(6)} <= keys


@pytest.mark.slow
def test_sigkill_then_resume_continues_where_it_stopped(tmp_path):
    src = make_sample_clip(
        tmp_path / "long.mp4", width=64, height=48, frames=120, rate=Fraction(30)
    )
    out = tmp_path / "long_x2.mp4"
    work = default_work_dir(out)
    args = [sys.executable, "-m", "vsr", "run", str(src), "-o", str(out), "-m", "bicubic"]
    args += ["-x", "2", "--device", "cpu", "--resume", "--segment-seconds", "0.5", "--json"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if len(_manifest(work)["segments"]) >= 2:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.02)
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    recorded = _manifest(work)["segments"]
    kept = sum(s["frames"] for s in recorded)
    assert len(recorded) >= 2 and kept < 120

    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["resumed_segments"] == len(recorded) and report["resumed_frames"] == kept
    assert report["frames_in"] == report["frames_out"] == 120
    assert _video(out)[1] == _video(src)[1]  # every frame, exact pts, none twice
    assert _audio(out) == _audio(src)
    assert not work.exists()


def test_a_failed_segment_leaves_no_output_no_partial_and_resume_keeps_the_rest(
    clip, tmp_path, caplog
):
    out = tmp_path / "f.mp4"
    work = default_work_dir(out)
    with fault_in("writer"), pytest.raises(StageError) as err:
        run_segmented(_cfg(clip, out), segment_seconds=0.5)
    assert err.value.stage == "writer" and "injected" in err.value.one_line()
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if ".vsr-tmp" in p.name]
    _check_work_dir_clean(work)
    recorded = _manifest(work)["segments"]
    assert len(recorded) == 1 and recorded[0]["frames"] == 15  # the second one was dropped

    before = _snapshot(work)
    during: list[dict[str, tuple[int, int]]] = []

    def progress(n: int) -> None:  # the recorded segments are never rewritten
        during.append({k: v for k, v in _snapshot(work).items() if k in before})

    caplog.set_level(logging.INFO, logger="vsr")
    report = run_segmented(_cfg(clip, out), segment_seconds=0.5, progress=progress)
    assert during and all(snap == before for snap in during)
    assert "resuming after 1 segment(s) (15 frames)" in caplog.text
    assert "decoding from the start" not in caplog.text  # the seek found frame 14 exactly
    assert report.resumed_segments == 1 and report.resumed_frames == 15
    assert report.segments == 6 and report.frames_out == 90
    assert _video(out)[1] == _video(clip)[1]
    assert _audio(out) == _audio(clip)
    assert not work.exists()


@pytest.mark.parametrize("stage", ["reader", "model"])
def test_a_fault_before_any_segment_leaves_nothing_to_resume(clip, tmp_path, stage):
    out = tmp_path / "f.mp4"
    with fault_in(stage), pytest.raises(StageError) as err:
        run_segmented(_cfg(clip, out), segment_seconds=0.5)
    assert err.value.stage == stage
    assert not out.exists()
    assert not default_work_dir(out).exists()  # nothing finished: nothing to keep
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_corrupt_input_fails_without_output_or_work_dir(tmp_path):
    from vsr.media.sample import make_corrupt_file

    bad = make_corrupt_file(tmp_path / "bad.mp4")
    out = tmp_path / "bad_x2.mp4"
    with pytest.raises(MediaError):
        run_segmented(_cfg(bad, out), segment_seconds=0.5)
    assert not out.exists() and not default_work_dir(out).exists()


def test_changed_parameters_or_input_start_over(short, tmp_path, caplog):
    src = tmp_path / "c.mp4"
    src.write_bytes(short.read_bytes())
    out = tmp_path / "c_out.mp4"
    work = default_work_dir(out)
    with fault_in("writer"), pytest.raises(StageError):
        run_segmented(_cfg(src, out), segment_seconds=0.25)
    old = _manifest(work)
    assert len(old["segments"]) == 1

    caplog.set_level(logging.INFO, logger="vsr")
    report = run_segmented(_cfg(src, out, scale=3), segment_seconds=0.25)  # -x 3, not 2
    assert "parameters changed" in caplog.text and "starting over" in caplog.text
    assert report.resumed_segments == 0 and report.segments == 4
    assert report.output_size == (192, 144) and _video(out)[3] == (192, 144)
    assert _video(out)[1] == _video(short)[1]

    # the input changed (new mtime) under an existing manifest: starts over too
    with fault_in("writer"), pytest.raises(StageError):
        run_segmented(_cfg(src, out, overwrite=True), segment_seconds=0.25)
    os.utime(src, ns=(time.time_ns(), time.time_ns() + 10**9))
    caplog.clear()
    report = run_segmented(_cfg(src, out, overwrite=True), segment_seconds=0.25)
    assert "the input changed" in caplog.text
    assert report.resumed_segments == 0 and report.frames_out == 30


def test_a_failed_join_is_redone_without_upscaling_again(short, tmp_path, monkeypatch):
    out = tmp_path / "j.mkv"  # Matroska output: MP4 segments, stream copy into mkv
    work = default_work_dir(out)
    real_join = segments.join_segments

    def broken_join(*args: object) -> tuple[int, int]:
        raise MediaError("join failed on purpose")

    monkeypatch.setattr(segments, "join_segments", broken_join)
    with pytest.raises(MediaError):
        run_segmented(_cfg(short, out), segment_seconds=0.25)
    manifest = _manifest(work)
    assert manifest["complete"] and sum(s["frames"] for s in manifest["segments"]) == 30
    assert not out.exists()

    monkeypatch.setattr(segments, "join_segments", real_join)
    report = run_segmented(_cfg(short, out), segment_seconds=0.25)
    assert report.resumed_segments == report.segments == 4 and report.stages == {}
    ordinary = tmp_path / "ordinary.mkv"
    run(_cfg(short, ordinary))
    assert _video(out)[0] == _video(ordinary)[0] == Fraction(1, 1000)
    assert _video(out)[1] == _video(ordinary)[1] and len(_video(out)[1]) == 30
    assert _audio(out) == _audio(ordinary)
    assert not work.exists()


def test_tags_subtitles_and_rotation_match_an_ordinary_run(tmp_path):
    color = ColorInfo(matrix="bt709", range="pc", primaries="bt709", transfer="bt709")
    src = make_sample_clip(
        tmp_path / "tagged.mkv",
        width=64,
        height=48,
        frames=30,
        rate=Fraction(30),
        subtitles=True,
        rotation=90,
        color=color,
    )
    ordinary, seg_out = tmp_path / "o.mkv", tmp_path / "s.mkv"
    run(_cfg(src, ordinary))
    run_segmented(_cfg(src, seg_out), segment_seconds=0.25)
    a, b = probe(ordinary), probe(seg_out)
    assert b.video.color == a.video.color == probe(src).video.color
    assert b.video.rotation == a.video.rotation == 90
    assert (b.video.width, b.video.height, b.video.time_base) == (
        a.video.width,
        a.video.height,
        a.video.time_base,
    )
    assert _video(seg_out)[1] == _video(ordinary)[1]
    assert packets(seg_out, "subtitle") == packets(ordinary, "subtitle")
    assert len(packets(seg_out, "subtitle")[0]) > 0
    assert packets(seg_out, "audio") == packets(ordinary, "audio")


@pytest.mark.slow
def test_ctrl_c_keeps_finished_segments_and_exits_130(tmp_path):
    src = make_sample_clip(
        tmp_path / "long.mp4", width=64, height=48, frames=120, rate=Fraction(30)
    )
    out = tmp_path / "o.mp4"
    work = default_work_dir(out)
    args = [sys.executable, "-m", "vsr", "run", str(src), "-o", str(out), "-m", "bicubic"]
    args += ["-x", "2", "--device", "cpu", "--resume", "--segment-seconds", "0.5"]
    proc = subprocess.Popen(
        args,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if len(_manifest(work)["segments"]) >= 1:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert stderr.strip().splitlines()[-1] == "vsr: interrupted"
    assert not out.exists()
    _check_work_dir_clean(work)
    assert len(_manifest(work)["segments"]) >= 1


def test_variable_frame_rate_keeps_every_timestamp(tmp_path):
    src = make_sample_clip(
        tmp_path / "vfr.mp4", width=64, height=48, frames=40, rate=Fraction(30), vfr=True
    )
    ordinary, seg_out = tmp_path / "o.mp4", tmp_path / "s.mp4"
    run(_cfg(src, ordinary))
    report = run_segmented(_cfg(src, seg_out), segment_seconds=0.2)
    assert report.segments >= 4
    pts = _video(seg_out)[1]
    assert pts == _video(ordinary)[1] == _video(src)[1] and len(pts) == 40
    assert len(set(np.diff(pts))) == 2  # durations alternate: really variable
