"""The batch driver: ``run_batch(BatchConfig) -> BatchReport``, and the ``Engine`` protocol
that runs jobs (``LocalEngine``: worker processes here; ``vsr.batch.ray_engine.RayEngine``:
a Ray cluster). An engine may also have ``close()``, called once the batch is over.

The driver expands the inputs, syncs them with the ledger (skip what is done and
unchanged, redo what changed, restart what a crash left running), hands the jobs to the
engine, re-submits failures that may pass on a second try (exponential backoff), and
writes every state change to the ledger: it is the only writer. Engines never see the
ledger; they call ``on_start(spec)`` when a job starts and ``on_result(result)`` when it
ends, from the thread that called ``Engine.run``.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

from vsr.batch.inputs import Refused, assign_outputs, expand_inputs, inside
from vsr.batch.jobs import JobResult, JobSpec, params_hash
from vsr.batch.ledger import LEDGER_NAME, Ledger, Row, fingerprint
from vsr.batch.local import LocalEngine
from vsr.errors import InputNotFoundError, Interrupted, UsageError
from vsr.files import is_temp_name, remove_temp_files

__all__ = [
    "BatchConfig",
    "BatchReport",
    "Engine",
    "JobRecord",
    "LocalEngine",
    "batch_status",
    "make_engine",
    "retry_batch",
    "run_batch",
]

log = logging.getLogger("vsr")

ENGINES = ("local", "ray")
#: RunConfig fields a rerun or ``retry`` may change without redoing anything.
_HOW_FIELDS = ("device", "devices", "batch_size", "compile", "queue_size")


class Engine(Protocol):
    def run(
        self,
        specs: list[JobSpec],
        on_result: Callable[[JobResult], None],
        on_start: Callable[[JobSpec], None],
    ) -> None: ...


@dataclass(frozen=True)
class BatchConfig:
    """One ``vsr batch`` run. ``options``: RunConfig fields (model, scale, weights, device,
    codec, crf, ...; ``None`` or missing: the default)."""

    inputs: tuple[str, ...]
    out: Path
    options: Mapping[str, Any] = field(default_factory=dict)
    jobs: int = 1
    engine: str = "local"
    ray_address: str | None = None
    gpus_per_job: float | None = None  # None: 1 with a CUDA --device, else 0
    cpus_per_job: float = 1.0
    retries: int = 2
    backoff: float = 1.0  # seconds before the first retry; doubles for each further one
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    overwrite: bool = False  # replace output files that this batch did not write
    progress: bool = True
    segment_seconds: float | None = 10.0  # longer inputs (2x) go in resumable segments


@dataclass
class JobRecord:
    """One input in a report. ``action``: ``ran`` (this run), ``skipped`` (done before and
    unchanged), ``kept`` (failed before on a bad input, unchanged: not retried), or
    empty (``status``)."""

    key: str
    input: str
    output: str | None
    state: str
    action: str
    attempts: int
    frames: int | None
    seconds: float | None
    error: str | None
    permanent: bool
    started: float | None = None
    finished: float | None = None

    @classmethod
    def from_row(cls, row: Row, action: str = "") -> JobRecord:
        return cls(
            key=row.key,
            input=row.input,
            output=row.output,
            state=row.state,
            action=action,
            attempts=row.attempts,
            frames=row.frames,
            seconds=row.seconds,
            error=row.error,
            permanent=row.permanent,
            started=row.started,
            finished=row.finished,
        )


@dataclass
class BatchReport:
    out: str
    ledger: str
    jobs: list[JobRecord] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)
    seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        states = Counter(j.state for j in self.jobs)
        actions = Counter(j.action for j in self.jobs)
        return {
            "total": len(self.jobs),
            "done": states["done"],
            "failed": states["failed"],
            "pending": states["pending"],
            "running": states["running"],
            "ran": actions["ran"],
            "skipped": actions["skipped"],
            "kept": actions["kept"],
            "refused": len(self.refused),
        }

    @property
    def failed(self) -> int:
        """Jobs that failed plus inputs refused: the exit code is 1 when this is not 0."""
        c = self.counts()
        return c["failed"] + c["refused"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": self.out,
            "ledger": self.ledger,
            "counts": self.counts(),
            "seconds": self.seconds,
            "jobs": [asdict(j) for j in self.jobs],
            "refused": [asdict(r) for r in self.refused],
        }

    def table(self) -> str:
        """A fixed-width table, one line per job and refused input, then the counts."""
        root = Path(self.out)

        def short(path: str | None) -> str:
            if not path:
                return "-"
            p = Path(path)
            return p.relative_to(root).as_posix() if p.is_relative_to(root) else str(p)

        def num(v: float | None, fmt: str) -> str:
            return "-" if v is None else format(v, fmt)

        rows = [("state", "tries", "frames", "seconds", "output / input", "error")]
        for j in self.jobs:
            state = j.state + (" (skipped)" if j.action == "skipped" else "")
            rows.append(
                (
                    state,
                    str(j.attempts),
                    num(j.frames, "d"),
                    num(j.seconds, ".1f"),
                    short(j.output) if j.output else j.input,
                    j.error or "",
                )
            )
        for r in self.refused:
            rows.append(("refused", "-", "-", "-", r.input, r.reason))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = [
            "  ".join(cell.ljust(w) for cell, w in zip(r[:5], widths, strict=True)) + "  " + r[5]
            for r in rows
        ]
        c = self.counts()
        summary = f"{c['total']} jobs: {c['done']} done"
        if any(j.action for j in self.jobs):  # a run, not status
            now = sum(1 for j in self.jobs if j.action == "ran" and j.state == "done")
            summary += f" ({now} now, {c['skipped']} skipped)"
        summary += f", {c['failed']} failed"
        summary += f", {c['pending']} pending" if c["pending"] else ""
        summary += f", {c['running']} running" if c["running"] else ""
        summary += f"; {c['refused']} refused" if c["refused"] else ""
        summary += f"; {self.seconds:.1f} s" if self.seconds else ""
        lines.append(summary)
        return "\n".join(line.rstrip() for line in lines)


# -- parameters ----------------------------------------------------------------------------


def job_params(options: Mapping[str, Any]) -> dict[str, Any]:
    """Validated RunConfig keyword arguments (JSON-safe: paths as absolute strings) for
    every job. Raises UsageError for bad values, an unknown model or scale, missing
    weights, or an encoder this FFmpeg lacks."""
    from vsr.config import make_config
    from vsr.media.writer import check_encoder
    from vsr.models.registry import get_spec

    flags = {k: v for k, v in options.items() if k not in ("input", "output")}
    cfg = make_config({**flags, "input": Path("batch-input")})
    params: dict[str, Any] = {
        f.name: getattr(cfg, f.name)
        for f in fields(cfg)
        if f.name not in ("input", "output", "overwrite", "quiet")
    }
    if cfg.weights is not None:
        if not cfg.weights.is_file():
            raise InputNotFoundError(f"weights file not found: {cfg.weights}")
        params["weights"] = str(cfg.weights.resolve())
    params["devices"] = list(cfg.devices)
    spec = get_spec(cfg.model)
    scales = getattr(spec, "scales", ())
    if scales and cfg.model != "auto" and cfg.scale not in scales:
        listed = ", ".join(f"x{s}" for s in scales)
        raise UsageError(f"{spec.name} does not support x{cfg.scale}", hint=f"it supports {listed}")
    check_encoder(cfg.codec)
    return params


def make_engine(cfg: BatchConfig, on_progress: Callable[[str, int], None] | None = None) -> Engine:
    """The engine ``cfg.engine`` names. Raises UsageError (unknown engine, bad counts,
    ``ray`` not installed)."""
    if cfg.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {cfg.jobs}")
    if cfg.engine == "local":
        return LocalEngine(cfg.jobs, on_progress=on_progress)
    if cfg.engine == "ray":
        if importlib.util.find_spec("ray") is None:
            raise UsageError("the ray engine needs Ray", hint="pip install 'vsr[ray]'")
        try:
            module = importlib.import_module("vsr.batch.ray_engine")
        except ImportError as exc:
            raise UsageError(
                f"the ray engine cannot be loaded: {exc}", hint="pip install 'vsr[ray]'"
            ) from None
        gpus = cfg.gpus_per_job
        if gpus is None:
            device = str(cfg.options.get("device") or "auto")
            gpus = 1.0 if device.startswith("cuda") else 0.0
        if gpus < 0 or cfg.cpus_per_job < 0:
            raise UsageError("--gpus-per-job and --cpus-per-job cannot be negative")
        engine: Engine = module.RayEngine(cfg.ray_address, gpus, cfg.cpus_per_job)
        return engine
    raise UsageError(f"unknown engine {cfg.engine!r}", hint=f"use {' or '.join(ENGINES)}")


# -- the driver ----------------------------------------------------------------------------


def sweep_temp_files(out_dir: Path) -> list[Path]:
    """Delete every Writer temporary file under ``out_dir`` (only ever called with the
    folder's lock held, so no driver of ours is writing there)."""
    removed: list[Path] = []
    for dirpath, _dirnames, filenames in os.walk(out_dir, followlinks=False):
        for name in filenames:
            if is_temp_name(name):
                path = Path(dirpath) / name
                try:
                    path.unlink()
                except OSError:
                    continue
                removed.append(path)
    return removed


def _recover(ledger: Ledger, out_dir: Path) -> None:
    """Rows a killed driver left ``running`` go back to ``pending``; temp files go."""
    for row in ledger.recover_running():
        if row.output:
            remove_temp_files(row.output)
        log.info("restarting %s (interrupted by an earlier run)", row.input)
    for path in sweep_temp_files(out_dir):
        log.info("removed the stale temporary file %s", path)


class _Progress:
    """tqdm on stderr: one bar for all jobs (frames, ETA) and one per running job."""

    def __init__(self, specs: list[JobSpec], enabled: bool) -> None:
        from tqdm import tqdm

        self.enabled = enabled and bool(specs)
        self.totals: dict[str, int | None] = {}
        if self.enabled:
            self.totals = {s.key: _frames_estimate(s.input) for s in specs}
        known = [t for t in self.totals.values() if t]
        self.jobs = len(specs)
        self.done = 0
        self.failed = 0
        self.counted: Counter[str] = Counter()
        self.bars: dict[str, Any] = {}
        self.free: list[int] = []
        self.next_position = 1
        self.overall = tqdm(
            total=sum(known) if known else None,  # inputs that cannot be probed: 0
            unit="frame",
            desc=self._desc(),
            disable=not self.enabled,
            dynamic_ncols=True,
            file=sys.stderr,
            position=0,
        )

    def _desc(self) -> str:
        text = f"batch {self.done}/{self.jobs}"
        return text + (f", {self.failed} failed" if self.failed else "")

    def start(self, spec: JobSpec) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if self.free:
            position = self.free.pop(0)
        else:
            position, self.next_position = self.next_position, self.next_position + 1
        self.bars[spec.key] = (
            tqdm(
                total=self.totals.get(spec.key),
                unit="frame",
                desc=Path(spec.input).name,
                leave=False,
                dynamic_ncols=True,
                file=sys.stderr,
                position=position,
            ),
            position,
        )

    def progress(self, key: str, n: int) -> None:
        if not self.enabled:
            return
        self.counted[key] += n
        self.overall.update(n)
        if key in self.bars:
            self.bars[key][0].update(n)

    def finish(self, result: JobResult) -> None:
        if not self.enabled:
            return
        bar, position = self.bars.pop(result.key, (None, None))
        if bar is not None:
            bar.close()
            self.free.append(position)
        seen = self.counted.pop(result.key, 0)
        if result.ok:
            self.done += 1
            self.overall.update(result.frames - seen)
        else:
            self.failed += 1
            self.overall.update(-seen)
        self.overall.set_description(self._desc())

    def retrying(self, n: int) -> None:
        self.failed -= n
        if self.enabled:
            self.overall.set_description(self._desc())

    def close(self) -> None:
        for bar, _ in self.bars.values():
            bar.close()
        self.overall.close()


def _frames_estimate(path: str) -> int | None:
    from vsr.media.probe import probe

    try:
        return probe(Path(path)).video.frames_estimate
    except Exception:  # noqa: BLE001 - only for the progress bar; the job reports errors
        return None


def _execute(
    ledger: Ledger,
    specs: list[JobSpec],
    cfg: BatchConfig,
    engine: Engine | None,
) -> set[str]:
    """Run ``specs`` (already ``pending`` in the ledger), retrying failures that may pass
    with exponential backoff; record every change. Returns the keys that ran."""
    by_key = {s.key: s for s in specs}
    tries: Counter[str] = Counter()
    bars = _Progress(specs, cfg.progress)
    if engine is None:
        engine = make_engine(cfg, on_progress=bars.progress)
    elif isinstance(engine, LocalEngine) and engine.on_progress is None:
        engine.on_progress = bars.progress
    again: list[JobSpec] = []

    def on_start(spec: JobSpec) -> None:
        ledger.mark_running(spec.key)
        bars.start(spec)

    def on_result(result: JobResult) -> None:
        bars.finish(result)
        spec = by_key[result.key]
        tries[result.key] += 1
        if result.ok and result.output:
            ledger.mark_done(
                result.key, output=result.output, frames=result.frames, seconds=result.seconds
            )
            return
        remove_temp_files(spec.output)
        error = result.error or "failed"
        ledger.mark_failed(
            result.key, error=error, permanent=result.permanent, seconds=result.seconds
        )
        if not result.permanent and tries[result.key] <= cfg.retries:
            again.append(spec)

    batch = list(specs)
    round_ = 0
    try:
        while batch:
            again.clear()
            engine.run(batch, on_result, on_start)
            batch = list(again)
            if batch:
                delay = cfg.backoff * 2**round_
                log.warning("retrying %d failed job(s) in %.1f s", len(batch), delay)
                bars.retrying(len(batch))
                time.sleep(delay)
                round_ += 1
    except BaseException:
        # Interrupted (or the driver failed): the engine has stopped its jobs; they go
        # back to pending, their temp files go, and the next run restarts them.
        for row in ledger.rows():
            if row.key in by_key and row.state == "running":
                ledger.mark_pending(row.key, error="interrupted")
                if row.output:
                    remove_temp_files(row.output)
        raise
    finally:
        close = getattr(engine, "close", None)
        if callable(close):
            close()
        bars.close()
    return set(tries)


def _check(cfg: BatchConfig) -> None:
    if cfg.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {cfg.jobs}")
    if cfg.retries < 0:
        raise UsageError(f"--retries cannot be negative, got {cfg.retries}")
    if cfg.segment_seconds is not None and cfg.segment_seconds < 0:
        raise UsageError(f"--segment-seconds cannot be negative, got {cfg.segment_seconds:g}")
    if cfg.engine not in ENGINES:
        raise UsageError(f"unknown engine {cfg.engine!r}", hint=f"use {' or '.join(ENGINES)}")


def _prepare_out_dir(out: Path) -> Path:
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out is not a folder: {out}")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the output folder {out}: {exc.strerror}") from None
    return Path(os.path.realpath(out))


