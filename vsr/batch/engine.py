"""The batch driver: ``run_batch(BatchConfig) -> BatchReport``, ``retry_batch`` and
``batch_status``, and the recovery of what a killed run left. The config, the job
parameters and the engines that run the jobs are in ``vsr.batch.options``; the report is
in ``vsr.batch.report``.

The driver expands the inputs, syncs them with the ledger (skip what is done and
unchanged, redo what changed, restart what a crash left running), hands the jobs to the
engine, re-submits failures that may pass on a second try (exponential backoff), and
writes every state change to the ledger: it is the only writer. Engines never see the
ledger; they call ``on_start(spec)`` when a job starts and ``on_result(result)`` when it
ends, from the thread that called ``Engine.run``.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from pathlib import Path

from vsr.batch.inputs import Refused, assign_outputs, expand_inputs, inside
from vsr.batch.jobs import JobResult, JobSpec, params_hash
from vsr.batch.ledger import LEDGER_NAME, Ledger, fingerprint
from vsr.batch.local import LocalEngine
from vsr.batch.options import ENGINES, BatchConfig, Engine, job_params, make_engine
from vsr.batch.progress import Progress
from vsr.batch.report import BatchReport, JobRecord
from vsr.errors import Interrupted, UsageError
from vsr.files import is_temp_name, remove_temp_files

__all__ = ["batch_status", "retry_batch", "run_batch"]

log = logging.getLogger("vsr")

#: RunConfig fields a rerun or ``retry`` may change without redoing anything.
_HOW_FIELDS = ("device", "devices", "batch_size", "compile", "queue_size")


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
    bars = Progress(specs, cfg.progress)
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
                result.key,
                output=result.output,
                frames=result.frames,
                seconds=result.seconds,
                fidelity=result.fidelity,
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
