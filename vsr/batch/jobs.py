"""One batch job: a picklable description (``JobSpec``), its outcome (``JobResult``) and
``run_job``, which upscales one file wherever it runs (a local worker process, a Ray task).

Nothing here touches the ledger: the driver alone records what happened.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vsr.config import VIDEO_FIELDS, output_fingerprint
from vsr.errors import one_line
from vsr.files import remove_temp_files

if TYPE_CHECKING:
    from vsr.pipeline.engine import RunReport

__all__ = [
    "OUTPUT_FIELDS",
    "JobResult",
    "JobSpec",
    "disk_full_reason",
    "params_hash",
    "run_job",
    "run_config",
]

#: RunConfig fields that change the output file: the video's, and whether it has audio.
#: ``device``, ``devices``, ``batch_size``, ``compile``, ``queue_size``, ``quiet`` and
#: ``overwrite`` only change how it is made.
OUTPUT_FIELDS = (*VIDEO_FIELDS, "audio")
_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})
_DISK_WORDS = ("no space left on device", "file too large", "disk quota exceeded")


@dataclass(frozen=True)
class JobSpec:
    key: str  # ledger key (the input's resolved path)
    input: str
    output: str  # final path under DIR
    params: dict[str, Any]  # RunConfig keyword arguments other than input/output
    # Inputs longer than 2 x this many seconds are written in resumable segments
    # (vsr.pipeline.segments): a killed job keeps its finished segments. None: never.
    segment_seconds: float | None = None


@dataclass
class JobResult:
    key: str
    ok: bool
    output: str | None
    frames: int
    seconds: float
    error: str | None  # one line
    permanent: bool  # True: retrying cannot help (bad input)
    fidelity: dict[str, Any] | None = None  # what became of each input stream (done jobs)


def run_config(spec: JobSpec) -> Any:
    """The ``RunConfig`` of ``spec``; it always replaces its output (the driver decides
    what may be replaced) and prints nothing. Raises UsageError for bad parameters."""
    from vsr.config import RunConfig

    params = {**spec.params, "input": spec.input, "output": spec.output}
    params["overwrite"] = True
    params["quiet"] = True
    return RunConfig.from_values(params)


def params_hash(params: Mapping[str, Any]) -> str:
    """The output fingerprint of a job's RunConfig keyword arguments (``OUTPUT_FIELDS``,
    the weights also by size and mtime, so new weights redo the job)."""
    return output_fingerprint(params, OUTPUT_FIELDS)


def disk_full_reason(exc: BaseException) -> str | None:
    """``"disk full"``/``"file too large"``/``"disk quota exceeded"`` when ``exc`` (or
    what it wraps) is an out-of-space error (ENOSPC, EFBIG, EDQUOT), else ``None``."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        cur = todo.pop()
        if cur is None or id(cur) in seen:
            continue
        seen.add(id(cur))
        code = getattr(cur, "errno", None)
        if isinstance(cur, OSError) and code in _DISK_ERRNOS:
            return {errno.ENOSPC: "disk full", errno.EFBIG: "file too large"}.get(
                code, "disk quota exceeded"
            )
        todo += [getattr(cur, "cause", None), cur.__cause__, cur.__context__]
    text = str(exc).lower()
    for word in _DISK_WORDS:
        if word in text:
            return "disk full" if word.startswith("no space") else word
    return None


def run_job(
    spec: JobSpec,
    *,
    progress: Callable[[int], None] | None = None,
    threads: int | None = None,
) -> JobResult:
    """Upscale ``spec.input`` into ``spec.output`` (atomically: the Writer's temp name and
    rename) and say how it went. Never raises for media, encoder, usage or OS errors;
    only an interrupt (``KeyboardInterrupt``) propagates.

    ``permanent`` is True when retrying cannot help: the input is missing, cannot be
    probed or decoded, the parameters are refused, or the disk is full (free space, then
    ``vsr batch retry``). ``progress(n)`` is called per written frame; ``threads`` caps
    torch's CPU threads (several jobs sharing the cores).
    """
    from vsr.errors import (
        DeviceError,
        InputNotFoundError,
        Interrupted,
        MediaError,
        StageError,
        VsrError,
    )

    t0 = time.perf_counter()

    def fail(message: str, permanent: bool) -> JobResult:
        remove_temp_files(spec.output)
        return JobResult(
            key=spec.key,
            ok=False,
            output=None,
            frames=0,
            seconds=round(time.perf_counter() - t0, 3),
            error=" ".join(message.split()),
            permanent=permanent,
        )

    try:
        cfg = run_config(spec)
    except (TypeError, ValueError, VsrError) as exc:
        return fail(f"bad job parameters: {one_line(exc)}", True)

    from vsr.pipeline.engine import execute, prepare

    try:
        job = prepare(cfg)
    except (InputNotFoundError, MediaError) as exc:
        return fail(f"unreadable input: {one_line(exc)}", True)
    except DeviceError as exc:
        return fail(one_line(exc), False)
    except Interrupted:
        raise
    except VsrError as exc:  # usage, weights: the same every time
        return fail(one_line(exc), True)
    except Exception as exc:  # noqa: BLE001 - an OSError or a bug: one line, maybe transient
        return fail(one_line(exc), False)

    opts = cfg.inference
    if threads is not None and opts.device in ("auto", "cpu") and not opts.devices:
        import torch

        if str(getattr(job.backend, "device", "cpu")) == "cpu":
            torch.set_num_threads(max(1, threads))

    seg = spec.segment_seconds
    duration = job.info.video.duration or job.info.duration
    segmented = bool(seg and duration is not None and float(duration) > 2 * seg)
    report: RunReport
    try:
        if segmented:
            from vsr.pipeline.segments import run_segmented

            report = run_segmented(
                cfg, segment_seconds=float(seg or 0), progress=progress, prepared=job
            )
        else:
            report = execute(job, progress=progress)
    except Interrupted:
        raise
    except Exception as exc:  # noqa: BLE001 - StageError and anything else: one line
        disk = disk_full_reason(exc)
        if disk is not None:
            return fail(f"{disk} while writing {Path(spec.output).name}: {one_line(exc)}", True)
        bad_input = (
            isinstance(exc, StageError)
            and exc.stage == "reader"
            and isinstance(exc.cause, MediaError)
        )
        prefix = "undecodable input: " if bad_input else ""
        return fail(prefix + one_line(exc), bad_input)

    if not Path(spec.output).is_file():  # the Writer renames only a complete file
        return fail(f"output missing after the run: {spec.output}", False)
    return JobResult(
        key=spec.key,
        ok=True,
        output=spec.output,
        frames=report.frames_out,
        seconds=round(time.perf_counter() - t0, 3),
        error=None,
        permanent=False,
        fidelity=report.fidelity or None,
    )
