"""Typed errors. Each subclasses the matching builtin and carries a remedy (``hint``).

Only the CLI maps them to exit codes: 2 for bad usage, 1 for runtime failures,
130 for an interrupt.
"""

from __future__ import annotations


class VsrError(Exception):
    """Base of every error vsr raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        """The message and its remedy on one line, as the CLI prints it."""
        text = " ".join(self.message.split())
        if self.hint:
            text += f" ({' '.join(self.hint.split())})"
        return text


def one_line(exc: BaseException, *, limit: int | None = None) -> str:
    """Any error as one line: a VsrError's message and remedy, else ``Type: message`` (the
    first non-empty line of it); cut to ``limit`` characters when given."""
    if isinstance(exc, VsrError):
        text = exc.one_line()
    else:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        text = f"{type(exc).__name__}: {' '.join(lines[0].split())}" if lines else ""
    text = text or type(exc).__name__
    if limit is not None and len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


class UsageError(VsrError, ValueError):
    """Bad command line or configuration: exit 2."""

    exit_code = 2


class InputNotFoundError(UsageError, FileNotFoundError):
    """The input path does not exist."""


class OutputExistsError(UsageError, FileExistsError):
    """The output exists and --overwrite was not given, or it is the input."""


class UnknownModelError(UsageError, KeyError):
    """A model name that is not in the registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


class WeightsError(VsrError, ValueError):
    """A weights file that cannot be read, does not fit the model, or is unsafe."""

    exit_code = 2


class MediaError(VsrError, RuntimeError):
    """Input that cannot be demuxed or decoded, or output that cannot be written."""


class EncoderError(MediaError):
    """The encoder refused the stream or failed while encoding."""


class DeviceError(VsrError, RuntimeError):
    """The requested device is not available."""

    exit_code = 2


class StageError(VsrError, RuntimeError):
    """An error raised inside a pipeline stage, re-raised in the caller with the stage name."""

    def __init__(self, stage: str, cause: BaseException) -> None:
        super().__init__(f"{stage} stage failed: {one_line(cause)}")
        self.stage = stage
        self.cause = cause
        self.exit_code = cause.exit_code if isinstance(cause, VsrError) else 1


class Interrupted(VsrError, KeyboardInterrupt):
    """The run was interrupted (Ctrl-C or SIGTERM): exit 130."""

    exit_code = 130
