"""Command line: Typer parses flags into a frozen config; engines do the work.

``app`` is the ``vsr`` command and ``main`` its console entry point. Each command lives in
a module of this package and uses only ``vsr.cli.common`` (options, logging, the error
guard: 0 success, 1 runtime failure, 2 bad usage, 130 interrupted; tracebacks only with
--debug); this module registers them:

- ``run``: run, demo, bench;
- ``image``: image;
- ``quality``: eval, train, compare;
- ``stream``: stream;
- ``batch``: the ``vsr batch`` sub-app (batch, batch status, batch retry);
- ``models``: the ``vsr models`` sub-app (list, info, pull, import).
"""

from __future__ import annotations

import signal

import typer

from vsr.cli import batch, image, models, quality, run, stream
from vsr.cli.common import on_sigterm

__all__ = ["app", "main"]

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="vsr: video super-resolution that keeps the original audio, timing and colours.",
    pretty_exceptions_enable=False,
)

app.add_typer(batch.batch_app, name="batch")
app.command()(run.run)
app.command()(run.demo)
app.command()(image.image)
app.command("eval")(quality.eval_command)
app.command()(run.bench)
app.command()(quality.train)
app.command()(quality.compare)
app.command("stream")(stream.stream_command)
app.add_typer(models.models_app, name="models")


def main() -> None:
    signal.signal(signal.SIGTERM, on_sigterm)
    app()
