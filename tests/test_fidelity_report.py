"""The fidelity report: every input stream and what became of it, in the run summary, in
``--json`` (``vsr run``, ``vsr run --resume``) and in ``vsr batch status --json``; and an
old (version 1) batch ledger upgraded in place."""

from __future__ import annotations

import json
import sqlite3
from fractions import Fraction
from pathlib import Path

import av
import pytest
from typer.testing import CliRunner

from vsr.batch.engine import run_batch
from vsr.batch.ledger import LEDGER_NAME, Ledger
from vsr.batch.options import BatchConfig
from vsr.cli import app
from vsr.config import RunConfig
from vsr.media.fidelity import Fidelity, StreamFate
from vsr.media.sample import make_sample_clip
from vsr.pipeline.engine import run
from vsr.pipeline.segments import run_segmented

FAST = {"model": "bicubic", "scale": 2, "device": "cpu"}


@pytest.fixture(scope="module")
def mkv_two_audio_subs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Matroska: video, two audio tracks (Opus), SubRip subtitles."""
    path = tmp_path_factory.mktemp("fid") / "in.mkv"
    return make_sample_clip(
        path,
        width=64,
        height=48,
        frames=12,
        rate=Fraction(24),
        audio_tracks=2,
        audio_codec="libopus",
        subtitles=True,
    )


def _kinds(fidelity: dict) -> list[tuple[int, str, str]]:
    return [(s["index"], s["kind"], s["fate"]) for s in fidelity["streams"]]


def test_fate_records_replace_and_stay_in_input_order() -> None:
    f = Fidelity()
    f.record(2, "audio", "aac", "copied")
    f.record(0, "video", "h264", "upscaled", "128x96 yuv420p, libx264")
    f.record(2, "audio", "aac", "transcoded", "to opus")
    assert [s.index for s in f.streams] == [0, 2]
    assert f.fate_of(2) == StreamFate(2, "audio", "aac", "transcoded", "to opus")
    assert Fidelity.from_dict(f.to_dict()) == f
    assert f.lines()[0] == "#0 video h264: upscaled (128x96 yuv420p, libx264)"
    with pytest.raises(ValueError):
        f.record(3, "data", None, "lost")


def test_run_reports_every_input_stream_and_the_summary_lists_them(
    mkv_two_audio_subs: Path, tmp_path: Path
) -> None:
    # MP4 output: Opus is copied (MP4 holds it), SubRip is converted to mov_text
    out = tmp_path / "o.mp4"
    report = run(RunConfig.from_values({"input": mkv_two_audio_subs, "output": out, **FAST}))
    assert _kinds(report.fidelity) == [
        (0, "video", "upscaled"),
        (1, "audio", "copied"),
        (2, "audio", "copied"),
        (3, "subtitle", "converted"),
    ]
    sub = report.fidelity["streams"][3]
    assert sub["codec"] == "subrip" and sub["detail"].startswith("to mov_text")
    with av.open(str(out)) as c:  # the report says what the file holds (+ MP4's chapter track)
        assert [s.type for s in c.streams][:4] == ["video", "audio", "audio", "subtitle"]
        assert c.streams.subtitles[0].codec_context.name == "mov_text"
    lines = report.summary().splitlines()  # the headline, the streams, then any decisions
    assert lines[0] == report.headline() and len(lines) == 1 + 4 + len(report.fidelity["decisions"])
    assert [line.strip()[:2] for line in lines[1:5]] == ["#0", "#1", "#2", "#3"]
    assert lines[4].strip() == "#3 subtitle subrip: converted (" + sub["detail"] + ")"


def test_no_audio_is_reported_as_dropped_in_json(mkv_two_audio_subs: Path, tmp_path: Path) -> None:
    out = tmp_path / "n.mkv"
    res = CliRunner().invoke(
        app,
        ["run", str(mkv_two_audio_subs), "-o", str(out), "-m", "bicubic", "-x", "2"]
        + ["--device", "cpu", "--no-audio", "--json"],
    )
    assert res.exit_code == 0, res.output
    fidelity = json.loads(res.stdout)["fidelity"]
    assert _kinds(fidelity) == [
        (0, "video", "upscaled"),
        (1, "audio", "dropped"),
        (2, "audio", "dropped"),
        (3, "subtitle", "copied"),
    ]
    assert fidelity["streams"][1]["detail"] == "--no-audio"


def test_resume_reports_the_joined_file(mkv_two_audio_subs: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.mkv"
    cfg = RunConfig.from_values({"input": mkv_two_audio_subs, "output": out, **FAST})
    report = run_segmented(cfg, segment_seconds=0.25)
    assert report.segments >= 2
    assert _kinds(report.fidelity) == [
        (0, "video", "upscaled"),
        (1, "audio", "copied"),
        (2, "audio", "copied"),
        (3, "subtitle", "copied"),
    ]
    assert "stream copy of the upscaled segments" in report.fidelity["streams"][0]["detail"]


@pytest.mark.slow
def test_batch_status_json_has_each_files_streams(mkv_two_audio_subs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    plain = make_sample_clip(tmp_path / "in" / "a.mp4", width=64, height=48, frames=6)
    (tmp_path / "in" / "b.mkv").write_bytes(mkv_two_audio_subs.read_bytes())
    cfg = BatchConfig(inputs=(str(tmp_path / "in"),), out=out, options=dict(FAST), progress=False)
    report = run_batch(cfg)
    assert report.failed == 0
    res = CliRunner().invoke(app, ["batch", "status", str(out), "--json"])
    assert res.exit_code == 0, res.output
    jobs = {Path(j["input"]).name: j for j in json.loads(res.stdout)["jobs"]}
    assert _kinds(jobs["a.mp4"]["fidelity"]) == [
        (0, "video", "upscaled"),
        (1, "audio", "copied"),
        (2, "chapters", "copied"),  # MP4's chapter track: its chapters become the output's
    ]
    assert [k for _, k, _ in _kinds(jobs["b.mkv"]["fidelity"])] == [
        "video",
        "audio",
        "audio",
        "subtitle",
    ]
    assert plain.exists()


def test_a_version_1_ledger_is_read_and_upgraded(tmp_path: Path) -> None:
    """A ledger written before the fidelity column: status reads it as it is, and the next
    driver adds the column without losing a row."""
    out = tmp_path / "out"
    out.mkdir()
    conn = sqlite3.connect(out / LEDGER_NAME)
    conn.executescript(
        """
        CREATE TABLE jobs (
            key TEXT PRIMARY KEY, input TEXT NOT NULL, size INTEGER, mtime_ns INTEGER,
            fingerprint TEXT, params_hash TEXT, params TEXT,
            state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0, error TEXT,
            permanent INTEGER NOT NULL DEFAULT 0, output TEXT, frames INTEGER,
            started REAL, finished REAL, seconds REAL, updated REAL
        );
        CREATE UNIQUE INDEX jobs_output ON jobs (output);
        INSERT INTO jobs (key, input, params, state, attempts, output, frames)
            VALUES ('/x/a.mp4', '/x/a.mp4', '{}', 'done', 1, '/o/a.mp4', 6);
        PRAGMA user_version = 1;
        """
    )
    conn.commit()
    conn.close()
    with Ledger.open(out, readonly=True) as ledger:
        (row,) = ledger.rows()
        assert row.frames == 6 and row.fidelity is None
    with Ledger.open(out) as ledger:
        ledger.mark_done("/x/a.mp4", output="/o/a.mp4", frames=6, seconds=1.0, fidelity={"x": 1})
        (row,) = ledger.rows()
        assert row.fidelity == {"x": 1}
    conn = sqlite3.connect(out / LEDGER_NAME)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    conn.close()
