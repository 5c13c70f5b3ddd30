"""Command line: Typer parses flags into a frozen config; engines do the work.

Only this module maps errors to exit codes: 0 success, 1 runtime failure, 2 bad usage,
130 interrupted. Tracebacks appear only with --debug.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from vsr.errors import InputNotFoundError, Interrupted, StageError, VsrError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="vsr: video super-resolution that keeps the original audio, timing and colours.",
    pretty_exceptions_enable=False,
)
log = logging.getLogger("vsr")

from vsr.batch.cli import batch_app  # noqa: E402 - needs only typer; vsr.cli is imported lazily

app.add_typer(batch_app, name="batch")


class _TqdmHandler(logging.Handler):
    """Log through tqdm so progress bars stay intact."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def _setup_logging(*, quiet: bool, debug: bool) -> None:
    handler = _TqdmHandler()
    handler.setFormatter(logging.Formatter("vsr: %(levelname)s: %(message)s"))
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.DEBUG if debug else logging.ERROR if quiet else logging.WARNING)
    logging.getLogger("libav").setLevel(logging.CRITICAL)


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _guard(fn: Callable[[], None], *, debug: bool) -> None:
    """Run ``fn`` and turn every failure into one line on stderr and an exit code."""
    try:
        fn()
    except (Interrupted, KeyboardInterrupt):
        print("vsr: interrupted", file=sys.stderr)
        raise typer.Exit(130) from None
    except VsrError as exc:
        if debug:
            raise
        cause = exc.cause if isinstance(exc, StageError) else exc
        if isinstance(cause, KeyboardInterrupt):
            print("vsr: interrupted", file=sys.stderr)
            raise typer.Exit(130) from None
        print(f"vsr: error: {exc.one_line()}", file=sys.stderr)
        raise typer.Exit(exc.exit_code) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:  # noqa: BLE001 - unexpected: still one line without --debug
        if debug:
            raise
        print(
            f"vsr: error: {type(exc).__name__}: {exc} (rerun with --debug for details)",
            file=sys.stderr,
        )
        raise typer.Exit(1) from None


# Options shared by ``run`` and ``image``.
_TILE = typer.Option(
    "--tile",
    help="Upscale in tiles of this many input pixels (0: whole frames) (default: 0).",
)
_TILE_OVERLAP = typer.Option(
    "--tile-overlap",
    help="Input pixels of context around each tile, cropped after upscaling (default: 16).",
)
_SELF_ENSEMBLE = typer.Option(
    "--self-ensemble", help="Average the x8 geometric self-ensemble (8x slower)."
)


