"""``vsr batch``: the Typer sub-app ``batch_app`` (logic in vsr.batch).

``vsr batch INPUT... --out DIR`` runs a batch (the ``run`` subcommand is the default: any
first argument that is not ``run``, ``status`` or ``retry`` is an input, and
``vsr batch run INPUT...`` names it explicitly, e.g. for an input file called
``status``); ``vsr batch status DIR`` shows the ledger; ``vsr batch retry DIR`` re-runs
the failed rows. Errors are one line on stderr and an exit code (``vsr.cli.common.guard``):
0 all done, 1 a job failed or an input was refused, 2 bad usage, 130 interrupted.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from vsr.cli.common import (
    TILE,
    BatchSize,
    Calibration,
    Codec,
    Crf,
    Debug,
    Deinterlace,
    Json,
    NoAudio,
    OptBackend,
    OptDevice,
    OptModel,
    OptPrecision,
    OptScale,
    PixFmt,
    Preset,
    Weights,
    on_sigterm,
    overwrite_option,
    quiet_option,
    run_guarded,
)
from vsr.errors import VsrError

__all__ = ["batch_app", "main"]


class _DefaultRunGroup(TyperGroup):
    """A group whose default subcommand is ``run``: ``vsr batch a.mp4 --out D`` is
    ``vsr batch run a.mp4 --out D``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


batch_app = typer.Typer(
    cls=_DefaultRunGroup,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Upscale many videos, resumably: vsr batch INPUT... --out DIR; "
    "vsr batch status DIR; vsr batch retry DIR.",
)


def _finish(report: Any, *, as_json: bool, quiet: bool) -> None:
    """Print the report (JSON or the table, on stdout); exit 1 if anything failed."""
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    elif not quiet:
        print(report.table())
    if report.failed:
        total = report.counts()["total"] + report.counts()["refused"]
        raise VsrError(
            f"{report.failed} of {total} inputs failed or were refused",
            hint=f"vsr batch status {report.out} shows why; vsr batch retry {report.out} "
            "re-runs the failed jobs",
        )


Out = Annotated[
    Path,
    typer.Option("--out", "-o", help="Output folder (mirrors the input tree; holds the ledger)."),
]
OutDir = Annotated[
    Path, typer.Argument(metavar="DIR", help="The batch's output folder.", show_default=False)
]
Jobs = Annotated[
    int, typer.Option("--jobs", "-j", help="Jobs at a time (local: worker processes).")
]
Engine = Annotated[
    str, typer.Option("--engine", help="local (worker processes) or ray (a Ray cluster).")
]
RayAddress = Annotated[
    str | None, typer.Option("--ray-address", help="Ray cluster address (default: start one).")
]
GpusPerJob = Annotated[
    float | None,
    typer.Option(
        "--gpus-per-job", help="Ray: GPUs per job (default: 1 with a CUDA --device, else 0)."
    ),
]
CpusPerJob = Annotated[float, typer.Option("--cpus-per-job", help="Ray: CPUs per job.")]
Retries = Annotated[
    int,
    typer.Option(
        "--retries",
        help="Retries of a failed job, with exponential backoff (a bad input is not retried).",
    ),
]
SegmentSeconds = Annotated[
    float,
    typer.Option(
        "--segment-seconds",
        help="Inputs longer than twice this are written in resumable segments of about this "
        "many seconds, so a crash loses at most one (0: never).",
    ),
]
Quiet = Annotated[bool, quiet_option("No progress bars or table.")]


