"""End to end: ``vsr run`` keeps every frame, its timestamp, the audio and the colours.

These check the invariants of DESIGN.md section 5 on generated clips (and on the real clip
in ../shared/data when it is there).
"""

from __future__ import annotations

import json
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
from vsr.errors import StageError
from vsr.media.probe import probe
from vsr.pipeline.engine import run


def _video_pts(path: Path) -> list[Fraction]:
    """Presentation times (seconds, exact) of every video frame, in display order."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return sorted(Fraction(f.pts) * s.time_base for f in c.decode(s))


def _first_frame_y(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        frame = next(c.decode(video=0))
        return frame.to_ndarray(format="gray")


def _no_leftovers(folder: Path) -> None:
    assert not [p for p in folder.iterdir() if ".vsr-tmp" in p.name]
    assert not [t for t in threading.enumerate() if t.name.startswith("vsr-") and t.is_alive()]


def _run(src: Path, out: Path, **kw) -> object:
    cfg = RunConfig.from_values(dict(input=src, output=out, quiet=True, **kw))
    return run(cfg)


def _check_same_timing(src: Path, out: Path) -> None:
    a, b = _video_pts(src), _video_pts(out)
    assert len(a) == len(b)
    # same container: exact; the time base may be refined, but never rounded
    assert [t - a[0] for t in a] == [t - b[0] for t in b]


@pytest.mark.parametrize("model,scale", [("bicubic", 2), ("nearest", 3), ("lanczos", 2)])
def test_frames_timestamps_audio_and_size_survive(clip_mp4, tmp_path, model, scale):
    out = tmp_path / "out.mp4"
    report = _run(clip_mp4, out, model=model, scale=scale)
    info_in, info_out = probe(clip_mp4), probe(out)
    assert report.frames_in == report.frames_out == info_in.video.frame_count
    assert (info_out.video.width, info_out.video.height) == (
        info_in.video.width * scale,
        info_in.video.height * scale,
    )
    _check_same_timing(clip_mp4, out)
    assert packets(out, "audio") == packets(clip_mp4, "audio")
    _no_leftovers(tmp_path)


def test_shipped_espcn_and_fsrcnn_weights_run(clip_mp4, tmp_path):
    for model, scale in (("espcn", 3), ("fsrcnn", 2)):
        out = tmp_path / f"{model}.mp4"
        report = _run(clip_mp4, out, model=model, scale=scale)
        assert report.weights == "built-in"
        assert report.frames_out == probe(clip_mp4).video.frame_count
        assert probe(out).video.width == probe(clip_mp4).video.width * scale


def test_variable_frame_rate_survives(clip_vfr, tmp_path):
    out = tmp_path / "vfr.mp4"
    _run(clip_vfr, out, model="nearest", scale=2)
    a = _video_pts(clip_vfr)
    steps = {b - a for a, b in zip(a, a[1:], strict=False)}
    assert len(steps) > 1  # the fixture really is VFR
    _check_same_timing(clip_vfr, out)


def test_no_audio(clip_no_audio, tmp_path):
    out = tmp_path / "na.mp4"
    _run(clip_no_audio, out, model="bicubic", scale=2)
    assert probe(out).audio == ()
    _check_same_timing(clip_no_audio, out)


def test_no_audio_flag_drops_audio(clip_mp4, tmp_path):
    out = tmp_path / "drop.mp4"
    _run(clip_mp4, out, model="bicubic", scale=2, audio=False)
    assert probe(out).audio == ()


def test_two_audio_tracks_and_subtitles_in_mkv(clip_mkv_subs, tmp_path):
    out = tmp_path / "subs.mkv"
    _run(clip_mkv_subs, out, model="bicubic", scale=2)
    info = probe(out)
    assert len(info.audio) == 2 and len(info.subtitles) == 1
    assert packets(out, "audio") == packets(clip_mkv_subs, "audio")
    assert packets(out, "subtitle") == packets(clip_mkv_subs, "subtitle")
    _check_same_timing(clip_mkv_subs, out)


def test_two_audio_tracks_in_mp4(clip_two_audio, tmp_path):
    out = tmp_path / "two.mp4"
    _run(clip_two_audio, out, model="nearest", scale=2)
    assert packets(out, "audio") == packets(clip_two_audio, "audio")
    assert len(packets(out, "audio")) == 2


def test_odd_size_follows_the_even_rule(clip_odd, tmp_path):
    out = tmp_path / "odd.mkv"
    report = _run(clip_odd, out, model="bicubic", scale=3, codec="libx264")
    info = probe(out)
    assert (info.video.width, info.video.height) == (962, 722)  # 963x723 cropped to even
    assert report.output_size == (962, 722)
    assert report.frames_out == len(_video_pts(clip_odd)) == len(_video_pts(out))


def test_ten_bit_stays_ten_bit(clip_10bit, tmp_path):
    out = tmp_path / "10.mp4"
    _run(clip_10bit, out, model="bicubic", scale=2)
    assert probe(out).video.bit_depth == 10
    _check_same_timing(clip_10bit, out)


def test_rotation_tag_is_carried(clip_rotated, tmp_path):
    out = tmp_path / "rot.mp4"
    _run(clip_rotated, out, model="nearest", scale=2)
    assert probe(clip_rotated).video.rotation == 90
    assert probe(out).video.rotation == 90


def test_bt709_full_range_tags_are_carried_and_levels_kept(clip_bt709_full, tmp_path):
    out = tmp_path / "709.mp4"
    _run(clip_bt709_full, out, model="nearest", scale=2, crf=0)
    src, dst = probe(clip_bt709_full).video.color, probe(out).video.color
    assert dst == src and dst.matrix == "bt709" and dst.range == "pc"
    # full range stays full range: the output uses the same luma levels
    y_in = _first_frame_y(clip_bt709_full).astype(float)
    y_out = _first_frame_y(out).astype(float)[::2, ::2]
    assert abs(y_in.mean() - y_out.mean()) < 1.0


def test_webm_vp9_opus(clip_webm, tmp_path):
    out = tmp_path / "out.webm"
    _run(clip_webm, out, model="bicubic", scale=2, codec="libvpx-vp9")
    info = probe(out)
    assert info.video.codec == "vp9" and info.audio[0].codec == "opus"
    assert packets(out, "audio") == packets(clip_webm, "audio")
    _check_same_timing(clip_webm, out)


def test_truncated_file_writes_every_decodable_frame(clip_truncated, tmp_path, caplog):
    out = tmp_path / "trunc.mkv"
    with av.open(str(clip_truncated)) as c:
        decodable = sum(1 for _ in c.decode(video=0))
    with caplog.at_level("WARNING", logger="vsr"):
        report = _run(clip_truncated, out, model="nearest", scale=2)
    assert 0 < decodable < 40
    assert report.frames_out == decodable
    assert len(_video_pts(out)) == decodable
    assert any(
        "truncat" in r.getMessage().lower() or "lost" in r.getMessage().lower()
        for r in caplog.records
    )


def test_grey_ramp_stays_grey(tmp_path):
    """A grey ramp through a luma model and back: chroma stays neutral, levels kept."""
    from vsr.media.frame import Frame
    from vsr.media.writer import Writer

    src = tmp_path / "ramp.mkv"
    from vsr.media.sample import make_sample_clip

    base = make_sample_clip(tmp_path / "base.mkv", width=64, height=48, frames=2, audio=False)
    info = probe(base)
    ramp = np.tile(np.linspace(16, 235, 64).round().astype(np.uint8), (48, 1))
    grey = np.full((24, 32), 128, np.uint8)
    with Writer(
        output=src,
        source=info,
        source_path=base,
        width=64,
        height=48,
        codec="libx264",
        crf=0,
        audio=False,
    ) as w:
        for i in range(4):
            w.write_frame(Frame(i, i, Fraction(1, 24), (ramp, grey, grey), "yuv420p"))
    out = tmp_path / "ramp_x2.mkv"
    _run(src, out, model="espcn", scale=2, crf=0)
    with av.open(str(out)) as c:
        f = next(c.decode(video=0))
        u = f.planes[1]
        arr = np.frombuffer(u, np.uint8).reshape(u.height, u.line_size)[:, : u.width]
    assert np.abs(arr.astype(int) - 128).max() <= 1


@pytest.mark.slow
def test_corrupt_input_fails_with_exit_1_and_no_output(clip_corrupt, tmp_path):
    out = tmp_path / "x.mp4"
    proc = _cli("run", str(clip_corrupt), "-o", str(out), "-m", "bicubic", "-x", "2")
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1 and "error" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()
    _no_leftovers(tmp_path)


@pytest.mark.parametrize("stage", ["reader", "model", "writer"])
def test_a_fault_in_each_stage_surfaces_without_leftovers(clip_mp4, tmp_path, stage):
    out = tmp_path / "f.mp4"
    t0 = time.monotonic()
    cfg = RunConfig.from_values(
        dict(input=clip_mp4, output=out, model="bicubic", scale=2, batch_size=2)
    )
    with fault_in(stage), pytest.raises(StageError) as err:
        run(cfg)
    assert time.monotonic() - t0 < 30
    assert err.value.stage == stage and "injected" in err.value.one_line()
    assert not out.exists()
    _no_leftovers(tmp_path)


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vsr", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.slow
def test_usage_errors_exit_2_with_one_line(clip_mp4, tmp_path):
    cases = [
        ("run", str(tmp_path / "missing.mp4")),
        ("run", str(clip_mp4), "-m", "nosuchnet", "-o", str(tmp_path / "a.mp4")),
        ("run", str(clip_mp4), "-o", str(clip_mp4)),
        ("run", str(clip_mp4), "-m", "espcn", "-x", "7", "-o", str(tmp_path / "b.mp4")),
    ]
    for args in cases:
        proc = _cli(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "Traceback" not in proc.stderr
    existing = tmp_path / "exists.mp4"
    existing.write_bytes(b"keep")
    proc = _cli("run", str(clip_mp4), "-o", str(existing), "-m", "bicubic", "-x", "2")
    assert proc.returncode == 2 and "--overwrite" in proc.stderr
    assert existing.read_bytes() == b"keep"
    proc = _cli("run", str(clip_mp4), "--bogus-flag")
    assert proc.returncode == 2


@pytest.mark.slow
def test_cli_default_output_name_and_json_report(clip_mp4, tmp_path):
    src = tmp_path / "clip.mp4"
    src.write_bytes(clip_mp4.read_bytes())
    proc = _cli("run", str(src), "-m", "bicubic", "-x", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    expected = tmp_path / "clip_bicubic_x2.mp4"
    assert report["output"] == str(expected) and expected.exists()
    assert report["frames_in"] == report["frames_out"] == probe(src).video.frame_count
    assert report["bottleneck"] in {"reader", "model", "writer"}
    assert set(report["stages"]) == {"reader", "model", "writer"}


@pytest.mark.slow
def test_config_file_is_read_and_flags_override_it(clip_mp4, tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text('[run]\nmodel = "nearest"\nscale = 2\ncrf = 30\n')
    out = tmp_path / "c.mp4"
    proc = _cli("run", str(clip_mp4), "-o", str(out), "--config", str(cfg), "-x", "3", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["model"] == "nearest" and report["scale"] == 3
    bad = tmp_path / "bad.toml"
    bad.write_text("modle = 'x'\n")
    proc = _cli("run", str(clip_mp4), "--config", str(bad))
    assert proc.returncode == 2 and "modle" in proc.stderr


@pytest.mark.slow
def test_ctrl_c_exits_130_quickly_and_leaves_nothing(tmp_path):
    from vsr.media.sample import make_sample_clip

    src = make_sample_clip(tmp_path / "long.mp4", width=160, height=120, frames=240)
    out = tmp_path / "long_x4.mp4"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vsr",
            "run",
            str(src),
            "-o",
            str(out),
            "-m",
            "lanczos",
            "-x",
            "4",
            "--batch-size",
            "1",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        # A shell starts background jobs with SIGINT ignored, and children inherit that:
        # give the run the default disposition, as in a terminal.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until the writer has created its temp file
        if any(".vsr-tmp" in p.name for p in tmp_path.iterdir()):
            break
        time.sleep(0.05)
    time.sleep(0.5)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=10)
    assert time.monotonic() - t0 < 5
    assert proc.returncode == 130
    assert not out.exists()
    _no_leftovers(tmp_path)


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_video_length(tmp_path):
    from vsr.media.sample import make_sample_clip

    code = (
        "import resource, sys\n"
        "from pathlib import Path\n"
        "from vsr.config import RunConfig\n"
        "from vsr.pipeline.engine import run\n"
        "run(RunConfig.from_values(dict(input=Path(sys.argv[1]), output=Path(sys.argv[2]),"
        " model='bicubic', scale=2, quiet=True)))\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    peaks = []
    for n in (40, 320):
        src = make_sample_clip(tmp_path / f"m{n}.mp4", width=320, height=240, frames=n)
        proc = subprocess.run(
            [sys.executable, "-c", code, str(src), str(tmp_path / f"o{n}.mp4")],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        peaks.append(int(proc.stdout.split()[-1]) / 1024)  # MiB
    # 8x the frames; the output frames alone would be 230 KiB each if they piled up
    assert peaks[1] - peaks[0] < 25, peaks


def _real_clip(shared_data: Path | None, tmp_path: Path) -> Path:
    if shared_data is not None and (shared_data / "video" / "rabbit320.mp4").exists():
        return shared_data / "video" / "rabbit320.mp4"
    from vsr.media.sample import make_sample_clip

    return make_sample_clip(
        tmp_path / "fallback.mp4", width=320, height=240, frames=60, rate=Fraction(30)
    )


@pytest.mark.slow
@pytest.mark.parametrize("model,scale", [("espcn", 3), ("fsrcnn", 2), ("bicubic", 4)])
def test_real_clip_acceptance(shared_data, tmp_path, model, scale):
    """The issue's acceptance runs: every frame, its timestamp, byte-identical audio."""
    src = _real_clip(shared_data, tmp_path)
    out = tmp_path / "out.mp4"
    report = _run(src, out, model=model, scale=scale, preset="ultrafast")
    info_in, info_out = probe(src), probe(out)
    assert (info_out.video.width, info_out.video.height) == (
        info_in.video.width * scale,
        info_in.video.height * scale,
    )
    assert report.frames_out == info_in.video.frame_count
    assert _video_pts(out) == _video_pts(src)
    assert packets(out, "audio") == packets(src, "audio")


