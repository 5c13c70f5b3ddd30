"""The Ray engine of ``vsr batch``: a two-node Ray cluster on 127.0.0.1 started with the
``ray start`` CLI, a node killed while it runs a job (Ray retries the job on the head), a
worker killed with retries off (a non-permanent failure, not an exception), and the
one-line error without Ray.

The cluster is this test's own: its nodes run in their own process groups and temporary
folders, on free ports, and only their processes are killed at the end (never
``ray stop``, which stops every Ray on the machine).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import pytest

from vsr.batch.jobs import JobResult, JobSpec
from vsr.errors import UsageError
from vsr.files import TMP_MARK
from vsr.media.sample import make_sample_clip

REPO_ROOT = Path(__file__).resolve().parent.parent
PARAMS = {"model": "bicubic", "scale": 2, "device": "cpu", "quiet": True}
W, H = 64, 48
TASK_TITLE = "ray::_ray_run_job"  # a Ray worker's process title while it runs a job
START_TIMEOUT = 120.0


# -- without a cluster -------------------------------------------------------------------


def test_missing_ray_is_a_one_line_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from vsr.batch.ray_engine import RayEngine

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(UsageError) as info:
        RayEngine(address="127.0.0.1:6379")
    assert info.value.exit_code == 2
    assert info.value.one_line() == "the ray engine needs Ray (pip install 'vsr[ray]')"


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"gpus_per_job": 1.5}, "whole number"),
        ({"gpus_per_job": -1}, "--gpus-per-job"),
        ({"cpus_per_job": float("nan")}, "--cpus-per-job"),
        ({"max_retries": -1}, "max_retries"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict, words: str) -> None:
    from vsr.batch.ray_engine import RayEngine

    with pytest.raises(UsageError, match=words):
        RayEngine(**kwargs)


@pytest.mark.slow
def test_local_ray_runs_jobs_and_shuts_down(tmp_path: Path) -> None:
    """``address=None``: a private Ray on this machine, stopped at the end; a job that
    fails inside ``run_job`` (missing input) comes back as its own permanent result."""
    ray = pytest.importorskip("ray")
    import psutil

    from vsr.batch.ray_engine import RayEngine

    clip = make_sample_clip(tmp_path / "a.mp4", width=W, height=H, frames=12, rate=Fraction(30))
    specs = _specs([clip, tmp_path / "missing.mp4"], tmp_path / "out")
    started, results = _run(RayEngine(), specs)

    assert [s.key for s in started] == [s.key for s in specs]
    good, bad = results[specs[0].key], results[specs[1].key]
    assert good.ok and good.frames == 12 and _decoded(specs[0].output) == (12, (2 * W, 2 * H))
    assert not bad.ok and bad.permanent and bad.output is None
    assert bad.error and "missing.mp4" in bad.error and "\n" not in bad.error
    assert not ray.is_initialized()
    # Nothing of that Ray is left behind (its processes were this process's children).
    names = " ".join(p.name() for p in psutil.Process().children(recursive=True) if _alive(p))
    assert "raylet" not in names and "gcs_server" not in names, names


def test_an_unreachable_cluster_is_a_usage_error_at_once(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    from vsr.batch.ray_engine import RayEngine

    port = _free_ports(1)[0]  # nothing listens there
    spec = JobSpec(key="k", input="in.mp4", output=str(tmp_path / "o.mp4"), params=PARAMS)
    t0 = time.monotonic()
    with pytest.raises(UsageError, match=f"cannot reach the Ray cluster at 127.0.0.1:{port}"):
        RayEngine(address=f"127.0.0.1:{port}").run([spec], print, print)
    assert time.monotonic() - t0 < 15


# -- a two-node cluster on 127.0.0.1 -----------------------------------------------------


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Node:
    """One ``ray start --block`` in its own session and temp folder; its processes (the
    raylet, its workers and agents; the GCS on the head) are all its descendants."""

    def __init__(self, name: str, args: list[str], root: Path) -> None:
        self.name = name
        self.temp = root / name
        self.temp.mkdir()
        self.log = root / f"{name}.log"
        ports = _free_ports(4)
        cmd = [
            str(Path(sys.executable).with_name("ray")),
            "start",
            "--block",
            "--node-ip-address=127.0.0.1",
            "--num-cpus=1",
            f"--temp-dir={self.temp}",
            "--object-store-memory=100000000",
            "--disable-usage-stats",
            f"--dashboard-agent-listen-port={ports[0]}",
            f"--dashboard-agent-grpc-port={ports[1]}",
            f"--metrics-export-port={ports[2]}",
            f"--runtime-env-agent-port={ports[3]}",
            *args,
        ]
        env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
        # Workers inherit the raylet's environment; vsr is installed, this only makes
        # the test independent of how.
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )

    def wait_started(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if b"Ray runtime started" in self.log.read_bytes():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        tail = self.log.read_text(errors="replace")[-3000:]
        raise AssertionError(f"ray node {self.name} did not start:\n{tail}")

    def processes(self) -> list:
        import psutil  # Ray's own copy (ray/thirdparty_files), importable after `import ray`

        try:
            top = psutil.Process(self.proc.pid)
            return [top, *top.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def kill(self) -> None:
        """SIGKILL the node: every descendant (found first: killed parents orphan them)
        and its process group. Nothing outside this node is touched."""
        import psutil

        procs = self.processes()
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while procs and time.monotonic() < deadline:  # orphans may stay zombies: dead enough
            procs = [p for p in procs if _alive(p)]
            time.sleep(0.05)


def _alive(proc) -> bool:
    import psutil

    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class Cluster:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = _free_ports(1)[0]
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: list[Node] = []

    def start_head(self) -> Node:
        dash = _free_ports(1)[0]
        head = Node(
            "head",
            [
                "--head",
                f"--port={self.port}",
                "--include-dashboard=false",
                f"--dashboard-port={dash}",
            ],
            self.root,
        )
        self.nodes.append(head)
        head.wait_started()
        return head

    def add_worker(self) -> Node:
        worker = Node(
            f"worker{len(self.nodes)}",
            [f"--address={self.address}", "--resources=" + json.dumps({"vsrworker": 1})],
            self.root,
        )
        self.nodes.append(worker)
        worker.wait_started()
        return worker

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.kill()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    pytest.importorskip("ray")
    # Short path: Ray's Unix sockets live under the temp folder (108-byte limit).
    root = Path(tempfile.mkdtemp(prefix="vsrray-"))
    c = Cluster(root)
    try:
        c.start_head()
        yield c
    finally:
        c.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def long_clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Four 300-frame clips: a job lasts long enough to be killed half-way."""
    folder = tmp_path_factory.mktemp("ray_in")
    return [
        make_sample_clip(folder / f"in{i}.mp4", width=W, height=H, frames=300, rate=Fraction(30))
        for i in range(4)
    ]


