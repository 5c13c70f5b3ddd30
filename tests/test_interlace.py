"""Interlaced sources are deinterlaced before the model (``--deinterlace``, FFmpeg's bwdif or
yadif, one frame per frame, every frame keeping its pts); progressive ones are untouched.

The clips are made here: tiny interlaced H.264 (x264 with ``+ilme+ildct``, frames flagged
top field first, so the stream's field order is ``tt``) with AAC audio.
"""

from __future__ import annotations

import json
import logging
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from faults import fault_in
from inline_engine import InlineEngine
from media_checks import mux_mono_audio
from typer.testing import CliRunner

from vsr.batch.engine import run_batch
from vsr.batch.jobs import JobResult, JobSpec
from vsr.batch.options import BatchConfig
from vsr.cli import app
from vsr.config import VIDEO_FIELDS, RunConfig
from vsr.errors import StageError, UsageError
from vsr.media import deinterlace as deinterlace_module
from vsr.media.decode import Packet, frame_from_av
from vsr.media.deinterlace import Deinterlacer, choose_filter, describe
from vsr.media.frame import Frame
from vsr.media.probe import probe
from vsr.media.reader import Reader
from vsr.media.sample import make_sample_clip
from vsr.pipeline.engine import run
from vsr.pipeline.manifest import default_work_dir
from vsr.pipeline.segments import run_segmented

W, H = 64, 48
FAST = {"model": "bicubic", "scale": 2, "device": "cpu"}
CLI_FAST = ["-m", "bicubic", "-x", "2", "--device", "cpu"]


# -- the clips -------------------------------------------------------------------------------


