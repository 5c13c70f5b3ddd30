"""vsr batch: resumable batch processing (inputs, ledger, crash recovery, failures)."""

from __future__ import annotations

import importlib.util
import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path, PurePosixPath
from typing import Any

import av
import pytest
import typer
from inline_engine import InlineEngine
from typer.testing import CliRunner

from vsr.batch.engine import run_batch
from vsr.batch.inputs import expand_inputs, suffixed
from vsr.batch.jobs import JobResult, JobSpec
from vsr.batch.ledger import LEDGER_NAME, Ledger
from vsr.batch.options import BatchConfig
from vsr.batch.report import BatchReport
from vsr.cli.batch import batch_app
from vsr.errors import InputNotFoundError, UsageError
from vsr.media.sample import make_sample_clip

REPO = Path(__file__).resolve().parent.parent
FAST = ["-m", "bicubic", "-x", "2", "--device", "cpu"]


def clip(path: Path, frames: int = 6) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return make_sample_clip(path, width=64, height=48, frames=frames, rate=Fraction(30))


def decoded(path: Path) -> tuple[int, tuple[int, int], bool]:
    """(video frames decoded, their size, whether there is an audio stream)."""
    with av.open(str(path)) as c:
        n, size = 0, (0, 0)
        for frame in c.decode(video=0):
            n, size = n + 1, (frame.width, frame.height)
        return n, size, any(s.type == "audio" for s in c.streams)


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if ".vsr-tmp-" in p.name]


def rows(out: Path) -> dict[str, Any]:
    with Ledger.open(out, readonly=True) as ledger:
        return {Path(r.key).name: r for r in ledger.rows()}


def config(inputs: list[Any], out: Path, **kw: Any) -> BatchConfig:
    options = {"model": "bicubic", "scale": 2, "device": "cpu", **kw.pop("options", {})}
    kw.setdefault("progress", False)
    kw.setdefault("backoff", 0.01)
    return BatchConfig(inputs=tuple(str(i) for i in inputs), out=out, options=options, **kw)


def run_inline(cfg: BatchConfig) -> tuple[BatchReport, list[str]]:
    engine = InlineEngine()
    report = run_batch(cfg, engine=engine)
    return report, sorted(engine.ran)


# -- crash recovery ------------------------------------------------------------------------