def _specs(clips: list[Path], out_dir: Path) -> list[JobSpec]:
    out_dir.mkdir()
    return [
        JobSpec(key=str(c), input=str(c), output=str(out_dir / f"{c.stem}_x2.mp4"), params=PARAMS)
        for c in clips
    ]


def _decoded(path: str) -> tuple[int, tuple[int, int]]:
    with av.open(path) as container:
        stream = container.streams.video[0]
        frames = [f for f in container.decode(stream)]
    return len(frames), (frames[0].width, frames[0].height)


class Watcher(threading.Thread):
    """Waits until a worker of ``node`` is writing a job's output (the Writer's temporary
    file carries the worker's pid), then calls ``act(pid, temp_file)``."""

    def __init__(self, node: Node, out_dir: Path, act: Callable[[int, Path], None]) -> None:
        super().__init__(daemon=True)
        self.node, self.out_dir, self.act = node, out_dir, act
        self.hit: tuple[int, Path] | None = None
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        import psutil

        try:
            while not self.stop.is_set():
                for proc in self.node.processes():
                    try:
                        title = " ".join(proc.cmdline())
                    except psutil.Error:
                        continue
                    if not title.startswith(TASK_TITLE):
                        continue
                    temp = [p for p in self.out_dir.iterdir() if f"{TMP_MARK}{proc.pid}." in p.name]
                    if temp:
                        self.hit = (proc.pid, temp[0])
                        self.act(proc.pid, temp[0])
                        return
                time.sleep(0.02)
        except BaseException as exc:  # reported by the test
            self.error = exc


