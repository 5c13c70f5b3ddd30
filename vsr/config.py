"""Frozen run configuration. Precedence: command-line flag > config file > default.

A config file (and a batch job) names every option flat (``model``, ``scale``, ``codec``
...); :meth:`RunConfig.from_values` puts the model stage's into the run's
:class:`~vsr.backends.options.InferenceOptions`."""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from vsr.backends.options import INFERENCE_FIELDS, InferenceOptions
from vsr.errors import UsageError
from vsr.media.deinterlace import check_mode


@dataclass(frozen=True)
class RunConfig:
    """One ``vsr run`` (and one ``vsr batch`` job): the file, the model stage's options,
    and the encoder's."""

    input: Path
    output: Path | None = None
    inference: InferenceOptions = field(default_factory=InferenceOptions)
    #: the video encoder; ``None``: the output container's usual one (libx264, VP9 for
    #: WebM, libx265 for HDR: :func:`vsr.media.encode.default_codec`)
    codec: str | None = None
    crf: int | None = None
    preset: str | None = None
    pix_fmt: str | None = None
    audio: bool = True
    overwrite: bool = False
    quiet: bool = False
    queue_size: int = 8
    #: auto (interlaced input only), off, bwdif or yadif (:mod:`vsr.media.deinterlace`)
    deinterlace: str = "auto"

    def __post_init__(self) -> None:
        if self.crf is not None and not 0 <= self.crf <= 63:
            raise UsageError(f"crf must be between 0 and 63, got {self.crf}")
        check_mode(self.deinterlace)

    def resolved_output(self) -> Path:
        """The output path: as given, or ``<input folder>/<stem>_<model>_x<scale><suffix>``."""
        if self.output is not None:
            return self.output
        suffix = self.input.suffix or ".mp4"
        opts = self.inference
        return self.input.with_name(f"{self.input.stem}_{opts.model}_x{opts.scale}{suffix}")

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> RunConfig:
        """A RunConfig from flat keys (a config file's, a batch job's: ``model``,
        ``scale``... next to ``input``, ``codec``...). Raises UsageError."""
        rest = dict(values)
        if isinstance(rest.get("devices"), list):  # TOML arrays, JSON
            rest["devices"] = tuple(rest["devices"])
        for key in ("input", "output"):
            if rest.get(key) is not None:
                rest[key] = Path(rest[key])
        try:
            inference = InferenceOptions.take(rest)
            return cls(inference=inference, **rest)
        except TypeError as exc:
            raise UsageError(f"bad configuration: {exc}") from None


_PATH_KEYS = {"input", "output", "weights", "calibration"}

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
    "calibration",
    "codec",
    "crf",
    "preset",
    "pix_fmt",
    "deinterlace",
)
#: Fields that decide where the network ran. Outputs agree across them only up to float
#: rounding, so the segments of one ``--resume`` output must not mix them; a finished file
#: (``vsr batch``) is not redone for them.
DEVICE_FIELDS = ("device", "devices", "compile")


#: Backends that run the same network in fp32 (their outputs are equal within one code
#: value): ``auto`` and ``openvino`` share torch's fingerprint, so a finished output (or a
#: segment) is not redone for the backend alone. opencv's stays its own.
_SAME_NETWORK = {"auto": "torch", "openvino": "torch"}
#: Fields added after fingerprints were first kept: counted only when set, so that adding
#: them changed no fingerprint.
_COUNTED_WHEN_SET = ("calibration",)


def output_fingerprint(values: Mapping[str, Any], names: Iterable[str], **extra: Any) -> str:
    """The one output fingerprint (SHA-256, hex): the fields ``names`` of ``values`` (a
    RunConfig's fields or its keyword arguments; a missing one counts as its default), the
    weights file also by resolved path, size and mtime (new weights at the same path are new
    weights), and ``extra`` (say, the container). Used by ``vsr run --resume`` (which
    segments can be kept) and ``vsr batch`` (which outputs are still current)."""
    defaults = _flat_defaults()
    picked: dict[str, Any] = {name: values.get(name, defaults.get(name)) for name in names}
    if "backend" in picked:
        picked["backend"] = _SAME_NETWORK.get(picked["backend"], picked["backend"])
    for name in _COUNTED_WHEN_SET:
        if name in picked and picked[name] is None:
            del picked[name]
        elif picked.get(name) is not None:
            picked[name] = str(Path(picked[name]).resolve())
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
    """A RunConfig's options as one flat mapping, its inference options beside the rest
    (for :func:`output_fingerprint`; the keys config files use)."""
    values = {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name != "inference"}
    values.update({name: getattr(cfg.inference, name) for name in INFERENCE_FIELDS})
    return values


def _flat_defaults() -> dict[str, Any]:
    values = {f.name: f.default for f in fields(RunConfig) if f.name != "inference"}
    values.update({f.name: f.default for f in fields(InferenceOptions)})
    return values


#: The keys a config file may set.
CONFIG_KEYS = frozenset(
    {f.name for f in fields(RunConfig) if f.name != "inference"} | set(INFERENCE_FIELDS)
)


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML config (top-level keys, or a ``[run]`` table) into RunConfig fields."""
    try:
        raw = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"config file not found: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot parse config file {path}: {exc}") from None
    table = raw.get("run", raw)
    known = CONFIG_KEYS
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
    """Merge flags (``None`` = not given) over the config file over the defaults; every
    value is checked (UsageError)."""
    merged: dict[str, Any] = load_config_file(config_file) if config_file else {}
    merged.update({k: v for k, v in flags.items() if v is not None})
    if "input" not in merged:
        raise UsageError("no input given")
    return RunConfig.from_values(merged)
