"""Frozen run configuration. Precedence: command-line flag > config file > default."""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Iterable, Mapping
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
    # Several devices, one model stage each ("cuda:0", "cuda:1"); () uses ``device``.
    # "cpu" may repeat (tests; splitting the CPU cores between stages).
    devices: tuple[str, ...] = ()
    precision: str = "auto"
    batch_size: int | None = None  # None: the backend's default (1 on CPU, 8 on GPU)
    backend: str = "torch"  # or "opencv": cv2.dnn_superres on a .pb, the reference
    tile: int = 0  # core tile size in LR pixels; 0: whole frames
    tile_overlap: int | None = None  # LR pixels of context per tile side; None: 16
    self_ensemble: bool = False  # x8 geometric self-ensemble
    compile: str = "off"  # torch.compile: "off", "default" or "reduce-overhead" (CUDA graphs)
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

#: RunConfig fields that decide the upscaled video: its pixels and how they are encoded.
VIDEO_FIELDS = (
    "model",
    "scale",
    "weights",
    "backend",
    "precision",
    "tile",
    "tile_overlap",
    "self_ensemble",
    "codec",
    "crf",
    "preset",
    "pix_fmt",
)
#: Fields that decide where the network ran. Outputs agree across them only up to float
#: rounding, so the segments of one ``--resume`` output must not mix them; a finished file
#: (``vsr batch``) is not redone for them.
DEVICE_FIELDS = ("device", "devices", "compile")


def output_fingerprint(values: Mapping[str, Any], names: Iterable[str], **extra: Any) -> str:
    """The one output fingerprint (SHA-256, hex): the fields ``names`` of ``values`` (a
    RunConfig's fields or its keyword arguments; a missing one counts as its default), the
    weights file also by resolved path, size and mtime (new weights at the same path are new
    weights), and ``extra`` (say, the container). Used by ``vsr run --resume`` (which
    segments can be kept) and ``vsr batch`` (which outputs are still current)."""
    defaults = {f.name: f.default for f in fields(RunConfig)}
    picked: dict[str, Any] = {name: values.get(name, defaults.get(name)) for name in names}
    weights = picked.get("weights")
    if weights is not None:
        path = Path(weights)
        try:
            st = path.stat()
            picked["weights"] = [str(path.resolve()), st.st_size, st.st_mtime_ns]
        except OSError:
            picked["weights"] = [str(path), None, None]
    picked.update(extra)
    blob = json.dumps(picked, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def config_values(cfg: RunConfig) -> dict[str, Any]:
    """A RunConfig's fields as a mapping (for :func:`output_fingerprint`)."""
    return {f.name: getattr(cfg, f.name) for f in fields(cfg)}


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
    if isinstance(merged.get("devices"), list):  # TOML arrays
        merged["devices"] = tuple(merged["devices"])
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
    check_compile(cfg.compile, backend=cfg.backend)
    check_inference_options(
        backend=cfg.backend,
        tile=cfg.tile,
        tile_overlap=cfg.tile_overlap,
        self_ensemble=cfg.self_ensemble,
    )
    check_devices(cfg.devices, backend=cfg.backend, device=cfg.device)
    return cfg


def device_key(name: str) -> str:
    """A device name as ``type:index`` (``cuda`` -> ``cuda:0``), to spot one listed twice."""
    kind, _, index = name.strip().lower().partition(":")
    return f"{kind}:{index or 0}"


def check_devices(devices: object, *, backend: str, device: str = "auto") -> None:
    """Raise UsageError for a bad ``devices`` list: not a list of names, with the opencv
    backend or with ``device``, ``auto`` in it, or a device listed twice (only ``cpu``
    may repeat: several CPU stages share the cores). Whether each device exists is
    checked when the backends are made (``vsr.backends.device.resolve_device``)."""
    if isinstance(devices, list):
        devices = tuple(devices)
    if devices == ():
        return
    if not isinstance(devices, tuple) or not all(isinstance(d, str) for d in devices):
        raise UsageError(
            f"devices must be a list of device names, got {devices!r}",
            hint='for example devices = ["cuda:0", "cuda:1"]',
        )
    if backend == "opencv":
        raise UsageError("--devices needs the torch backend", hint="drop it or use --backend torch")
    if device != "auto":
        raise UsageError(
            "give --device or --devices, not both", hint="--devices lists every device to use"
        )
    seen: set[str] = set()
    for name in devices:
        key = device_key(name)
        if key == "auto:0":
            raise UsageError(
                "--devices takes device names, not auto", hint="use cpu, cuda:N or mps"
            )
        if key in seen and not key.startswith("cpu:"):
            raise UsageError(
                f"device {name!r} is listed twice in --devices",
                hint="one model stage per device; only cpu may repeat",
            )
        seen.add(key)


BACKENDS = ("torch", "opencv")
SMALLEST_TILE = 8  # what --tile accepts (out-of-memory recovery stops at 16)
#: ``compile`` values: eager, ``torch.compile(module)``, and its CUDA-graph mode.
COMPILE_MODES = ("off", "default", "reduce-overhead")


def check_compile(mode: object, *, backend: str = "torch") -> None:
    """Raise UsageError for an unknown compile mode, or one asked of the opencv backend."""
    if mode not in COMPILE_MODES:
        raise UsageError(f"unknown compile mode {mode!r}", hint=f"use {', '.join(COMPILE_MODES)}")
    if mode != "off" and backend == "opencv":
        raise UsageError("--compile needs the torch backend", hint="drop it or use --backend torch")


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