@pytest.mark.parametrize(
    "codec,ext,expected",
    [("libx265", ".mp4", "hevc"), ("libsvtav1", ".mkv", "av1"), ("libvpx-vp9", ".mkv", "vp9")],
)
def test_other_encoders(clip_mp4, tmp_path, codec, ext, expected):
    from vsr.media.codecs import encoder_available

    if not encoder_available(codec):
        pytest.skip(f"this PyAV build has no {codec}")
    out = tmp_path / f"out{ext}"
    report = _run(clip_mp4, out, model="bicubic", scale=2, codec=codec)
    assert probe(out).video.codec == expected
    assert report.frames_out == len(_video_pts(out)) == probe(clip_mp4).video.frame_count
    assert packets(out, "audio") == packets(clip_mp4, "audio")


@pytest.mark.slow
def test_unknown_encoder_is_a_clean_error(clip_mp4, tmp_path):
    out = tmp_path / "x.mp4"
    proc = _cli(
        "run", str(clip_mp4), "-o", str(out), "-m", "bicubic", "-x", "2", "--codec", "nosuchcodec"
    )
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "nosuchcodec" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


@pytest.mark.slow
def test_demo_makes_a_sample_with_audio_and_upscales_it(tmp_path):
    """The README's main job: ``vsr demo`` (sample clip, ESPCN x3, prints the result)."""
    proc = _cli("demo", "--out-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    out = Path(proc.stdout.strip().splitlines()[-1].split(": ", 1)[1])
    sample = tmp_path / "sample.mp4"
    assert out.exists() and out.parent == tmp_path
    src, dst = probe(sample), probe(out)
    assert len(src.audio) == 1 and packets(out, "audio") == packets(sample, "audio")
    assert (dst.video.width, dst.video.height) == (src.video.width * 3, src.video.height * 3)
    assert len(_video_pts(out)) == src.video.frame_count
