"""``vsr stream``: upscale a live source in real time (logic in vsr.live)."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from vsr.cli.common import (
    TILE,
    Backend,
    Debug,
    Device,
    FinalJson,
    Model,
    NoAudio,
    Precision,
    Scale,
    TileOverlap,
    Weights,
    output_option,
    overwrite_option,
    parse_size,
    quiet_option,
    run_guarded,
)
from vsr.errors import UsageError


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
        output_option(
            "Sink, repeatable: a file (.mkv, .mp4, .ts), udp://, rtp://, srt://, "
            "rtmp:// (flv), or - (nut on stdout; -:FORMAT for another muxer)."
        ),
    ] = None,
    show: Annotated[bool, typer.Option("--show", help="Preview window (q/Esc stops).")] = False,
    model: Model = "espcn",
    scale: Scale = 2,
    weights: Weights = None,
    device: Device = "auto",
    precision: Precision = "auto",
    backend: Backend = "auto",
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads",
            help="CPU threads for the model (default: all cores with openvino, half of them "
            "with torch, whose idle threads keep spinning beside capture and the sinks).",
        ),
    ] = None,
    tile: Annotated[int, TILE] = 0,
    tile_overlap: TileOverlap = None,
    duration: Annotated[
        float | None,
        typer.Option(
            "--duration",
            help="Record this many seconds of media (as FFmpeg's -t), counted from the "
            "first frame captured.",
        ),
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
    no_audio: NoAudio = False,
    overwrite: Annotated[bool, overwrite_option("Replace existing output files.")] = False,
    quiet: Annotated[bool, quiet_option("No per-second stats.")] = False,
    as_json: FinalJson = False,
    debug: Debug = False,
) -> None:
    """Upscale a live source (camera, network stream, pipe) in real time.

    Late frames are dropped (counted) rather than blocking capture; Ctrl-C or SIGTERM
    stops cleanly with every recording finalised (exit 0).
    """

    def job() -> None:
        from vsr.live.stream import StreamConfig, stream

        sinks = tuple(output or ())
        if as_json and any(s.startswith("-") for s in sinks):
            raise UsageError("--json and a stdout sink (-o -) both need stdout")
        if model == "auto" and target_fps is None:
            raise UsageError(
                "--model auto needs --target-fps N",
                hint="it times the shipped models here and picks the best that keeps up",
            )
        cfg = StreamConfig.from_values(
            source,
            sinks=sinks,
            show=show,
            model=model,
            scale=scale,
            weights=weights,
            device=device,
            precision=precision,
            backend=backend,
            threads=threads,
            tile=tile,
            tile_overlap=tile_overlap,
            duration=duration,
            max_latency_ms=max_latency,
            keep_all=keep_all,
            realtime=realtime,
            input_size=parse_size(input_size),
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

    run_guarded(job, quiet=quiet or as_json, debug=debug)