def _run(engine, specs: list[JobSpec]) -> tuple[list[JobSpec], dict[str, JobResult]]:
    started: list[JobSpec] = []
    results: dict[str, JobResult] = {}

    def on_result(result: JobResult) -> None:
        assert result.key not in results, f"two results for {result.key}"
        results[result.key] = result

    engine.run(specs, on_result=on_result, on_start=started.append)
    return started, results


@pytest.mark.slow
def test_a_job_on_a_killed_node_is_retried_on_the_head(
    cluster: Cluster, long_clips: list[Path], tmp_path: Path
) -> None:
    from vsr.batch.ray_engine import RayEngine

    worker = cluster.add_worker()
    out_dir = tmp_path / "out"
    specs = _specs(long_clips, out_dir)
    killed: list[tuple[Path, bool]] = []

    def kill_node(pid: int, temp: Path) -> None:
        final = out_dir / (re.sub(rf"^\.(.*){re.escape(TMP_MARK)}\d+(\..*)$", r"\1\2", temp.name))
        os.kill(pid, signal.SIGSTOP)  # frozen mid-job: it cannot finish while we look
        killed.append((final, final.exists()))
        worker.kill()

    watcher = Watcher(worker, out_dir, kill_node)
    watcher.start()
    t0 = time.monotonic()
    try:
        started, results = _run(RayEngine(address=cluster.address, max_retries=3), specs)
    finally:
        watcher.stop.set()
        watcher.join(timeout=10)
    elapsed = time.monotonic() - t0
    assert watcher.error is None, watcher.error
    assert watcher.hit is not None, "no job ran on the worker node"
    pid, temp = watcher.hit
    ((final, existed),) = killed
    assert not existed, "the job finished before its node was killed: nothing was retried"
    assert not worker.processes(), "the worker node is still alive"

    assert [s.key for s in started] == [s.key for s in specs]  # submitted once each
    assert set(results) == {s.key for s in specs}
    for spec in specs:
        result = results[spec.key]
        assert result.ok, result.error
        assert result.error is None and not result.permanent
        assert result.output == spec.output and result.frames == 300
        assert _decoded(spec.output) == (300, (2 * W, 2 * H))
    # The killed attempt's job was re-run (on the head, the only node left) and its
    # temporary file removed; nothing else is left in the output folder.
    assert final.is_file() and str(final) in {r.output for r in results.values()}
    assert not temp.exists()
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(Path(s.output).name for s in specs)
    assert elapsed < 110


@pytest.mark.slow
def test_a_crashed_job_without_retries_is_a_non_permanent_result(
    cluster: Cluster, long_clips: list[Path], tmp_path: Path
) -> None:
    from vsr.batch.ray_engine import RayEngine

    head = cluster.nodes[0]
    out_dir = tmp_path / "out"
    specs = _specs(long_clips[:2], out_dir)

    def kill_worker(pid: int, temp: Path) -> None:
        os.kill(pid, signal.SIGKILL)  # the worker process only, not its node

    watcher = Watcher(head, out_dir, kill_worker)
    watcher.start()
    try:
        started, results = _run(RayEngine(address=cluster.address, max_retries=0), specs)
    finally:
        watcher.stop.set()
        watcher.join(timeout=10)
    assert watcher.error is None, watcher.error
    assert watcher.hit is not None, "no job was seen running on the head"
    assert len(started) == 2 and set(results) == {s.key for s in specs}
    failed = [r for r in results.values() if not r.ok]
    assert len(failed) == 1, results
    bad = failed[0]
    assert not bad.permanent and bad.output is None and bad.frames == 0
    assert bad.error and "\n" not in bad.error and len(bad.error) <= 300
    assert "Worker" in bad.error or "died" in bad.error.lower(), bad.error
    assert not Path(next(s.output for s in specs if s.key == bad.key)).exists()
    (good,) = [r for r in results.values() if r.ok]
    assert _decoded(good.output)[0] == 300
    assert [p.name for p in out_dir.iterdir() if p.name.startswith(".")] == []