def _children(pid: int) -> dict[int, str]:
    """pid -> command line of the live children of ``pid``."""
    found: dict[int, str] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found[int(d.name)] = cmd
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _counts(ledger: Path) -> dict[str, int]:
    if not ledger.exists():
        return {}
    try:
        conn = sqlite3.connect(f"{ledger.as_uri()}?mode=ro", uri=True, timeout=1)
        try:
            return dict(conn.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall())
        finally:
            conn.close()
    except sqlite3.Error:
        return {}


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
def test_long_file_killed_mid_way_resumes_from_its_segments(tmp_path: Path) -> None:
    """A long input is written in segments: after kill -9 of the batch the rerun keeps the
    recorded segments, and the joined output has every frame and the audio."""
    import logging

    src, out = tmp_path / "src", tmp_path / "out"
    clip(src / "long.mp4", frames=150)  # 5 s: segmented with --segment-seconds 0.5
    cmd = [sys.executable, "-m", "vsr.batch", str(src), "--out", str(out), *FAST]
    cmd += ["--segment-seconds", "0.5", "-q"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    manifest = out / ".long.mp4.vsr-parts" / "manifest.json"
    deadline = time.monotonic() + 90
    try:
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "no two segments were recorded"
            try:
                recorded = json.loads(manifest.read_text())["segments"]
            except (OSError, ValueError, KeyError):
                recorded = []
            if len(recorded) >= 2:
                break
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()
    assert not (out / "long.mp4").exists()  # no output until the join
    kept = len(json.loads(manifest.read_text())["segments"])
    assert kept >= 2

    # A handler on the "vsr" logger itself: the CLI turns its propagation off, so a
    # handler on the root logger (caplog) would miss these after any in-process CLI test.
    messages: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: messages.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("vsr")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        report, ran = run_inline(config([src], out, segment_seconds=0.5))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert ran == ["long.mp4"] and report.jobs[0].state == "done"
    resumed = [m for m in messages if "resuming after" in m]
    assert resumed and f"resuming after {kept} segment(s)" in resumed[0]
    assert decoded(out / "long.mp4") == (150, (128, 96), True)
    with av.open(str(src / "long.mp4")) as c:
        src_pts = [f.pts for f in c.decode(video=0)]
    with av.open(str(out / "long.mp4")) as c:
        assert [f.pts for f in c.decode(video=0)] == src_pts
    assert not (out / ".long.mp4.vsr-parts").exists() and not temp_files(out)


@pytest.mark.slow
def test_sigkill_of_the_driver_then_rerun_loses_nothing(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    frames = [12, 60, 12, 12, 12, 12]  # killed while c1 (long) runs, after c0
    for i, n in enumerate(frames):
        clip(src / f"c{i}.mp4", frames=n)
    cmd = [sys.executable, "-m", "vsr.batch", str(src), "--out", str(out), *FAST, "--jobs", "1"]
    proc = subprocess.Popen(
        [*cmd, "-q"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    ledger = out / LEDGER_NAME
    deadline = time.monotonic() + 90
    workers: dict[int, str] = {}
    try:
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the batch never had a job done and one running"
            counts = _counts(ledger)
            if counts.get("done", 0) >= 1 and counts.get("running", 0) == 1:
                workers = {p: c for p, c in _children(proc.pid).items() if "spawn_main" in c}
                if workers:
                    break
            time.sleep(0.02)
        while not temp_files(out):  # kill while c1 is being written (its temp file)
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()

    # The worker dies with the driver (PR_SET_PDEATHSIG), at once: no orphan goes on to
    # finish its file behind the rerun's back.
    time.sleep(0.5)
    assert not any(_alive(p) for p in workers), workers
    before = rows(out)
    running = [r for r in before.values() if r.state == "running"]
    time.sleep(1.0)
    assert len(running) == 1 and not os.path.exists(running[0].output)
    assert [p.name for p in temp_files(out)] != []  # the killed job's partial file

    done = {
        name: (r.attempts, os.stat(r.output).st_ino, os.stat(r.output).st_mtime_ns)
        for name, r in before.items()
        if r.state == "done"
    }
    assert 1 <= len(done) < 6

    report, ran = run_inline(config([src], out))  # the recovery is the driver's
    assert ran == sorted(name for name in before if name not in done)
    counts = report.counts()
    assert counts["done"] == 6 and counts["failed"] == 0
    assert counts["skipped"] == len(done) and counts["ran"] == 6 - len(done)

    after = rows(out)
    for name, (attempts, ino, mtime) in done.items():  # finished jobs were not redone
        st = os.stat(after[name].output)
        assert (after[name].attempts, st.st_ino, st.st_mtime_ns) == (attempts, ino, mtime)
    assert temp_files(out) == []
    videos = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert [v for v in videos if not v.startswith(".vsr-batch")] == [f"c{i}.mp4" for i in range(6)]
    for i, n in enumerate(frames):
        assert decoded(out / f"c{i}.mp4") == (n, (128, 96), True)


# -- failures ------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_worker_that_dies_fails_only_its_job_which_is_retried(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    clip(src / "a.mp4", frames=40)
    clip(src / "b.mp4")
    killed: list[int] = []

    def kill_the_worker_of_a() -> None:  # once a.mp4's temp file exists
        deadline = time.monotonic() + 60
        while not killed and time.monotonic() < deadline:
            if any(p.name.startswith(".a.") for p in temp_files(out)):
                for pid, cmd in _children(os.getpid()).items():
                    if "spawn_main" in cmd:
                        os.kill(pid, signal.SIGKILL)
                        killed.append(pid)
            time.sleep(0.01)

    killer = threading.Thread(target=kill_the_worker_of_a, daemon=True)
    killer.start()
    report = run_batch(config([src], out, jobs=1))
    killer.join()
    assert len(killed) == 1
    ledger = rows(out)
    assert report.failed == 0 and report.counts()["done"] == 2
    assert ledger["a.mp4"].attempts == 2 and ledger["b.mp4"].attempts == 1
    assert decoded(out / "a.mp4") == (40, (128, 96), True)
    assert temp_files(out) == []
    workers = [c for c in _children(os.getpid()).values() if "spawn_main" in c]
    assert workers == []  # none left running once the batch is over


@pytest.mark.slow
def test_corrupt_input_fails_alone_and_retry_reruns_only_failed_rows(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    clip(src / "good1.mp4")
    clip(src / "good2.mp4")
    (src / "bad.mp4").write_bytes(os.urandom(20_000))
    (src / "skipme.mp4").write_bytes(b"excluded by --exclude")
    listing = tmp_path / "list.txt"
    listing.write_text("# inputs\n\nsrc/good1.mp4\nsrc/bad.mp4\n  src/*.mp4  \n")
    runner = CliRunner()
    args = [f"@{listing}", "--out", str(out), *FAST, "--exclude", "skip*", "-q"]

    res = runner.invoke(batch_app, args)
    assert res.exit_code == 1
    assert res.stderr.count("\n") == 1 and "1 of 3 inputs failed" in res.stderr
    assert "Traceback" not in res.stderr

    res = runner.invoke(batch_app, ["status", str(out), "--json"])
    assert res.exit_code == 0
    status = {Path(j["input"]).name: j for j in json.loads(res.stdout)["jobs"]}
    assert sorted(status) == ["bad.mp4", "good1.mp4", "good2.mp4"]
    bad = status["bad.mp4"]
    assert bad["state"] == "failed" and bad["permanent"] is True
    assert bad["attempts"] == 1  # a bad input is not retried
    assert "unreadable input" in bad["error"] and "\n" not in bad["error"]
    assert not (out / "bad.mp4").exists() and temp_files(out) == []
    goods = {n: os.stat(status[n]["output"]) for n in ("good1.mp4", "good2.mp4")}
    assert all(status[n]["state"] == "done" and status[n]["frames"] == 6 for n in goods)

    # A plain rerun keeps the unchanged bad input failed without running it again.
    res = runner.invoke(batch_app, args)
    assert res.exit_code == 1 and rows(out)["bad.mp4"].attempts == 1

    clip(src / "bad.mp4")  # fixed
    res = runner.invoke(batch_app, ["retry", str(out), "--device", "cpu", "--json"])
    assert res.exit_code == 0, res.stderr
    retried = json.loads(res.stdout)["jobs"]
    assert [Path(j["input"]).name for j in retried] == ["bad.mp4"]
    assert retried[0]["state"] == "done" and retried[0]["attempts"] == 2
    assert decoded(out / "bad.mp4") == (6, (128, 96), True)
    for name, st in goods.items():  # done rows untouched
        now = os.stat(out / name)
        assert (now.st_ino, now.st_mtime_ns) == (st.st_ino, st.st_mtime_ns)


def _limit_file_size(limit: int) -> Callable[[], None]:
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.slow
def test_full_disk_fails_the_job_cleanly(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    clip(src / "big.mp4", frames=60)  # lossless x4: about 1 MiB
    clip(src / "small.mp4", frames=3)  # about 60 KiB
    out.mkdir()
    cmd = [sys.executable, "-m", "vsr.batch", str(src), "--out", str(out)]
    cmd += ["-m", "bicubic", "-x", "4", "--crf", "0", "--device", "cpu", "--json"]
    proc = subprocess.run(
        cmd,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_limit_file_size(512 * 1024),
    )
    assert proc.returncode == 1, proc.stderr
    jobs = {Path(j["input"]).name: j for j in json.loads(proc.stdout)["jobs"]}
    big, small = jobs["big.mp4"], jobs["small.mp4"]
    assert big["state"] == "failed" and "file too large" in big["error"]
    assert big["permanent"] is True and big["attempts"] == 1
    assert not (out / "big.mp4").exists() and temp_files(out) == []
    assert small["state"] == "done"
    assert decoded(out / "small.mp4") == (3, (256, 192), True)


class FlakyEngine:
    """Fails each job ``fails`` times (not permanently), then "succeeds" (writes bytes)."""

    def __init__(self, fails: int, permanent: bool = False) -> None:
        self.fails, self.permanent = fails, permanent
        self.calls: list[str] = []

    def run(
        self,
        specs: list[JobSpec],
        on_result: Callable[[JobResult], None],
        on_start: Callable[[JobSpec], None],
    ) -> None:
        for spec in specs:
            on_start(spec)
            self.calls.append(Path(spec.input).name)
            if self.calls.count(Path(spec.input).name) <= self.fails:
                on_result(JobResult(spec.key, False, None, 0, 0.1, "flaky", self.permanent))
            else:
                Path(spec.output).write_bytes(b"done")
                on_result(JobResult(spec.key, True, spec.output, 5, 0.1, None, False))


def test_retries_with_exponential_backoff(tmp_path: Path, monkeypatch: Any) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.mp4").write_bytes(b"a")
    sleeps: list[float] = []
    monkeypatch.setattr("vsr.batch.engine.time.sleep", sleeps.append)

    flaky = FlakyEngine(fails=2)
    report = run_batch(config([tmp_path / "src"], tmp_path / "o1", backoff=0.5), engine=flaky)
    assert flaky.calls == ["a.mp4"] * 3 and sleeps == [0.5, 1.0]
    assert report.counts()["done"] == 1 and report.jobs[0].attempts == 3

    sleeps.clear()
    always = FlakyEngine(fails=9)
    report = run_batch(config([tmp_path / "src"], tmp_path / "o2", retries=1), engine=always)
    assert always.calls == ["a.mp4"] * 2 and len(sleeps) == 1
    assert report.failed == 1 and report.jobs[0].error == "flaky"

    bad = FlakyEngine(fails=9, permanent=True)
    report = run_batch(config([tmp_path / "src"], tmp_path / "o3"), engine=bad)
    assert bad.calls == ["a.mp4"] and report.jobs[0].permanent


def test_a_file_the_batch_did_not_write_is_not_replaced(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.mp4").write_bytes(b"a")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.mp4").write_bytes(b"precious")
    engine = FlakyEngine(fails=0)
    report = run_batch(config([tmp_path / "src"], out), engine=engine)
    assert engine.calls == [] and report.failed == 1
    assert "--overwrite" in report.refused[0].reason
    assert (out / "a.mp4").read_bytes() == b"precious"
    report = run_batch(config([tmp_path / "src"], out, overwrite=True), engine=engine)
    assert engine.calls == ["a.mp4"] and report.failed == 0
    assert (out / "a.mp4").read_bytes() == b"done"


# -- resuming ------------------------------------------------------------------------------


def test_changed_inputs_or_parameters_are_redone_the_rest_skipped(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    for name in ("a", "b", "c"):
        clip(src / f"{name}.mp4")

    report, ran = run_inline(config([src], out))
    assert ran == ["a.mp4", "b.mp4", "c.mp4"] and report.counts()["done"] == 3

    report, ran = run_inline(config([src], out))
    assert ran == [] and report.counts()["skipped"] == 3 and report.failed == 0

    clip(src / "b.mp4", frames=9)  # rewritten
    (out / "c.mp4").unlink()  # output lost
    report, ran = run_inline(config([src], out))
    assert ran == ["b.mp4", "c.mp4"] and report.counts()["skipped"] == 1
    ledger = rows(out)
    assert ledger["b.mp4"].frames == 9 and ledger["b.mp4"].attempts == 1
    assert ledger["a.mp4"].attempts == 1

    report, ran = run_inline(config([src], out, options={"scale": 3}))
    assert ran == ["a.mp4", "b.mp4", "c.mp4"] and report.counts()["ran"] == 3
    assert decoded(out / "a.mp4")[1] == (192, 144)

    report, ran = run_inline(config([src], out, options={"scale": 3, "batch_size": 2}))
    assert ran == []  # batch size does not change the output


# -- paths ---------------------------------------------------------------------------------


def test_outputs_mirror_never_collide_and_never_leave_dir(tmp_path: Path) -> None:
    a, b, c = tmp_path / "A", tmp_path / "B", tmp_path / "C"
    out, outside = tmp_path / "out", tmp_path / "outside"
    clip(a / "x" / "clip.mp4")
    clip(b / "x" / "clip.mp4", frames=4)
    clip(c / "evil" / "clip2.mp4")
    real = clip(tmp_path / "elsewhere" / "real.mp4")
    (c / "link.mp4").symlink_to(real)  # a symlinked input pointing outside the tree
    outside.mkdir()
    out.mkdir()
    (out / "evil").symlink_to(outside)  # DIR/evil -> outside: would write outside DIR
    clip(tmp_path / "elsewhere" / "listed.mp4")
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "l.txt").write_text("../lists/../elsewhere/listed.mp4\n")

    cfg = config([a, b, c, f"@{tmp_path / 'lists' / 'l.txt'}"], out)
    report, ran = run_inline(cfg)
    assert ran == ["clip.mp4", "clip.mp4", "listed.mp4", "real.mp4"]
    key_b = str((b / "x" / "clip.mp4").resolve())
    outputs = {Path(j.key).relative_to(tmp_path).as_posix(): j.output for j in report.jobs}
    assert outputs == {
        "A/x/clip.mp4": str(out / "x" / "clip.mp4"),
        "B/x/clip.mp4": str(out / suffixed(PurePosixPath("x/clip.mp4"), key_b)),
        "elsewhere/real.mp4": str(out / "link.mp4"),
        "elsewhere/listed.mp4": str(out / "listed.mp4"),
    }
    assert [r.input for r in report.refused] == [f"{c}/evil/clip2.mp4"]
    assert "outside" in report.refused[0].reason and report.failed == 1
    assert list(outside.iterdir()) == []
    assert decoded(out / "x" / "clip.mp4")[0] == 6
    assert decoded(Path(outputs["B/x/clip.mp4"]))[0] == 4
    for p in out.rglob("*"):
        if p.is_file():
            assert Path(os.path.realpath(p)).is_relative_to(out)

    report, ran = run_inline(cfg)  # deterministic: the same names, nothing redone
    assert ran == [] and {j.output for j in report.jobs} == set(outputs.values())


def test_output_folder_inside_an_input_folder_is_not_ingested(tmp_path: Path) -> None:
    src = tmp_path / "src"
    clip(src / "one.mp4")
    out = src / "upscaled"
    report, ran = run_inline(config([src], out))
    assert ran == ["one.mp4"] and report.counts()["total"] == 1
    report, ran = run_inline(config([src], out))
    assert ran == [] and report.counts()["total"] == 1 and report.counts()["skipped"] == 1
    report, ran = run_inline(config([out / "one.mp4"], out))  # named explicitly: refused
    assert ran == [] and "inside the output folder" in report.refused[0].reason


# -- inputs --------------------------------------------------------------------------------


def test_include_exclude_globs_and_list_files(tmp_path: Path, monkeypatch: Any) -> None:
    v = tmp_path / "v"
    for name in ("a.mp4", "b.MKV", "skip/c.mp4", ".hidden.mp4", "notes.txt", "d.srt"):
        (v / name).parent.mkdir(parents=True, exist_ok=True)
        (v / name).write_bytes(b"x")
    out = tmp_path / "out"

    def rels(*inputs: Any, **kw: Any) -> list[str]:
        sources, refused = expand_inputs([str(i) for i in inputs], out, **kw)
        assert refused == []
        return [s.rel.as_posix() for s in sources]

    assert rels(v) == ["a.mp4", "b.MKV", "skip/c.mp4"]
    assert rels(v, include=["*.mp4"]) == ["a.mp4", "skip/c.mp4"]
    assert rels(v, exclude=["skip/*", "*.mkv"]) == ["a.mp4", "b.MKV"]  # case-sensitive globs
    assert rels(f"{v}/**/*.mp4") == ["a.mp4", "skip/c.mp4"]
    assert rels(v / "b.MKV", v / "a.mp4", v) == ["b.MKV", "a.mp4", "skip/c.mp4"]  # once each

    listing = tmp_path / "inputs.txt"
    listing.write_text("# a comment\n\nv/a.mp4\n  v/skip  \n")
    assert rels(f"@{listing}") == ["a.mp4", "c.mp4"]
    monkeypatch.chdir(tmp_path)
    assert rels("inputs.txt") == ["a.mp4", "c.mp4"]  # a .txt file is a list

    listing.write_text("v/a.mp4\nv/missing.mp4\n")
    with pytest.raises(InputNotFoundError, match=r"inputs.txt:2"):
        expand_inputs([str(listing)], out)
    with pytest.raises(UsageError, match="no files match"):
        expand_inputs([f"{v}/*.webm"], out)


# -- command line --------------------------------------------------------------------------


def test_cli_plain_form_registered_and_usage_errors(tmp_path: Path, monkeypatch: Any) -> None:
    root = typer.Typer()

    @root.command()
    def other() -> None:
        """Another command, so that batch is a sub-app."""

    root.add_typer(batch_app, name="batch")
    runner = CliRunner()
    res = runner.invoke(root, ["batch", str(tmp_path / "nope.mp4"), "--out", str(tmp_path)])
    assert res.exit_code == 2 and res.stderr.startswith("vsr: error: input not found")
    res = runner.invoke(root, ["batch", "status", str(tmp_path)])
    assert res.exit_code == 2 and "no batch ledger" in res.stderr

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a)
    )
    res = runner.invoke(
        root, ["batch", str(tmp_path), "--out", str(tmp_path / "o"), "--engine", "ray", *FAST]
    )
    assert res.exit_code == 2 and "pip install 'vsr[ray]'" in res.stderr
    assert res.stderr.count("\n") == 1
    assert not (tmp_path / "o").exists()  # refused before anything was written
