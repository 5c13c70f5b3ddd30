"""Measuring and improving quality: ``vsr eval`` (PSNR/SSIM on datasets), ``vsr train``
and ``vsr compare`` (crops side by side). The logic is in vsr.evaluate, vsr.train and
vsr.compare."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from vsr.cli.common import (
    Backend,
    Calibration,
    Debug,
    Device,
    FinalJson,
    Json,
    Model,
    Precision,
    Quiet,
    Scale,
    SelfEnsemble,
    Weights,
    device_option,
    json_option,
    model_option,
    output_option,
    overwrite_option,
    precision_option,
    progress_bar,
    quiet_option,
    run_guarded,
)


def eval_command(
    datasets: Annotated[
        list[Path],
        typer.Argument(
            metavar="DATASET_DIR",
            help="Folders of HR test images (e.g. Set5, Set14).",
            show_default=False,
        ),
    ],
    model: Model = "espcn",
    scale: Scale = 3,
    weights: Weights = None,
    self_ensemble: SelfEnsemble = False,
    device: Device = "auto",
    precision: Precision = "fp32",
    backend: Backend = "auto",
    calibration: Calibration = None,
    quiet: Annotated[bool, quiet_option("No progress bar.")] = False,
    as_json: Annotated[bool, json_option("Print the results as JSON on stdout.")] = False,
    debug: Debug = False,
) -> None:
    """PSNR/SSIM on Y of a model and of bicubic, per image and mean, with the protocol
    of the SR literature (MATLAB bicubic LR, BT.601 Y, border = scale)."""

    def job() -> None:
        from vsr.backends.options import InferenceOptions
        from vsr.evaluate import EvalConfig, execute_eval, prepare_eval

        inference = InferenceOptions(
            model=model,
            scale=scale,
            weights=weights,
            device=device,
            precision=precision,
            backend=backend,
            calibration=calibration,
            self_ensemble=self_ensemble,
        )
        cfg = EvalConfig(datasets=tuple(datasets), inference=inference)
        prepared = prepare_eval(cfg)  # errors print without a bar
        with progress_bar(prepared.total_images, unit="image", disable=quiet or as_json) as bar:
            report = execute_eval(prepared, progress=bar.update)
        print(json.dumps(report.to_dict(), indent=2) if as_json else report.format())

    run_guarded(job, quiet=quiet, debug=debug)


def train(
    config: Annotated[
        Path,
        typer.Option(
            "--config",
            help="Training recipe (TOML), e.g. configs/train/espcn_x3.toml.",
            show_default=False,
        ),
    ],
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the run folder's checkpoint.")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Run folder (default: <project>/runs/<config stem>)."),
    ] = None,
    export: Annotated[
        Path | None,
        typer.Option("--export", help="Write the best weights (safetensors + model card) here."),
    ] = None,
    iterations: Annotated[
        int | None, typer.Option("--iterations", help="Override the recipe's iterations.")
    ] = None,
    threads: Annotated[
        int | None, typer.Option("--threads", help="CPU threads (default: the recipe's, or all).")
    ] = None,
    device: Annotated[str, device_option("auto, cpu, cuda or cuda:N.")] = "auto",
    quiet: Quiet = False,
    as_json: FinalJson = False,
    debug: Debug = False,
) -> None:
    """Train a model from HR image folders; checkpoints resume exactly (logic in vsr.train)."""

    def job() -> None:
        from vsr.train import loop

        report = loop.train_from_file(
            config,
            resume=resume,
            out=out,
            export=export,
            iterations=iterations,
            threads=threads,
            device=device,
            progress=not quiet,
        )
        if as_json:
            print(json.dumps(report, indent=2))
        elif not quiet:
            for line in loop.format_results(report):
                print(line)

    # info: "resumed ... at step N"
    run_guarded(job, quiet=quiet, debug=debug, info=True)


def compare(
    input: Annotated[
        Path | None,
        typer.Argument(
            help="Image or video (low resolution); omit with --gt HR --from-gt.",
            show_default=False,
        ),
    ] = None,
    models: Annotated[
        list[str] | None,
        model_option(
            "Model to compare (repeat); bicubic is always shown "
            "(default: every model with built-in weights at the scale)."
        ),
    ] = None,
    scale: Scale = 3,
    weights_for: Annotated[
        list[str] | None,
        typer.Option("--weights-for", metavar="MODEL=FILE", help="Weights for one model (repeat)."),
    ] = None,
    frame: Annotated[
        int | None, typer.Option("--frame", help="Frame of a video, from 0 (default: 0).")
    ] = None,
    crop: Annotated[
        str | None,
        typer.Option(
            "--crop",
            metavar="X,Y,W,H",
            help="Region of the input, in input pixels (default: the most detailed window).",
        ),
    ] = None,
    gt: Annotated[
        Path | None,
        typer.Option("--gt", help="Ground-truth HR image: adds PSNR/SSIM (Y) and its panel."),
    ] = None,
    from_gt: Annotated[
        bool,
        typer.Option("--from-gt", help="Make the input from --gt by MATLAB bicubic downscaling."),
    ] = False,
    output: Annotated[
        Path | None,
        output_option("HTML report; the PNG grid goes beside it (default: <input>_compare.html)."),
    ] = None,
    zoom: Annotated[int, typer.Option("--zoom", help="Magnify panels N times (0: automatic).")] = 0,
    embed: Annotated[
        bool,
        typer.Option(
            "--embed/--no-embed", help="Embed panels in the HTML, or write them beside it."
        ),
    ] = True,
    device: Device = "auto",
    precision: Annotated[
        str, precision_option("auto, fp32, fp16, bf16 or int8 (default: fp32, as vsr eval).")
    ] = "fp32",
    backend: Backend = "auto",
    overwrite: Annotated[bool, overwrite_option("Replace an existing report.")] = False,
    quiet: Annotated[bool, quiet_option("No summary.")] = False,
    as_json: Json = False,
    debug: Debug = False,
) -> None:
    """Crops of bicubic and each model side by side (PNG grid + HTML page), with PSNR
    against a ground truth when one is given (logic in vsr.compare)."""

    def job() -> None:
        from vsr.backends.options import InferenceOptions
        from vsr.compare import CompareConfig, parse_crop, parse_weights_for
        from vsr.compare import compare as run_compare

        base = input if input is not None else gt
        out = output
        if out is None and base is not None:
            out = base.with_name(f"{base.stem}_compare.html")
        cfg = CompareConfig(
            input=input,
            output=out if out is not None else Path("compare.html"),
            models=tuple(models or ()),
            inference=InferenceOptions(
                scale=scale, device=device, precision=precision, backend=backend
            ),
            weights=parse_weights_for(weights_for or []),
            frame=frame,
            crop=parse_crop(crop) if crop is not None else None,
            gt=gt,
            from_gt=from_gt,
            zoom=zoom,
            embed=embed,
            overwrite=overwrite,
        )
        report = run_compare(cfg)
        if as_json:
            print(json.dumps(report.to_dict(), indent=2))
        elif not quiet:
            print(report.summary(), file=sys.stderr)
            print(report.html)

    run_guarded(job, quiet=quiet, debug=debug)
