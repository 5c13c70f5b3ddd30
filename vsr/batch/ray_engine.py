"""``vsr batch --engine ray``: one Ray task per job, on a local Ray or an existing cluster.

The driver process (where :meth:`RayEngine.run` runs) submits the jobs and reports each
result through ``on_result`` as it finishes; only the driver writes the ledger. Each task
calls :func:`vsr.batch.jobs.run_job` on some node, which writes its output atomically
(temporary file + rename), so an attempt killed with its node leaves at most a hidden
temporary file (``vsr.files.temp_sibling``), never a truncated output; the driver
removes such leftovers when the job's result comes back.

A task whose worker process or node dies is retried by Ray up to ``max_retries`` times
(exceptions raised by the job itself are not retried: ``run_job`` reports media errors as
results). When Ray gives up, the job is reported as a failed, non-permanent result with a
one-line error, so a later ``vsr batch`` run retries it; :meth:`run` does not raise for
one job's failure.

What a real cluster needs (see docs/ray.md): vsr installed, with the same version, on
every node (workers import ``vsr.batch.jobs``), and the inputs and the output folder on a
filesystem that every node sees under the same paths. Ray itself is optional:
``pip install 'vsr[ray]'``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vsr.errors import UsageError, one_line

if TYPE_CHECKING:
    from vsr.batch.jobs import JobResult, JobSpec

__all__ = ["RayEngine"]

# Tasks in flight per slot the cluster has for a job: enough to keep every slot busy
# while results come back, few enough that `on_start` means "about to run", not "queued
# behind thousands of others" (and an interrupted driver leaves little work behind).
_IN_FLIGHT_PER_SLOT = 2
_ERROR_CHARS = 300


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:  # also `sys.modules["ray"] = None`
        raise UsageError("the ray engine needs Ray", hint="pip install 'vsr[ray]'") from None
    return ray


def _ray_run_job(spec: JobSpec, threads: int) -> JobResult:
    """The Ray task: ``run_job`` with torch's CPU threads capped to the job's CPUs."""
    from vsr.batch.jobs import run_job

    return run_job(spec, threads=threads)


def _check_reachable(address: str) -> None:
    """UsageError at once when ``HOST:PORT`` (or ``ray://HOST:PORT``) refuses a TCP
    connection: ``ray.init`` would retry for minutes. Other forms ("auto") pass."""
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as exc:
        raise UsageError(
            f"cannot reach the Ray cluster at {address}: {_ray_error(exc)}",
            hint="start it with `ray start --head` and pass the head's HOST:6379",
        ) from None


def _ray_error(exc: BaseException) -> str:
    """One line for an error Ray raised from ``ray.get``: a RayTaskError (the job raised)
    names the job's own exception, not its traceback."""
    cause = getattr(exc, "cause", None)
    return one_line(cause if isinstance(cause, BaseException) else exc, limit=_ERROR_CHARS)


class RayEngine:
    """Run batch jobs as Ray tasks.

    Args:
        address: ``None`` starts a private local Ray (bound to 127.0.0.1, no dashboard),
            shut down when :meth:`run` returns. Otherwise the address of a running
            cluster, as ``ray.init`` takes it: ``"auto"``, ``"HOST:6379"`` (the head's
            GCS port) or ``"ray://HOST:10001"`` (Ray Client, needs ``ray[client]``); the
            driver disconnects at the end and leaves the cluster running.
        gpus_per_job: GPUs Ray reserves for each job; fractions (``0.5``: two jobs share
            a GPU) up to 1, whole numbers above. Ray sets ``CUDA_VISIBLE_DEVICES`` for the
            task, so jobs should use ``device="auto"`` or ``"cuda"``, not ``"cuda:N"``.
        cpus_per_job: CPUs Ray reserves for each job.
        max_retries: how many times Ray re-runs a job whose worker or node died.

    Raises:
        UsageError: Ray is not installed, or an argument is out of range.
    """

    def __init__(
        self,
        address: str | None = None,
        gpus_per_job: float = 0.0,
        cpus_per_job: float = 1.0,
        max_retries: int = 3,
    ) -> None:
        if not (math.isfinite(gpus_per_job) and gpus_per_job >= 0):
            raise UsageError(f"--gpus-per-job must be 0 or more, not {gpus_per_job}")
        if gpus_per_job > 1 and gpus_per_job != int(gpus_per_job):
            raise UsageError(
                f"--gpus-per-job {gpus_per_job}: above 1 it must be a whole number",
                hint="Ray shares a GPU between jobs only for fractions up to 1",
            )
        if not (math.isfinite(cpus_per_job) and cpus_per_job >= 0):
            raise UsageError(f"--cpus-per-job must be 0 or more, not {cpus_per_job}")
        if max_retries < 0:
            raise UsageError(f"max_retries must be 0 or more, not {max_retries}")
        self._ray = _import_ray()
        self.address = address
        self.gpus_per_job = float(gpus_per_job)
        self.cpus_per_job = float(cpus_per_job)
        self.max_retries = int(max_retries)

    # -- connection ------------------------------------------------------------------

    def _connect(self) -> bool:
        """``ray.init`` unless this process is already connected; True if it connected."""
        ray = self._ray
        if ray.is_initialized():
            return False
        quiet: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
        if self.address is None:
            # A private single-machine Ray: loopback only, no dashboard, no usage report.
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            # "local": a new instance even when a `ray start` cluster runs on this host.
            ray.init(
                address="local", include_dashboard=False, _node_ip_address="127.0.0.1", **quiet
            )
        else:
            _check_reachable(self.address)
            try:
                ray.init(address=self.address, **quiet)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise UsageError(
                    f"cannot connect to the Ray cluster at {self.address}: {_ray_error(exc)}",
                    hint="start it with `ray start --head` and pass the head's HOST:6379",
                ) from None
        return True

    def _slots(self) -> int:
        """How many jobs the cluster can run at once (at least 1)."""
        total = self._ray.cluster_resources()
        slots = []
        if self.cpus_per_job > 0:
            slots.append(total.get("CPU", 0.0) / self.cpus_per_job)
        if self.gpus_per_job > 0:
            slots.append(total.get("GPU", 0.0) / self.gpus_per_job)
        return max(1, int(min(slots))) if slots else max(1, int(total.get("CPU", 1.0)))

    def _check_fits(self) -> None:
        """UsageError when no live node has the CPUs and GPUs one job asks for (Ray would
        otherwise leave the tasks pending forever)."""
        for node in self._ray.nodes():
            have = node.get("Resources", {}) if node.get("Alive") else {}
            if have.get("CPU", 0.0) >= self.cpus_per_job and (
                have.get("GPU", 0.0) >= self.gpus_per_job
            ):
                return
        raise UsageError(
            f"no node in the Ray cluster has {self.cpus_per_job:g} CPU(s) and "
            f"{self.gpus_per_job:g} GPU(s) for one job",
            hint="lower --gpus-per-job / --cpus-per-job, or add such a node",
        )

    # -- the Engine protocol ---------------------------------------------------------

    def run(
        self,
        specs: list[JobSpec],
        on_result: Callable[[JobResult], None],
        on_start: Callable[[JobSpec], None],
    ) -> None:
        """Run every job; call ``on_start`` as each is submitted and ``on_result`` as each
        finishes, both in this process. Returns when all have finished."""
        if not specs:
            return
        from vsr.batch.jobs import JobResult
        from vsr.files import remove_temp_files

        ray = self._ray
        connected_here = self._connect()
        pending: dict[Any, tuple[JobSpec, float]] = {}
        try:
            self._check_fits()
            threads = max(1, int(self.cpus_per_job))
            task = ray.remote(_ray_run_job).options(
                num_cpus=self.cpus_per_job,
                num_gpus=self.gpus_per_job,
                max_retries=self.max_retries,
                retry_exceptions=False,
            )
            queue = list(specs)
            queue.reverse()  # pop() from the end: submit in the given order
            while queue or pending:
                room = _IN_FLIGHT_PER_SLOT * self._slots() - len(pending)
                while queue and room > 0:
                    spec = queue.pop()
                    pending[task.remote(spec, threads)] = (spec, time.monotonic())
                    on_start(spec)
                    room -= 1
                # A timeout keeps Ctrl-C responsive; the resource view is refreshed
                # between waits (a node may have joined or died).
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                for ref in ready:
                    spec, started = pending.pop(ref)
                    try:
                        result = ray.get(ref)
                    except Exception as exc:  # RayError: worker/node died, task raised
                        result = JobResult(
                            key=spec.key,
                            ok=False,
                            output=None,
                            frames=0,
                            seconds=time.monotonic() - started,
                            error=_ray_error(exc),
                            permanent=False,
                        )
                    # A killed attempt's temporary file has that worker's pid in its
                    # name, so the retry does not replace it: remove it here (the
                    # driver sees the shared output folder; harmless where it does not).
                    remove_temp_files(spec.output)
                    on_result(result)
        finally:
            for ref in pending:  # interrupted, or on_result raised: stop the rest
                with contextlib.suppress(Exception):  # best effort while unwinding
                    ray.cancel(ref, force=True)
            if connected_here:
                # Local: stops the private Ray. Cluster: only disconnects this driver.
                ray.shutdown()