def run_batch(cfg: BatchConfig, *, engine: Engine | None = None) -> BatchReport:
    """Upscale every input of ``cfg`` into ``cfg.out``, resumably. ``engine`` defaults to
    the one ``cfg.engine`` names.

    Raises UsageError (bad options, inputs that do not exist, a folder already in use by
    another batch) before any job starts, and Interrupted. Job failures do not raise:
    they are in the report (``report.failed``).
    """
    t0 = time.perf_counter()
    _check(cfg)
    params = job_params(cfg.options)
    phash = params_hash(params)
    if engine is None and cfg.engine != "local":
        engine = make_engine(cfg)  # usage errors (ray missing) before anything is written
    out_root = _prepare_out_dir(cfg.out)
    sources, refused = expand_inputs(cfg.inputs, out_root, include=cfg.include, exclude=cfg.exclude)
    if not sources and not refused:
        raise UsageError("no video files in the inputs", hint="check the paths and --include")

    actions: dict[str, str] = {}
    specs: list[JobSpec] = []
    with Ledger.open(out_root) as ledger:
        _recover(ledger, out_root)
        existing = {r.key: r for r in ledger.rows()}
        recorded = {k: r.output for k, r in existing.items() if r.output}
        outputs, more = assign_outputs(sources, out_root, recorded)
        refused += more
        for src in sources:
            out = outputs.get(src.key)
            if out is None:
                continue
            try:
                st = os.stat(src.key)
                fp = fingerprint(src.key, st.st_size)
            except OSError as exc:
                refused.append(Refused(src.given, f"cannot read the input: {exc.strerror}"))
                continue
            row = existing.get(src.key)
            same = (
                row is not None
                and (row.size, row.mtime_ns, row.fingerprint) == (st.st_size, st.st_mtime_ns, fp)
                and row.params_hash == phash
                and row.output == out
            )
            if row is not None and same:
                if row.state == "done" and os.path.isfile(out):
                    actions[src.key] = "skipped"
                    continue
                if row.state == "failed" and row.permanent:
                    actions[src.key] = "kept"
                    continue
            mine = row is not None and row.output == out
            if os.path.lexists(out) and not mine and not cfg.overwrite:
                refused.append(
                    Refused(
                        src.given,
                        f"{out} exists and was not written by this batch (pass --overwrite)",
                    )
                )
                continue
            parent = Path(out).parent
            parent.mkdir(parents=True, exist_ok=True)
            if not inside(out_root, parent):  # re-check once the folders exist
                refused.append(Refused(src.given, f"its output {out} would land outside"))
                continue
            ledger.queue(
                src.key,
                input=src.key,
                size=st.st_size,
                mtime_ns=st.st_mtime_ns,
                fingerprint=fp,
                params_hash=phash,
                params=params,
                output=out,
                reset_attempts=not same,
            )
            specs.append(
                JobSpec(
                    key=src.key,
                    input=src.key,
                    output=out,
                    params=params,
                    segment_seconds=cfg.segment_seconds,
                )
            )
        try:
            for key in _execute(ledger, specs, cfg, engine):
                actions[key] = "ran"
        except KeyboardInterrupt as exc:
            raise Interrupted("interrupted") from exc
        rows = {r.key: r for r in ledger.rows()}
    jobs = [JobRecord.from_row(rows[k], actions[k]) for k in actions if k in rows]
    jobs.sort(key=lambda j: j.output or j.input)
    return BatchReport(
        out=str(out_root),
        ledger=str(out_root / LEDGER_NAME),
        jobs=jobs,
        refused=refused,
        seconds=round(time.perf_counter() - t0, 3),
    )