@batch_app.command("run")
def run_command(
    inputs: Annotated[
        list[str],
        typer.Argument(
            metavar="INPUT...",
            help="Video files, folders (searched recursively), globs, or list files "
            "(@list.txt or a .txt file: one path a line, # comments).",
            show_default=False,
        ),
    ],
    out: Out,
    model: OptModel = None,
    scale: OptScale = None,
    weights: Weights = None,
    device: OptDevice = None,
    precision: OptPrecision = None,
    backend: OptBackend = None,
    calibration: Calibration = None,
    batch_size: BatchSize = None,
    tile: Annotated[int | None, TILE] = None,
    codec: Codec = None,
    crf: Crf = None,
    preset: Preset = None,
    pix_fmt: PixFmt = None,
    no_audio: NoAudio = False,
    deinterlace: Deinterlace = None,
    jobs: Jobs = 1,
    engine: Engine = "local",
    ray_address: RayAddress = None,
    gpus_per_job: GpusPerJob = None,
    cpus_per_job: CpusPerJob = 1.0,
    retries: Retries = 2,
    segment_seconds: SegmentSeconds = 10.0,
    include: Annotated[
        list[str] | None,
        typer.Option("--include", help="Only files matching this glob (repeatable)."),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", help="Leave out files matching this glob (repeatable)."),
    ] = None,
    overwrite: Annotated[
        bool, overwrite_option("Replace output files that this batch did not write.")
    ] = False,
    quiet: Quiet = False,
    as_json: Json = False,
    debug: Debug = False,
) -> None:
    """Upscale every input into --out, resumably (the default command: vsr batch INPUT...).

    Done and unchanged inputs are skipped, changed inputs or parameters are redone, and a
    run that was killed is picked up where it stopped. Exit 1 if any job failed."""

    def job() -> None:
        from vsr.batch.engine import run_batch
        from vsr.batch.options import BatchConfig

        options = {
            "model": model,
            "scale": scale,
            "weights": weights,
            "device": device,
            "precision": precision,
            "backend": backend,
            "calibration": calibration,
            "batch_size": batch_size,
            "tile": tile,
            "codec": codec,
            "crf": crf,
            "preset": preset,
            "pix_fmt": pix_fmt,
            "audio": False if no_audio else None,
            "deinterlace": deinterlace,
        }
        cfg = BatchConfig(
            inputs=tuple(inputs),
            out=out,
            options={k: v for k, v in options.items() if v is not None},
            jobs=jobs,
            engine=engine,
            ray_address=ray_address,
            gpus_per_job=gpus_per_job,
            cpus_per_job=cpus_per_job,
            retries=retries,
            segment_seconds=segment_seconds or None,
            include=tuple(include or ()),
            exclude=tuple(exclude or ()),
            overwrite=overwrite,
            progress=not quiet and not as_json,
        )
        _finish(run_batch(cfg), as_json=as_json, quiet=quiet)

    run_guarded(job, quiet=quiet, debug=debug)


@batch_app.command("status")
def status_command(
    out: OutDir,
    as_json: Json = False,
    debug: Debug = False,
) -> None:
    """Show every job of the batch in DIR (state, attempts, frames, error)."""

    def job() -> None:
        from vsr.batch.engine import batch_status

        report = batch_status(out)
        if as_json:
            print(json.dumps(report.to_dict(), indent=2))
        else:
            print(report.table())

    run_guarded(job, debug=debug)


@batch_app.command("retry")
def retry_command(
    out: OutDir,
    device: OptDevice = None,
    jobs: Jobs = 1,
    engine: Engine = "local",
    ray_address: RayAddress = None,
    gpus_per_job: GpusPerJob = None,
    cpus_per_job: CpusPerJob = 1.0,
    retries: Retries = 2,
    segment_seconds: SegmentSeconds = 10.0,
    quiet: Quiet = False,
    as_json: Json = False,
    debug: Debug = False,
) -> None:
    """Re-run the failed (and still pending) jobs of the batch in DIR.

    Each runs with the parameters it was queued with; --device may change."""

    def job() -> None:
        from vsr.batch.engine import retry_batch
        from vsr.batch.options import BatchConfig

        cfg = BatchConfig(
            inputs=(),
            out=out,
            options={"device": device} if device is not None else {},
            jobs=jobs,
            engine=engine,
            ray_address=ray_address,
            gpus_per_job=gpus_per_job,
            cpus_per_job=cpus_per_job,
            retries=retries,
            segment_seconds=segment_seconds or None,
            progress=not quiet and not as_json,
        )
        report = retry_batch(cfg)
        if not report.jobs and not as_json:
            if not quiet:
                print("vsr: nothing to retry: no failed jobs", file=sys.stderr)
            return
        _finish(report, as_json=as_json, quiet=quiet)

    run_guarded(job, quiet=quiet, debug=debug)


def main() -> None:
    """``python -m vsr.batch``: the sub-app on its own (as ``vsr batch``)."""
    signal.signal(signal.SIGTERM, on_sigterm)
    batch_app(prog_name="vsr batch")
