"""Frozen run configuration. Precedence: command-line flag > config file > default."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from vsr.errors import UsageError


@dataclass(frozen=True)
class RunConfig:
    input: Path
    output: Path | None = None
    model: str = "espcn"
    scale: int = 3
    weights: Path | None = None
    device: str = "auto"
    precision: str = "auto"
    batch_size: int | None = None  # None: the backend's default (1 on CPU, 8 on GPU)
    backend: str = "torch"  # or "opencv": cv2.dnn_superres on a .pb, the reference
    tile: int = 0  # core tile size in LR pixels; 0: whole frames
    tile_overlap: int | None = None  # LR pixels of context per tile side; None: 16
    self_ensemble: bool = False  # x8 geometric self-ensemble
    codec: str = "libx264"
    crf: int | None = None
    preset: str | None = None
    pix_fmt: str | None = None
    audio: bool = True
    overwrite: bool = False
    quiet: bool = False
    queue_size: int = 8

    def resolved_output(self) -> Path:
        """The output path: as given, or ``<input folder>/<stem>_<model>_x<scale><suffix>``."""
        if self.output is not None:
            return self.output
        suffix = self.input.suffix or ".mp4"
        return self.input.with_name(f"{self.input.stem}_{self.model}_x{self.scale}{suffix}")


_PATH_KEYS = {"input", "output", "weights"}


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML config (top-level keys, or a ``[run]`` table) into RunConfig fields."""
    try:
        raw = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"config file not found: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot parse config file {path}: {exc}") from None
    table = raw.get("run", raw)
    known = {f.name for f in fields(RunConfig)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise UsageError(
            f"unknown key(s) in {path}: {', '.join(unknown)}",
            hint=f"known keys: {', '.join(sorted(known))}",
        )
    base = Path(path).resolve().parent
    out: dict[str, Any] = {}
    for key, value in table.items():
        if key in _PATH_KEYS and value is not None:
            value = Path(value) if Path(value).is_absolute() else base / value
        out[key] = value
    return out


def make_config(flags: dict[str, Any], config_file: Path | None = None) -> RunConfig:
    """Merge flags (``None`` = not given) over the config file over the defaults."""
    merged: dict[str, Any] = load_config_file(config_file) if config_file else {}
    merged.update({k: v for k, v in flags.items() if v is not None})
    if "input" not in merged:
        raise UsageError("no input given")
    try:
        cfg = RunConfig(**merged)
    except TypeError as exc:
        raise UsageError(f"bad configuration: {exc}") from None
    if cfg.scale < 1:
        raise UsageError(f"scale must be a positive integer, got {cfg.scale}")
    if cfg.batch_size is not None and cfg.batch_size < 1:
        raise UsageError(f"batch size must be at least 1, got {cfg.batch_size}")
    if cfg.crf is not None and not 0 <= cfg.crf <= 63:
        raise UsageError(f"crf must be between 0 and 63, got {cfg.crf}")
    check_inference_options(
        backend=cfg.backend,
        tile=cfg.tile,
        tile_overlap=cfg.tile_overlap,
        self_ensemble=cfg.self_ensemble,
    )
    return cfg


BACKENDS = ("torch", "opencv")
SMALLEST_TILE = 8  # what --tile accepts (out-of-memory recovery stops at 16)


def check_inference_options(
    *, backend: str, tile: int, tile_overlap: int | None, self_ensemble: bool
) -> None:
    """Raise UsageError for a bad backend, tile size or overlap, or options the
    ``opencv`` backend does not have (tiles, self-ensemble)."""
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}", hint=f"use {' or '.join(BACKENDS)}")
    if tile != 0 and tile < SMALLEST_TILE:
        raise UsageError(
            f"tile must be 0 (off) or at least {SMALLEST_TILE} pixels, got {tile}",
            hint="--tile is the tile size in input (low-resolution) pixels",
        )
    if tile_overlap is not None and tile_overlap < 0:
        raise UsageError(f"tile overlap must be at least 0, got {tile_overlap}")
    if backend == "opencv" and (tile or self_ensemble):
        flag = "--tile" if tile else "--self-ensemble"
        raise UsageError(f"{flag} needs the torch backend", hint="drop it or use --backend torch")