def retry_batch(cfg: BatchConfig, *, engine: Engine | None = None) -> BatchReport:
    """Re-queue the ledger's failed rows in ``cfg.out`` and run them (and rows still
    pending after an interrupted run) with the parameters each was queued with
    (``cfg.options`` may change only how they run: device, batch size). ``cfg.inputs``
    is ignored."""
    t0 = time.perf_counter()
    _check(cfg)
    out_root = Path(os.path.realpath(cfg.out))
    if not (out_root / LEDGER_NAME).is_file():
        raise UsageError(f"no batch ledger in {cfg.out}", hint="run `vsr batch INPUT... --out DIR`")
    how = {k: v for k, v in cfg.options.items() if k in _HOW_FIELDS and v is not None}
    if engine is None and cfg.engine != "local":
        engine = make_engine(cfg)
    specs: list[JobSpec] = []
    with Ledger.open(out_root) as ledger:
        _recover(ledger, out_root)
        queued = [r.key for r in ledger.rows() if r.state == "pending"]  # a crash left them
        for key in sorted({*ledger.requeue_failed(), *queued}):
            row = ledger.get(key)
            if row is None or not row.output:
                continue
            try:
                st = os.stat(row.input)
                ledger.update_input(
                    key,
                    size=st.st_size,
                    mtime_ns=st.st_mtime_ns,
                    fingerprint=fingerprint(row.input, st.st_size),
                )
            except OSError:
                pass  # the job reports the missing input
            Path(row.output).parent.mkdir(parents=True, exist_ok=True)
            params = {**row.params, **how}
            if "devices" in how:
                params["devices"] = list(how["devices"])
            specs.append(
                JobSpec(
                    key=key,
                    input=row.input,
                    output=row.output,
                    params=params,
                    segment_seconds=cfg.segment_seconds,
                )
            )
        try:
            ran = _execute(ledger, specs, cfg, engine)
        except KeyboardInterrupt as exc:
            raise Interrupted("interrupted") from exc
        rows = {r.key: r for r in ledger.rows()}
    jobs = [JobRecord.from_row(rows[k], "ran") for k in sorted(ran) if k in rows]
    return BatchReport(
        out=str(out_root),
        ledger=str(out_root / LEDGER_NAME),
        jobs=jobs,
        seconds=round(time.perf_counter() - t0, 3),
    )


def batch_status(out: Path) -> BatchReport:
    """Every row of the ledger in ``out`` (read-only; safe while a batch runs)."""
    with Ledger.open(out, readonly=True) as ledger:
        rows = ledger.rows()
    root = Path(os.path.realpath(out))
    jobs = [JobRecord.from_row(r) for r in rows]
    jobs.sort(key=lambda j: j.output or j.input)
    return BatchReport(out=str(root), ledger=str(root / LEDGER_NAME), jobs=jobs)
