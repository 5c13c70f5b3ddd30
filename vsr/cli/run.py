"""``vsr run`` (one video), ``vsr demo`` (a sample clip through ``run``) and ``vsr bench``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from vsr.cli.common import (
    TILE,
    Backend,
    BatchSize,
    Calibration,
    Codec,
    Crf,
    Debug,
    Deinterlace,
    Device,
    FinalJson,
    Json,
    Model,
    NoAudio,
    OptBackend,
    OptDevice,
    OptModel,
    OptScale,
    PixFmt,
    Precision,
    Preset,
    Quiet,
    Scale,
    SelfEnsemble,
    TileOverlap,
    Weights,
    codec_option,
    output_option,
    overwrite_option,
    precision_option,
    progress_bar,
    run_guarded,
)
from vsr.errors import InputNotFoundError, UsageError


def run(
    input: Annotated[Path, typer.Argument(help="Input video file.", show_default=False)],
    output: Annotated[
        Path | None,
        output_option("Output file (default: <input folder>/<stem>_<model>_x<scale>.<ext>)."),
    ] = None,
    model: OptModel = None,
    scale: OptScale = None,
    weights: Weights = None,
    device: OptDevice = None,
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
        precision_option(
            "auto, fp32, fp16, bf16 or int8 (default: auto: fp16 on CUDA, fp32 on CPU; int8: "
            "the openvino backend, calibrated on frames of the input or --calibration)."
        ),
    ] = None,
    batch_size: BatchSize = None,
    compile_mode: Annotated[
        str | None,
        typer.Option(
            "--compile",
            help="torch.compile the network: off, default, or reduce-overhead (CUDA graphs) "
            "(default: off).",
        ),
    ] = None,
    backend: OptBackend = None,
    calibration: Calibration = None,
    tile: Annotated[int | None, TILE] = None,
    tile_overlap: TileOverlap = None,
    self_ensemble: SelfEnsemble = False,
    codec: Codec = None,
    crf: Crf = None,
    preset: Preset = None,
    pix_fmt: PixFmt = None,
    no_audio: NoAudio = False,
    deinterlace: Deinterlace = None,
    overwrite: Annotated[bool, overwrite_option("Replace an existing output.")] = False,
    quiet: Quiet = False,
    as_json: FinalJson = False,
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
    debug: Debug = False,
) -> None:
    """Upscale a video, keeping its audio, subtitles, timing and colour tags.

    With --resume the run can be continued after a crash or Ctrl-C: the upscaled video is
    written in segments of about --segment-seconds, each recorded in a manifest when it is
    complete, and joined by stream copy (no re-encode) with the audio at the end. Running
    the same command again keeps the recorded segments and continues from the next frame;
    a changed input or changed output settings start over.
    """

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
            "calibration": calibration,
            "tile": tile,
            "tile_overlap": tile_overlap,
            "self_ensemble": self_ensemble or None,
            "codec": codec,
            "crf": crf,
            "preset": preset,
            "pix_fmt": pix_fmt,
            "audio": False if no_audio else None,
            "deinterlace": deinterlace,
            "overwrite": overwrite or None,
            "quiet": quiet or None,
        }
        if segment_seconds is not None and not resume:
            raise UsageError("--segment-seconds needs --resume")
        if segment_seconds is not None and segment_seconds <= 0:
            raise UsageError(f"--segment-seconds must be positive, got {segment_seconds:g}")
        cfg = make_config(flags, config)
        if resume:
            report = _run_segmented_with_progress(cfg, segment_seconds=segment_seconds or 10.0)
        else:
            report = _run_with_progress(cfg, show=not cfg.quiet)
        if as_json:
            print(json.dumps(report.to_dict(), indent=2))
        elif not cfg.quiet:
            print(report.summary(), file=sys.stderr)
            print(report.output)

    run_guarded(job, quiet=quiet, debug=debug)


def _run_with_progress(cfg: Any, *, show: bool) -> Any:
    """Check and load everything first (errors print without a bar), then run with one."""
    from vsr.pipeline.engine import execute, prepare

    job = prepare(cfg)
    with progress_bar(job.total_frames, unit="frame", disable=not show, desc=cfg.input.name) as bar:
        return execute(job, progress=bar.update)


def _run_segmented_with_progress(cfg: Any, *, segment_seconds: float) -> Any:
    """``run --resume``: the bar is made at the first progress call (errors print without
    one) and counts the input's frames."""
    from vsr.media.probe import probe
    from vsr.pipeline.segments import run_segmented

    bars: list[Any] = []

    def progress(n: int) -> None:
        if not bars:
            total = probe(cfg.input).video.frame_count
            bars.append(progress_bar(total, unit="frame", disable=cfg.quiet, desc=cfg.input.name))
        bars[0].update(n)

    try:
        return run_segmented(cfg, segment_seconds=segment_seconds, progress=progress)
    finally:
        for bar in bars:
            bar.close()