@app.command()
def run(
    input: Annotated[Path, typer.Argument(help="Input video file.", show_default=False)],
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            help="Output file (default: <input folder>/<stem>_<model>_x<scale>.<ext>).",
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option("-m", "--model", help="Model name (default: espcn).")
    ] = None,
    scale: Annotated[
        int | None, typer.Option("-x", "-s", "--scale", help="Upscaling factor (default: 3).")
    ] = None,
    weights: Annotated[
        Path | None,
        typer.Option("--weights", help="Weights file (.safetensors, .pth/.pt/.ckpt, OpenCV .pb)."),
    ] = None,
    device: Annotated[
        str | None, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps (default: auto).")
    ] = None,
    devices: Annotated[
        str | None,
        typer.Option(
            "--devices",
            help="Several devices, one model stage each, comma-separated (cuda:0,cuda:1); "
            "frames are dispatched to them and written in order.",
        ),
    ] = None,
    precision: Annotated[
        str | None,
        typer.Option(
            "--precision",
            help="auto, fp32, fp16 or bf16 (default: auto: fp16 on CUDA, fp32 on CPU).",
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option("--batch-size", help="Frames per model batch (default: 1 on CPU, 8 on GPU)."),
    ] = None,
    compile_mode: Annotated[
        str | None,
        typer.Option(
            "--compile",
            help="torch.compile the network: off, default, or reduce-overhead (CUDA graphs) "
            "(default: off).",
        ),
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            "--backend",
            help="torch, or opencv: cv2.dnn_superres on a .pb file (the reference) "
            "(default: torch).",
        ),
    ] = None,
    tile: Annotated[int | None, _TILE] = None,
    tile_overlap: Annotated[int | None, _TILE_OVERLAP] = None,
    self_ensemble: Annotated[bool, _SELF_ENSEMBLE] = False,
    codec: Annotated[
        str | None, typer.Option("--codec", help="Video encoder (default: libx264).")
    ] = None,
    crf: Annotated[
        int | None, typer.Option("--crf", help="Constant rate factor (quality).")
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option("--preset", help="Encoder preset (default: veryfast for libx264/libx265)."),
    ] = None,
    pix_fmt: Annotated[
        str | None, typer.Option("--pix-fmt", help="Output pixel format (default: the input's).")
    ] = None,
    no_audio: Annotated[bool, typer.Option("--no-audio", help="Drop audio.")] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing output.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the final report as JSON on stdout.")
    ] = False,
    config: Annotated[
        Path | None, typer.Option("--config", help="TOML config file (flags override it).")
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Write the video in keyframe-aligned segments (kept in .<output>.vsr-parts/ "
            "next to the output) and join them at the end; after a crash or Ctrl-C, the same "
            "command continues after the last finished segment.",
        ),
    ] = False,
    segment_seconds: Annotated[
        float | None,
        typer.Option(
            "--segment-seconds",
            help="With --resume: seconds of video per segment (at most this much is redone; "
            "default 10).",
        ),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    """Upscale a video, keeping its audio, subtitles, timing and colour tags.

    With --resume the run can be continued after a crash or Ctrl-C: the upscaled video is
    written in segments of about --segment-seconds, each recorded in a manifest when it is
    complete, and joined by stream copy (no re-encode) with the audio at the end. Running
    the same command again keeps the recorded segments and continues from the next frame;
    a changed input or changed output settings start over.
    """
    _setup_logging(quiet=quiet, debug=debug)

    def job() -> None:
        from vsr.config import make_config

        flags = {
            "input": input,
            "output": output,
            "model": model,
            "scale": scale,
            "weights": weights,
            "device": device,
            "devices": tuple(d.strip() for d in devices.split(",") if d.strip())
            if devices is not None
            else None,
            "precision": precision,
            "batch_size": batch_size,
            "compile": compile_mode,
            "backend": backend,
            "tile": tile,
            "tile_overlap": tile_overlap,
            "self_ensemble": self_ensemble or None,
            "codec": codec,
            "crf": crf,
            "preset": preset,
            "pix_fmt": pix_fmt,
            "audio": False if no_audio else None,
            "overwrite": overwrite or None,
            "quiet": quiet or None,
        }
        if segment_seconds is not None and not resume:
            from vsr.errors import UsageError

            raise UsageError("--segment-seconds needs --resume")
        if segment_seconds is not None and segment_seconds <= 0:
            from vsr.errors import UsageError

            raise UsageError(f"--segment-seconds must be positive, got {segment_seconds:g}")
        cfg = make_config(flags, config)
        if resume:
            from tqdm import tqdm

            from vsr.media.probe import probe
            from vsr.pipeline.segments import run_segmented

            bars: list[Any] = []  # made at the first progress call: errors print without one

            def progress(n: int) -> None:
                if not bars:
                    bars.append(
                        tqdm(
                            total=probe(cfg.input).video.frame_count,
                            unit="frame",
                            disable=cfg.quiet,
                            dynamic_ncols=True,
                            file=sys.stderr,
                            desc=cfg.input.name,
                        )
                    )
                bars[0].update(n)

            try:
                report = run_segmented(
                    cfg, segment_seconds=segment_seconds or 10.0, progress=progress
                )
            finally:
                for bar in bars:
                    bar.close()
        else:
            report = _run_with_progress(cfg, show=not cfg.quiet)
        if as_json:
            print(json.dumps(report.to_dict(), indent=2))
        elif not cfg.quiet:
            print(report.summary(), file=sys.stderr)
            print(report.output)

    _guard(job, debug=debug)


def _run_with_progress(cfg: Any, *, show: bool) -> Any:
    """Check and load everything first (errors print without a bar), then run with one."""
    from tqdm import tqdm

    from vsr.pipeline.engine import execute, prepare

    job = prepare(cfg)
    with tqdm(
        total=job.total_frames,
        unit="frame",
        disable=not show,
        dynamic_ncols=True,
        file=sys.stderr,
        desc=cfg.input.name,
    ) as bar:
        return execute(job, progress=bar.update)


@app.command()
def demo(
    out_dir: Annotated[
        Path, typer.Option("--out-dir", help="Where to write the sample and its upscaled version.")
    ] = Path("vsr-demo"),
    model: Annotated[str, typer.Option("-m", "--model")] = "espcn",
    scale: Annotated[int, typer.Option("-x", "-s", "--scale")] = 3,
    debug: Annotated[bool, typer.Option("--debug")] = False,
) -> None:
    """Make a short sample clip with audio, upscale it, and print where the result is."""
    _setup_logging(quiet=False, debug=debug)

    def job() -> None:
        from vsr.config import RunConfig
        from vsr.media.sample import make_sample_clip

        out_dir.mkdir(parents=True, exist_ok=True)
        sample = make_sample_clip(out_dir / "sample.mp4")
        print(f"sample clip: {sample}", file=sys.stderr)
        cfg = RunConfig(input=sample, model=model, scale=scale, overwrite=True)
        report = _run_with_progress(cfg, show=True)
        print(report.summary(), file=sys.stderr)
        print(f"upscaled video: {report.output}")

    _guard(job, debug=debug)


@app.command()
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
        typer.Option(
            "-o",
            "--output",
            help="Output image file for one input file (another format converts), else "
            "a folder, mirroring input folders [default: beside each input, "
            "<stem>_<model>_x<scale>.<ext>].",
        ),
    ] = None,
    model: Annotated[str, typer.Option("-m", "--model", help="Model name.")] = "espcn",
    scale: Annotated[int, typer.Option("-x", "-s", "--scale", help="Upscaling factor.")] = 3,
    weights: Annotated[
        Path | None,
        typer.Option("--weights", help="Weights file (.safetensors, .pth/.pt/.ckpt, OpenCV .pb)."),
    ] = None,
    device: Annotated[
        str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")
    ] = "auto",
    precision: Annotated[
        str, typer.Option("--precision", help="auto, fp32, fp16 or bf16.")
    ] = "auto",
    tile: Annotated[int, _TILE] = 0,
    tile_overlap: Annotated[int | None, _TILE_OVERLAP] = None,
    self_ensemble: Annotated[bool, _SELF_ENSEMBLE] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace existing outputs.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON on stdout.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    """Upscale images: alpha, greyscale and 16-bit kept; one failed image does not stop
    the others (exit 1 at the end)."""
    _setup_logging(quiet=quiet, debug=debug)

    def job() -> None:
        from tqdm import tqdm

        from vsr.images import ImageConfig, execute, prepare

        cfg = ImageConfig(
            inputs=tuple(inputs),
            output=output,
            model=model,
            scale=scale,
            weights=weights,
            device=device,
            precision=precision,
            tile=tile,
            tile_overlap=tile_overlap,
            self_ensemble=self_ensemble,
            overwrite=overwrite,
        )
        prepared = prepare(cfg)
        with tqdm(
            total=len(prepared.pairs),
            unit="image",
            disable=quiet or len(prepared.pairs) == 1,
            dynamic_ncols=True,
            file=sys.stderr,
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

    _guard(job, debug=debug)


@app.command("eval")
def eval_command(
    datasets: Annotated[
        list[Path],
        typer.Argument(
            metavar="DATASET_DIR",
            help="Folders of HR test images (e.g. Set5, Set14).",
            show_default=False,
        ),
    ],
    model: Annotated[str, typer.Option("-m", "--model", help="Model name.")] = "espcn",
    scale: Annotated[int, typer.Option("-x", "-s", "--scale", help="Upscaling factor.")] = 3,
    weights: Annotated[
        Path | None,
        typer.Option("--weights", help="Weights file (.safetensors, .pth/.pt/.ckpt, OpenCV .pb)."),
    ] = None,
    self_ensemble: Annotated[bool, _SELF_ENSEMBLE] = False,
    device: Annotated[
        str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")
    ] = "auto",
    precision: Annotated[
        str, typer.Option("--precision", help="fp32, fp16, bf16 or auto.")
    ] = "fp32",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the results as JSON on stdout.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    """PSNR/SSIM on Y of a model and of bicubic, per image and mean, with the protocol
    of the SR literature (MATLAB bicubic LR, BT.601 Y, border = scale)."""
    _setup_logging(quiet=quiet, debug=debug)

    def job() -> None:
        from tqdm import tqdm

        from vsr.evaluate import EvalConfig, execute_eval, prepare_eval

        cfg = EvalConfig(
            datasets=tuple(datasets),
            model=model,
            scale=scale,
            weights=weights,
            device=device,
            precision=precision,
            self_ensemble=self_ensemble,
        )
        prepared = prepare_eval(cfg)  # errors print without a bar
        with tqdm(
            total=prepared.total_images,
            unit="image",
            disable=quiet or as_json,
            dynamic_ncols=True,
            file=sys.stderr,
        ) as bar:
            report = execute_eval(prepared, progress=bar.update)
        print(json.dumps(report.to_dict(), indent=2) if as_json else report.format())

    _guard(job, debug=debug)


@app.command()
def bench(
    model: Annotated[str, typer.Option("-m", "--model", help="Model name.")] = "espcn",
    scale: Annotated[int, typer.Option("-x", "-s", "--scale", help="Upscaling factor.")] = 3,
    size: Annotated[
        str, typer.Option("--size", help="Synthetic input size, WIDTHxHEIGHT.")
    ] = "640x360",
    frames: Annotated[int, typer.Option("--frames", help="Frames of the synthetic clip.")] = 120,
    input: Annotated[
        Path | None, typer.Option("--input", help="A real clip instead of the synthetic one.")
    ] = None,
    weights: Annotated[
        Path | None,
        typer.Option("--weights", help="Weights file (.safetensors, .pth/.pt/.ckpt, OpenCV .pb)."),
    ] = None,
    device: Annotated[
        str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")
    ] = "auto",
    precision: Annotated[
        str, typer.Option("--precision", help="auto, fp32, fp16 or bf16.")
    ] = "auto",
    batch_size: Annotated[
        int | None,
        typer.Option("--batch-size", help="Frames per model batch (default: 1 on CPU, 8 on GPU)."),
    ] = None,
    codec: Annotated[str, typer.Option("--codec", help="Video encoder.")] = "libx264",
    preset: Annotated[
        str | None, typer.Option("--preset", help="Encoder preset (default: veryfast).")
    ] = None,
    repeats: Annotated[
        int, typer.Option("--repeats", help="End-to-end runs; the median is reported.")
    ] = 1,
    no_matmul: Annotated[
        bool, typer.Option("--no-matmul", help="Skip measuring the float32 matmul rate.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    """Model-stage-only and end-to-end fps, per-stage busy share and the bottleneck,
    on a synthetic clip (or --input), with the device's float32 matmul rate beside."""
    _setup_logging(quiet=as_json, debug=debug)

    def job() -> None:
        from vsr.bench import BenchConfig, parse_size
        from vsr.bench import bench as run_bench

        cfg = BenchConfig(
            model=model,
            scale=scale,
            size=parse_size(size),
            frames=frames,
            input=input,
            weights=weights,
            device=device,
            precision=precision,
            batch_size=batch_size,
            codec=codec,
            preset=preset,
            repeats=repeats,
            matmul=not no_matmul,
        )
        if input is not None and not input.exists():
            raise InputNotFoundError(f"input not found: {input}")
        report = run_bench(cfg)
        print(json.dumps(report.to_dict(), indent=2) if as_json else report.format())

    _guard(job, debug=debug)


@app.command()
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
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the final report as JSON on stdout.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    """Train a model from HR image folders; checkpoints resume exactly (logic in vsr.train)."""
    _setup_logging(quiet=quiet, debug=debug)
    if not quiet and not debug:
        log.setLevel(logging.INFO)  # "resumed ... at step N"

    def job() -> None:
        from vsr.train.loop import format_results, train_from_file

        report = train_from_file(
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
            for line in format_results(report):
                print(line)

    _guard(job, debug=debug)


@app.command()
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
        typer.Option(
            "-m",
            "--model",
            help="Model to compare (repeat); bicubic is always shown "
            "(default: every model with built-in weights at the scale).",
        ),
    ] = None,
    scale: Annotated[int, typer.Option("-x", "-s", "--scale", help="Upscaling factor.")] = 3,
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
        typer.Option(
            "-o",
            "--output",
            help="HTML report; the PNG grid goes beside it (default: <input>_compare.html).",
        ),
    ] = None,
    zoom: Annotated[int, typer.Option("--zoom", help="Magnify panels N times (0: automatic).")] = 0,
    embed: Annotated[
        bool,
        typer.Option(
            "--embed/--no-embed", help="Embed panels in the HTML, or write them beside it."
        ),
    ] = True,
    device: Annotated[
        str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")
    ] = "auto",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing report.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No summary.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON on stdout.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    """Crops of bicubic and each model side by side (PNG grid + HTML page), with PSNR
    against a ground truth when one is given (logic in vsr.compare)."""
    _setup_logging(quiet=quiet, debug=debug)

    def job() -> None:
        from vsr.compare import CompareConfig, compare, parse_crop, parse_weights_for

        base = input if input is not None else gt
        out = output
        if out is None and base is not None:
            out = base.with_name(f"{base.stem}_compare.html")
        cfg = CompareConfig(
            input=input,
            output=out if out is not None else Path("compare.html"),
            models=tuple(models or ()),
            scale=scale,
            weights=parse_weights_for(weights_for or []),
            frame=frame,
            crop=parse_crop(crop) if crop is not None else None,
            gt=gt,
            from_gt=from_gt,
            device=device,
            zoom=zoom,
            embed=embed,
            overwrite=overwrite,
        )
        report = compare(cfg)
        if as_json:
            print(json.dumps(report.to_dict(), indent=2))
        elif not quiet:
            print(report.summary(), file=sys.stderr)
            print(report.html)

    _guard(job, debug=debug)


def _parse_size(text: str | None) -> tuple[int, int] | None:
    from vsr.errors import UsageError

    if text is None:
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"--input-size must be WxH, not {text!r}") from None
    if w <= 0 or h <= 0:
        raise UsageError(f"--input-size must be positive, not {text!r}")
    return w, h


@app.command("stream")
def stream_command(
    source: Annotated[
        str,
        typer.Argument(
            help="/dev/videoN, a URL (rtsp, rtmp, srt, udp, tcp, http/HLS), a file, or - (stdin).",
            show_default=False,
        ),
    ],
    output: Annotated[
        list[str] | None,
        typer.Option(
            "-o",
            "--output",
            help="Sink, repeatable: a file (.mkv, .mp4, .ts), udp://, rtp://, srt://, "
            "rtmp:// (flv), or - (nut on stdout; -:FORMAT for another muxer).",
        ),
    ] = None,
    show: Annotated[bool, typer.Option("--show", help="Preview window (q/Esc stops).")] = False,
    model: Annotated[str, typer.Option("-m", "--model", help="Model name.")] = "espcn",
    scale: Annotated[int, typer.Option("-x", "-s", "--scale", help="Upscaling factor.")] = 2,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N, mps.")] = "auto",
    duration: Annotated[
        float | None, typer.Option("--duration", help="Stop after this many seconds.")
    ] = None,
    max_latency: Annotated[
        float,
        typer.Option(
            "--max-latency", help="Drop frames older than this (ms) before upscaling them."
        ),
    ] = 1000.0,
    keep_all: Annotated[
        bool, typer.Option("--keep-all", help="Lossless: never drop frames (latency grows).")
    ] = False,
    input_size: Annotated[
        str | None, typer.Option("--input-size", help="Camera capture size WxH (V4L2).")
    ] = None,
    input_fps: Annotated[
        float | None, typer.Option("--input-fps", help="Camera frame rate (V4L2).")
    ] = None,
    realtime: Annotated[
        bool, typer.Option("--realtime", help="Play a file at its real rate (tests, demos).")
    ] = False,
    reconnect: Annotated[
        int, typer.Option("--reconnect", help="Tries when the source drops (0: none).")
    ] = 5,
    target_fps: Annotated[
        float | None,
        typer.Option(
            "--target-fps",
            help="With -m auto: time the shipped models on this device (at --input-size, "
            "default 640x360) and use the best-quality one that sustains this rate.",
        ),
    ] = None,
    no_audio: Annotated[bool, typer.Option("--no-audio", help="Drop audio.")] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace existing output files.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No per-second stats.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the final report as JSON on stdout.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    """Upscale a live source (camera, network stream, pipe) in real time.

    Late frames are dropped (counted) rather than blocking capture; Ctrl-C or SIGTERM
    stops cleanly with every recording finalised (exit 0).
    """
    _setup_logging(quiet=quiet or as_json, debug=debug)

    def job() -> None:
        from vsr.errors import UsageError
        from vsr.live.stream import StreamConfig, stream

        sinks = tuple(output or ())
        if as_json and any(s.startswith("-") for s in sinks):
            raise UsageError("--json and a stdout sink (-o -) both need stdout")
        if model == "auto" and target_fps is None:
            raise UsageError(
                "--model auto needs --target-fps N",
                hint="it times the shipped models here and picks the best that keeps up",
            )
        cfg = StreamConfig(
            source=source,
            sinks=sinks,
            show=show,
            model=model,
            scale=scale,
            device=device,
            duration=duration,
            max_latency_ms=max_latency,
            keep_all=keep_all,
            realtime=realtime,
            input_size=_parse_size(input_size),
            input_fps=input_fps,
            reconnect=reconnect,
            audio=not no_audio,
            overwrite=overwrite,
            target_fps=target_fps,
        )
        live = None if quiet or as_json else (lambda snap: print(snap.line(), file=sys.stderr))
        report = stream(cfg, on_stats=live)
        if as_json:
            print(json.dumps(report.to_dict(), indent=2))
        elif not quiet:
            print(report.summary(), file=sys.stderr)

    _guard(job, debug=debug)


# ----------------------------------------------------------------------------------------
# vsr models: list, info, pull, import (logic in vsr.models.manage)
# ----------------------------------------------------------------------------------------

models_app = typer.Typer(
    no_args_is_help=True,
    help="List, inspect, download (pull) and import model weights.",
)
app.add_typer(models_app, name="models")

_MODELS_DEBUG = typer.Option("--debug", help="Show tracebacks.")
_MODELS_JSON = typer.Option("--json", help="Machine-readable output on stdout.")


@models_app.command("list")
def models_list(
    catalog: Annotated[
        bool, typer.Option("--catalog", help="List the downloadable weights (the catalog).")
    ] = False,
    as_json: Annotated[bool, _MODELS_JSON] = False,
    debug: Annotated[bool, _MODELS_DEBUG] = False,
) -> None:
    """Registered models: scales, parameters, input, speed, weights present, licence."""
    _setup_logging(quiet=False, debug=debug)

    def job() -> None:
        from vsr.models import manage

        rows = manage.list_catalog() if catalog else manage.list_models()
        if as_json:
            print(json.dumps(rows, indent=2))
        else:
            print(manage.format_catalog(rows) if catalog else manage.format_list(rows))

    _guard(job, debug=debug)


@models_app.command("info")
def models_info(
    name: Annotated[
        str,
        typer.Argument(
            help="A model name, a catalog entry id or an imported name.", show_default=False
        ),
    ],
    as_json: Annotated[bool, _MODELS_JSON] = False,
    debug: Annotated[bool, _MODELS_DEBUG] = False,
) -> None:
    """A model's spec and its weights: built-in (with measured quality), cached, catalog."""
    _setup_logging(quiet=False, debug=debug)

    def job() -> None:
        from vsr.models import manage

        info = manage.model_info(name)
        print(json.dumps(info, indent=2) if as_json else manage.format_info(info))

    _guard(job, debug=debug)


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
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    as_json: Annotated[bool, _MODELS_JSON] = False,
    debug: Annotated[bool, _MODELS_DEBUG] = False,
) -> None:
    """Download weights from their official URL into the cache, resumable and verified."""
    _setup_logging(quiet=quiet, debug=debug)

    def job() -> None:
        from vsr.models import manage

        result = manage.pull(entry_id, force=force, progress=not quiet)
        if as_json:
            print(json.dumps(result.to_dict(), indent=2))
            return
        if not quiet:
            print(manage.pull_summary(result), file=sys.stderr)
        print(result.path)

    _guard(job, debug=debug)


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
        str | None,
        typer.Option("-m", "--model", help="Model name (default: found from the weights)."),
    ] = None,
    scale: Annotated[
        int | None,
        typer.Option("-x", "-s", "--scale", help="Upscaling factor (default: from the weights)."),
    ] = None,
    licence: Annotated[
        str | None, typer.Option("--licence", help="Licence of the weights (default: unknown).")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace weights imported under the same name.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No summary.")] = False,
    as_json: Annotated[bool, _MODELS_JSON] = False,
    debug: Annotated[bool, _MODELS_DEBUG] = False,
) -> None:
    """Convert a weights file to safetensors with a model card in the cache."""
    _setup_logging(quiet=quiet, debug=debug)

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

    _guard(job, debug=debug)


def main() -> None:
    signal.signal(signal.SIGTERM, _on_sigterm)
    app()


if __name__ == "__main__":
    main()
