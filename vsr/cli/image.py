"""``vsr image``: upscale image files and folders (logic in vsr.images)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from vsr.cli.common import (
    TILE,
    Backend,
    Debug,
    Device,
    Json,
    Model,
    Precision,
    Quiet,
    Scale,
    SelfEnsemble,
    TileOverlap,
    Weights,
    output_option,
    overwrite_option,
    progress_bar,
    run_guarded,
)
from vsr.errors import VsrError


def image(
    inputs: Annotated[
        list[Path],
        typer.Argument(
            help="Image files (PNG, JPEG, WebP, BMP, TIFF) or folders (searched recursively).",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path | None,
        output_option(
            "Output image file for one input file (another format converts), else "
            "a folder, mirroring input folders [default: beside each input, "
            "<stem>_<model>_x<scale>.<ext>]."
        ),
    ] = None,
    model: Model = "espcn",
    scale: Scale = 3,
    weights: Weights = None,
    device: Device = "auto",
    precision: Precision = "auto",
    backend: Backend = "auto",
    tile: Annotated[int, TILE] = 0,
    tile_overlap: TileOverlap = None,
    self_ensemble: SelfEnsemble = False,
    overwrite: Annotated[bool, overwrite_option("Replace existing outputs.")] = False,
    quiet: Quiet = False,
    as_json: Json = False,
    debug: Debug = False,
) -> None:
    """Upscale images: alpha, greyscale and 16-bit kept; one failed image does not stop
    the others (exit 1 at the end)."""

    def job() -> None:
        from vsr.backends.options import InferenceOptions
        from vsr.images import ImageConfig, execute, prepare

        inference = InferenceOptions(
            model=model,
            scale=scale,
            weights=weights,
            device=device,
            precision=precision,
            backend=backend,
            tile=tile,
            tile_overlap=tile_overlap,
            self_ensemble=self_ensemble,
        )
        cfg = ImageConfig(
            inputs=tuple(inputs), output=output, inference=inference, overwrite=overwrite
        )
        prepared = prepare(cfg)
        with progress_bar(
            len(prepared.pairs), unit="image", disable=quiet or len(prepared.pairs) == 1
        ) as bar:
            report = execute(prepared, progress=bar.update)
        if as_json:
            print(json.dumps(report.to_dict(), indent=2))
        elif not quiet:
            print(report.summary(), file=sys.stderr)
            for result in report.images:
                if result.ok:
                    print(result.output)
        if report.failed:
            raise VsrError(
                f"{report.failed} of {len(report.images)} images failed",
                hint="see the errors above",
            )

    run_guarded(job, quiet=quiet, debug=debug)