def _field_frame(i: int) -> np.ndarray:
    """A yuv420p frame whose two fields were taken half a frame apart: a bright bar that
    moves 4 lines per field (combing that a deinterlacer must remove)."""
    y = np.full((H, W), 40, np.uint8)
    for parity in (0, 1):  # top field (even lines) first, then the bottom field
        top = (8 * i + 4 * parity) % (H - 8)
        rows = np.arange(H)
        band = (rows >= top) & (rows < top + 8) & (rows % 2 == parity)
        y[band] = 220
    y[:, : 2 + i] += 5  # every frame differs a little
    chroma = np.full((H // 2, W), 128, np.uint8)
    return np.vstack([y, chroma])


def make_interlaced(
    path: Path, *, frames: int = 10, rate: int = 25, gop: int = 250, audio: bool = True
) -> Path:
    """Interlaced H.264 in ``path`` (MP4/MKV): MBAFF from x264, every frame flagged top
    field first (``setfield=tff``), field order ``tt``; mono AAC over the same time."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=rate)
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        ctx = video.codec_context
        ctx.flags |= av.codec.context.Flags.interlaced_dct | av.codec.context.Flags.interlaced_me
        ctx.field_order = 2  # AV_FIELD_TT
        ctx.gop_size = gop
        ctx.options = {"preset": "ultrafast", "crf": "18"}
        sound = None
        if audio:
            sound = out.add_stream("aac", rate=48000)
            sound.layout = "mono"
        graph = av.filter.Graph()
        src = graph.add_buffer(width=W, height=H, format="yuv420p", time_base=Fraction(1, rate))
        graph.link_nodes(src, graph.add("setfield", "tff"), graph.add("buffersink")).configure()
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(_field_frame(i), format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, rate)
            graph.push(frame)
            for packet in video.encode(graph.pull()):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        if sound is not None:
            total = 48000 * frames // rate
            t = np.arange(total, dtype=np.float32) / 48000
            samples = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            mux_mono_audio(out, sound, samples)
    return path


@pytest.fixture(scope="module")
def interlaced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_interlaced(tmp_path_factory.mktemp("interlaced") / "tt.mp4")


@pytest.fixture(scope="module")
def progressive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("progressive")
    return make_sample_clip(folder / "p.mp4", width=W, height=H, frames=10, rate=Fraction(25))


# -- helpers ---------------------------------------------------------------------------------


def _decoded(path: Path) -> tuple[int, list[int], list[bool], list[np.ndarray]]:
    """The stream's field order (FFmpeg's number), every frame's pts, interlaced flag and
    luma, in display order."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = list(c.decode(s))
        return (
            s.codec_context.field_order,
            [f.pts for f in frames],
            [f.interlaced_frame for f in frames],
            [f.to_ndarray()[: f.height] for f in frames],  # yuv420p: Y as decoded
        )


def _has_audio(path: Path) -> bool:
    with av.open(str(path)) as c:
        return len(c.streams.audio) == 1


def _cfg(src: Path, out: Path, **kw: Any) -> RunConfig:
    return RunConfig.from_values({"input": src, "output": out, "quiet": True, **FAST, **kw})


def _check_progressive(out: Path, src: Path, frames: int) -> None:
    order, pts, flagged, _ = _decoded(out)
    assert order == 1  # AV_FIELD_PROGRESSIVE
    assert not any(flagged)
    assert len(pts) == frames
    assert pts == _decoded(src)[1]  # every frame kept its own time (same time base)
    assert _has_audio(out)


# -- policy ----------------------------------------------------------------------------------


def test_policy_table() -> None:
    assert choose_filter("auto", "tt") == "bwdif"
    assert choose_filter("auto", "interlaced") == "bwdif"
    assert choose_filter("auto", "progressive") is None
    assert choose_filter("auto", None) is None
    assert choose_filter("off", "bb") is None
    assert choose_filter("yadif", "progressive") == "yadif"
    expected = "tt input deinterlaced with bwdif (one frame per frame, pts kept)"
    assert describe("auto", "tt") == expected
    assert describe("off", "bb").startswith("bb input not deinterlaced")
    assert describe("auto", "progressive") == "progressive input"
    assert "--deinterlace yadif" in describe("yadif", "progressive")
    with pytest.raises(UsageError):
        choose_filter("weave", "tt")
    with pytest.raises(UsageError):
        RunConfig(input=Path("x.mp4"), deinterlace="weave")
    assert "deinterlace" in VIDEO_FIELDS


def test_probe_tells_the_field_order(interlaced: Path, progressive: Path) -> None:
    assert probe(interlaced).video.field_order == "tt"
    assert probe(progressive).video.field_order in ("progressive", None)


def test_reader_deinterlaces_one_frame_per_frame_keeping_pts(interlaced: Path) -> None:
    _, src_pts, flagged, raw = _decoded(interlaced)
    assert all(flagged) and len(src_pts) == 10
    with Reader(interlaced) as reader:
        items = list(reader.items())
    frames = [f for f in items if isinstance(f, Frame)]
    assert [f.index for f in frames] == list(range(10))
    assert [f.pts for f in frames] == src_pts
    assert any(isinstance(i, Packet) for i in items)  # the audio still comes
    # the combing is gone: the frames are not the decoded ones
    changed = [not np.array_equal(f.planes[0], r) for f, r in zip(frames, raw, strict=True)]
    assert sum(changed) >= 8

    with Reader(interlaced, deinterlace="off") as reader:
        off = list(reader.frames())
    assert [f.pts for f in off] == src_pts
    assert all(np.array_equal(f.planes[0], r) for f, r in zip(off, raw, strict=True))

    with Reader(interlaced, deinterlace="yadif") as reader:
        yadif = list(reader.frames())
    assert [f.pts for f in yadif] == src_pts
    assert any(
        not np.array_equal(a.planes[0], b.planes[0]) for a, b in zip(yadif, frames, strict=True)
    )


def test_progressive_input_gets_no_filter(progressive: Path, monkeypatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a deinterlacer was made for progressive input")

    monkeypatch.setattr("vsr.media.reader.Deinterlacer", refuse)
    with av.open(str(progressive)) as c:
        s = c.streams.video[0]
        raw = [frame_from_av(f, index=0, pts=f.pts, time_base=s.time_base) for f in c.decode(s)]
    with Reader(progressive) as reader:
        frames = list(reader.frames())
    assert len(frames) == len(raw) == 10
    assert all(
        np.array_equal(a.planes[k], b.planes[k])
        for a, b in zip(frames, raw, strict=True)
        for k in range(3)
    )


def test_deinterlacer_counts_and_flush(interlaced: Path) -> None:
    with av.open(str(interlaced)) as c:
        decoded = list(c.decode(video=0))
    deint = Deinterlacer("bwdif", every_frame=None, field_order="tt")
    released = []
    for i, frame in enumerate(decoded):
        released += deint.push(frame, i)
    assert [tag for _, tag in released] == list(range(9))  # one frame late
    released += deint.flush()
    assert [tag for _, tag in released] == list(range(10))
    assert deint.frames_in == deint.frames_out == 10
    assert all(not f.interlaced_frame for f, _ in released)
    assert deinterlace_module.FILTERS == ("bwdif", "yadif")


# -- vsr run, vsr run --resume, vsr batch ----------------------------------------------------


@pytest.mark.slow
def test_run_cli_deinterlaces_and_reports_it(interlaced: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    res = CliRunner().invoke(app, ["run", str(interlaced), "-o", str(out), *CLI_FAST, "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["frames_in"] == report["frames_out"] == 10
    decisions = report["fidelity"]["decisions"]
    assert decisions["interlacing"] == (
        "tt input deinterlaced with bwdif (one frame per frame, pts kept)"
    )
    _check_progressive(out, interlaced, 10)

    bad = CliRunner().invoke(app, ["run", str(interlaced), "--deinterlace", "weave"])
    assert bad.exit_code == 2


@pytest.mark.slow
def test_deinterlace_off_keeps_the_old_behaviour(interlaced: Path, tmp_path: Path) -> None:
    auto = run(_cfg(interlaced, tmp_path / "auto.mp4", crf=0))
    off = run(_cfg(interlaced, tmp_path / "off.mp4", crf=0, deinterlace="off"))
    assert off.fidelity["decisions"]["interlacing"].startswith("tt input not deinterlaced")
    assert auto.frames_out == off.frames_out == 10
    _, pts_off, _, planes_off = _decoded(tmp_path / "off.mp4")
    _, pts_auto, _, planes_auto = _decoded(tmp_path / "auto.mp4")
    assert pts_off == pts_auto == _decoded(interlaced)[1]
    assert sum(not np.array_equal(a, b) for a, b in zip(planes_off, planes_auto, strict=True)) >= 8


@pytest.mark.slow
def test_progressive_run_is_untouched(progressive: Path, tmp_path: Path, monkeypatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a deinterlacer was made for progressive input")

    monkeypatch.setattr("vsr.media.reader.Deinterlacer", refuse)
    out = tmp_path / "p.mp4"
    report = run(_cfg(progressive, out))
    assert report.fidelity["decisions"]["interlacing"] == "progressive input"
    _check_progressive(out, progressive, 10)


@pytest.mark.slow
def test_resume_deinterlaces_like_an_ordinary_run(tmp_path: Path, caplog) -> None:
    # 20 frames, a keyframe every 5; segments of 10 frames; the writer fails in the second
    # segment; the resumed run seeks, and its first frame must come from the same
    # neighbours as in a run from the start (crf 0: both decode to the same planes).
    src = make_interlaced(tmp_path / "long.mp4", frames=20, gop=5)
    ordinary, out = tmp_path / "ordinary.mp4", tmp_path / "seg.mp4"
    run(_cfg(src, ordinary, crf=0))
    with fault_in("writer"), pytest.raises(StageError):
        run_segmented(_cfg(src, out, crf=0), segment_seconds=0.4)
    assert default_work_dir(out).exists()
    caplog.set_level(logging.INFO, logger="vsr")
    report = run_segmented(_cfg(src, out, crf=0), segment_seconds=0.4)
    assert "decoding from the start" not in caplog.text  # the seek found the frame
    assert report.resumed_segments == 1 and report.frames_out == 20
    assert report.fidelity["decisions"]["interlacing"].startswith("tt input deinterlaced")
    _check_progressive(out, src, 20)
    planes_a, planes_b = _decoded(ordinary)[3], _decoded(out)[3]
    assert all(np.array_equal(a, b) for a, b in zip(planes_a, planes_b, strict=True))


@pytest.mark.slow
def test_a_batch_job_deinterlaces(interlaced: Path, tmp_path: Path, monkeypatch) -> None:
    # the flag reaches the batch's options
    given: list[BatchConfig] = []
    monkeypatch.setattr("vsr.batch.engine.run_batch", lambda cfg: given.append(cfg) or 1 / 0)
    res = CliRunner().invoke(
        app, ["batch", "run", str(interlaced), "--out", str(tmp_path / "x"), "--deinterlace", "off"]
    )
    assert given and given[0].options["deinterlace"] == "off", res.output
    monkeypatch.undo()

    src = tmp_path / "src"
    src.mkdir()
    (src / "tt.mp4").write_bytes(interlaced.read_bytes())
    out = tmp_path / "out"
    seen: list[JobResult] = []

    class Engine(InlineEngine):
        def run(self, specs: list[JobSpec], on_result: Any, on_start: Any) -> None:
            assert all(spec.params["deinterlace"] == "yadif" for spec in specs)
            super().run(specs, lambda r: (seen.append(r), on_result(r)), on_start)

    options = {**FAST, "deinterlace": "yadif"}
    cfg = BatchConfig(inputs=(str(src),), out=out, options=options, progress=False)
    report = run_batch(cfg, engine=Engine())
    assert not report.failed and len(seen) == 1 and seen[0].ok
    assert seen[0].fidelity is not None
    assert seen[0].fidelity["decisions"]["interlacing"] == (
        "tt input deinterlaced with yadif (--deinterlace yadif; one frame per frame, pts kept)"
    )
    _check_progressive(out / "tt.mp4", interlaced, 10)
