"""``vsr models``: list, info, pull, import (logic in vsr.models.manage)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from vsr.cli.common import (
    Debug,
    json_option,
    model_option,
    overwrite_option,
    quiet_option,
    run_guarded,
    scale_option,
)

models_app = typer.Typer(
    no_args_is_help=True,
    help="List, inspect, download (pull) and import model weights.",
)

_Json = Annotated[bool, json_option("Machine-readable output on stdout.")]


@models_app.command("list")
def models_list(
    catalog: Annotated[
        bool, typer.Option("--catalog", help="List the downloadable weights (the catalog).")
    ] = False,
    as_json: _Json = False,
    debug: Debug = False,
) -> None:
    """Registered models: scales, parameters, input, speed, weights present, licence."""

    def job() -> None:
        from vsr.models import manage

        rows = manage.list_catalog() if catalog else manage.list_models()
        if as_json:
            print(json.dumps(rows, indent=2))
        else:
            print(manage.format_catalog(rows) if catalog else manage.format_list(rows))

    run_guarded(job, debug=debug)


@models_app.command("info")
def models_info(
    name: Annotated[
        str,
        typer.Argument(
            help="A model name, a catalog entry id or an imported name.", show_default=False
        ),
    ],
    as_json: _Json = False,
    debug: Debug = False,
) -> None:
    """A model's spec and its weights: built-in (with measured quality), cached, catalog."""

    def job() -> None:
        from vsr.models import manage

        info = manage.model_info(name)
        print(json.dumps(info, indent=2) if as_json else manage.format_info(info))

    run_guarded(job, debug=debug)


@models_app.command("pull")
def models_pull(
    entry_id: Annotated[
        str,
        typer.Argument(
            metavar="ID", help="Catalog entry id (vsr models list --catalog).", show_default=False
        ),
    ],
    force: Annotated[
        bool, typer.Option("--force", help="Download again even if the file is cached.")
    ] = False,
    quiet: Annotated[bool, quiet_option("No progress bar.")] = False,
    as_json: _Json = False,
    debug: Debug = False,
) -> None:
    """Download weights from their official URL into the cache, resumable and verified."""

    def job() -> None:
        from vsr.models import manage

        result = manage.pull(entry_id, force=force, progress=not quiet)
        if as_json:
            print(json.dumps(result.to_dict(), indent=2))
            return
        if not quiet:
            print(manage.pull_summary(result), file=sys.stderr)
        print(result.path)

    run_guarded(job, quiet=quiet, debug=debug)


@models_app.command("import")
def models_import(
    file: Annotated[
        Path,
        typer.Argument(
            help="Weights file (.safetensors, .pth/.pt/.ckpt, OpenCV .pb).", show_default=False
        ),
    ],
    name: Annotated[
        str | None, typer.Option("--name", help="Name in the cache (default: the file's stem).")
    ] = None,
    model: Annotated[
        str | None, model_option("Model name (default: found from the weights).")
    ] = None,
    scale: Annotated[
        int | None, scale_option("Upscaling factor (default: from the weights).")
    ] = None,
    licence: Annotated[
        str | None, typer.Option("--licence", help="Licence of the weights (default: unknown).")
    ] = None,
    overwrite: Annotated[
        bool, overwrite_option("Replace weights imported under the same name.")
    ] = False,
    quiet: Annotated[bool, quiet_option("No summary.")] = False,
    as_json: _Json = False,
    debug: Debug = False,
) -> None:
    """Convert a weights file to safetensors with a model card in the cache."""

    def job() -> None:
        from vsr.models import manage

        result = manage.import_weights(
            file, name=name, model=model, scale=scale, licence=licence, overwrite=overwrite
        )
        if as_json:
            print(json.dumps(result.to_dict(), indent=2))
            return
        if not quiet:
            print(result.summary(), file=sys.stderr)
        print(result.path)

    run_guarded(job, quiet=quiet, debug=debug)