def demo(
    out_dir: Annotated[
        Path, typer.Option("--out-dir", help="Where to write the sample and its upscaled version.")
    ] = Path("vsr-demo"),
    model: Model = "espcn",
    scale: Scale = 3,
    debug: Debug = False,
) -> None:
    """Make a short sample clip with audio, upscale it, and print where the result is."""

    def job() -> None:
        from vsr.config import RunConfig
        from vsr.media.sample import make_sample_clip

        out_dir.mkdir(parents=True, exist_ok=True)
        sample = make_sample_clip(out_dir / "sample.mp4")
        print(f"sample clip: {sample}", file=sys.stderr)
        cfg = RunConfig.from_values(
            {"input": sample, "model": model, "scale": scale, "overwrite": True}
        )
        report = _run_with_progress(cfg, show=True)
        print(report.summary(), file=sys.stderr)
        print(f"upscaled video: {report.output}")

    run_guarded(job, debug=debug)


def bench(
    model: Model = "espcn",
    scale: Scale = 3,
    size: Annotated[
        str, typer.Option("--size", help="Synthetic input size, WIDTHxHEIGHT.")
    ] = "640x360",
    frames: Annotated[int, typer.Option("--frames", help="Frames of the synthetic clip.")] = 120,
    input: Annotated[
        Path | None, typer.Option("--input", help="A real clip instead of the synthetic one.")
    ] = None,
    weights: Weights = None,
    device: Device = "auto",
    precision: Precision = "auto",
    batch_size: BatchSize = None,
    backend: Backend = "auto",
    codec: Annotated[str, codec_option()] = "libx264",
    preset: Preset = None,
    repeats: Annotated[
        int, typer.Option("--repeats", help="End-to-end runs; the median is reported.")
    ] = 1,
    no_matmul: Annotated[
        bool, typer.Option("--no-matmul", help="Skip measuring the float32 matmul rate.")
    ] = False,
    as_json: Json = False,
    debug: Debug = False,
) -> None:
    """Model-stage-only and end-to-end fps, per-stage busy share and the bottleneck,
    on a synthetic clip (or --input), with the device's float32 matmul rate beside."""

    def job() -> None:
        from vsr.backends.options import InferenceOptions
        from vsr.bench import BenchConfig, parse_size
        from vsr.bench import bench as run_bench

        inference = InferenceOptions(
            model=model,
            scale=scale,
            weights=weights,
            device=device,
            precision=precision,
            batch_size=batch_size,
            backend=backend,
        )
        cfg = BenchConfig(
            inference=inference,
            size=parse_size(size),
            frames=frames,
            input=input,
            codec=codec,
            preset=preset,
            repeats=repeats,
            matmul=not no_matmul,
        )
        if input is not None and not input.exists():
            raise InputNotFoundError(f"input not found: {input}")
        report = run_bench(cfg)
        print(json.dumps(report.to_dict(), indent=2) if as_json else report.format())

    run_guarded(job, quiet=as_json, debug=debug)
