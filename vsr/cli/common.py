"""What every command shares, declared once: options, logging, the error guard, SIGTERM,
the progress bar and small parsers.

Only the CLI maps errors to exit codes: 0 success, 1 runtime failure, 2 bad usage, 130
interrupted (``guard``). Tracebacks appear only with --debug. Command modules import this
one and never each other; heavy modules (torch, the engines, tqdm) are imported where used.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from vsr.errors import Interrupted, StageError, UsageError, VsrError

log = logging.getLogger("vsr")

# ----------------------------------------------------------------------------------------
# Options. A factory where commands word the help differently; an alias where they agree.
# ----------------------------------------------------------------------------------------


def quiet_option(help: str = "No progress bar or summary.") -> Any:
    return typer.Option("--quiet", "-q", help=help)


def json_option(help: str = "Print the report as JSON on stdout.") -> Any:
    return typer.Option("--json", help=help)


def model_option(help: str = "Model name.") -> Any:
    return typer.Option("-m", "--model", help=help)


def scale_option(help: str = "Upscaling factor.") -> Any:
    return typer.Option("-x", "-s", "--scale", help=help)


def device_option(help: str = "auto, cpu, cuda, cuda:N or mps.") -> Any:
    return typer.Option("--device", help=help)


def precision_option(
    help: str = "auto, fp32, fp16, bf16 or int8 (int8: the openvino backend).",
) -> Any:
    return typer.Option("--precision", help=help)


def codec_option(help: str = "Video encoder.") -> Any:
    return typer.Option("--codec", help=help)


def output_option(help: str) -> Any:
    return typer.Option("-o", "--output", help=help)


def overwrite_option(help: str) -> Any:
    return typer.Option("--overwrite", help=help)


Debug = Annotated[bool, typer.Option("--debug", help="Show tracebacks.")]
Quiet = Annotated[bool, quiet_option()]
Json = Annotated[bool, json_option()]
# The report of a long command (run, stream, train), printed when it ends.
FinalJson = Annotated[bool, json_option("Print the final report as JSON on stdout.")]

Model = Annotated[str, model_option()]
Scale = Annotated[int, scale_option()]
Device = Annotated[str, device_option()]
Precision = Annotated[str, precision_option()]
# Unset: the config file's value, else RunConfig's default (run, batch).
OptModel = Annotated[str | None, model_option("Model name (default: espcn).")]
OptScale = Annotated[int | None, scale_option("Upscaling factor (default: 3).")]
OptDevice = Annotated[str | None, device_option("auto, cpu, cuda, cuda:N or mps (default: auto).")]
OptPrecision = Annotated[str | None, precision_option()]

BACKEND_HELP = (
    "auto: openvino on the CPU when it is installed and the model converts, else torch; "
    "torch; openvino (the network run by OpenVINO on the CPU); or opencv (cv2.dnn_superres "
    "on a .pb given with --weights)"
)
Backend = Annotated[str, typer.Option("--backend", help=f"{BACKEND_HELP} (default: auto).")]
OptBackend = Annotated[
    str | None, typer.Option("--backend", help=f"{BACKEND_HELP} (default: auto).")
]
Calibration = Annotated[
    Path | None,
    typer.Option(
        "--calibration",
        help="With --precision int8: a folder of images or a video whose frames calibrate "
        "the quantisation.",
    ),
]

Weights = Annotated[
    Path | None,
    typer.Option("--weights", help="Weights file (.safetensors, .pth/.pt/.ckpt, OpenCV .pb)."),
]
BatchSize = Annotated[
    int | None,
    typer.Option("--batch-size", help="Frames per model batch (default: 1 on CPU, 8 on GPU)."),
]
TILE = typer.Option(
    "--tile",
    help="Upscale in tiles of this many input pixels (0: whole frames) (default: 0).",
)
TileOverlap = Annotated[
    int | None,
    typer.Option(
        "--tile-overlap",
        help="Input pixels of context around each tile, cropped after upscaling (default: 16).",
    ),
]
SelfEnsemble = Annotated[
    bool,
    typer.Option("--self-ensemble", help="Average the x8 geometric self-ensemble (8x slower)."),
]

# Encoding (run, batch, bench).
Codec = Annotated[
    str | None,
    codec_option(
        "Video encoder (default: the output container's usual encoder: libx264, "
        "VP9 for WebM, libx265 for HDR)."
    ),
]
Crf = Annotated[int | None, typer.Option("--crf", help="Constant rate factor (quality).")]
Preset = Annotated[
    str | None,
    typer.Option("--preset", help="Encoder preset (default: veryfast for libx264/libx265)."),
]
PixFmt = Annotated[
    str | None, typer.Option("--pix-fmt", help="Output pixel format (default: the input's).")
]
NoAudio = Annotated[bool, typer.Option("--no-audio", help="Drop audio.")]
Deinterlace = Annotated[
    str | None,
    typer.Option(
        "--deinterlace",
        help="auto (interlaced input only), off, bwdif or yadif: deinterlace before the "
        "model with FFmpeg's filter, one frame per frame, timestamps kept (default: auto).",
    ),
]

# ----------------------------------------------------------------------------------------
# Logging, errors, signals
# ----------------------------------------------------------------------------------------


class TqdmHandler(logging.Handler):
    """Log through tqdm so progress bars stay intact."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def setup_logging(*, quiet: bool, debug: bool, info: bool = False) -> None:
    """Warnings and errors (``quiet``: errors only; ``info``: progress notes too; ``debug``:
    everything), one ``vsr: LEVEL: message`` line each, written through tqdm."""
    handler = TqdmHandler()
    handler.setFormatter(logging.Formatter("vsr: %(levelname)s: %(message)s"))
    log.handlers[:] = [handler]
    log.propagate = False
    level = (
        logging.DEBUG
        if debug
        else logging.ERROR
        if quiet
        else logging.INFO
        if info
        else logging.WARNING
    )
    log.setLevel(level)
    logging.getLogger("libav").setLevel(logging.CRITICAL)


def on_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM stops like Ctrl-C: cleanly, exit 130 (``main`` installs it)."""
    raise KeyboardInterrupt


def _interrupted() -> typer.Exit:
    print("vsr: interrupted", file=sys.stderr)
    return typer.Exit(130)


def guard(fn: Callable[[], None], *, debug: bool) -> None:
    """Run ``fn`` and turn every failure into one line on stderr and an exit code."""
    try:
        fn()
    except (Interrupted, KeyboardInterrupt):
        raise _interrupted() from None
    except VsrError as exc:
        if debug:
            raise
        cause = exc.cause if isinstance(exc, StageError) else exc
        if isinstance(cause, KeyboardInterrupt):
            raise _interrupted() from None
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


def run_guarded(
    fn: Callable[[], None], *, quiet: bool = False, debug: bool, info: bool = False
) -> None:
    """A command's body: set up logging, then ``guard(fn)``."""
    setup_logging(quiet=quiet, debug=debug, info=info)
    guard(fn, debug=debug)


# ----------------------------------------------------------------------------------------
# Progress and parsers
# ----------------------------------------------------------------------------------------


def progress_bar(total: int | None, *, unit: str, disable: bool, desc: str | None = None) -> Any:
    """A tqdm bar on stderr (a context manager; ``update(n)`` advances it)."""
    from tqdm import tqdm

    return tqdm(
        total=total,
        unit=unit,
        disable=disable,
        dynamic_ncols=True,
        file=sys.stderr,
        desc=desc,
    )


def parse_size(text: str | None, *, flag: str = "--input-size") -> tuple[int, int] | None:
    """``WxH`` as two positive ints (None stays None); a UsageError naming ``flag``."""
    if text is None:
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"{flag} must be WxH, not {text!r}") from None
    if w <= 0 or h <= 0:
        raise UsageError(f"{flag} must be positive, not {text!r}")
    return w, h
