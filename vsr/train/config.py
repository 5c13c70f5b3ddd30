"""Training recipes: :class:`TrainConfig` (``configs/train/*.toml``) read and checked,
and where a recipe's relative paths start (:func:`project_root`, :func:`resolve_dirs`)."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vsr.errors import InputNotFoundError, UsageError
from vsr.models.registry import get_spec
from vsr.train.init import INITS

LOSSES = ("l1", "mse", "charbonnier")
#: Architectures whose weights serve every scale (``scales`` in a recipe trains them on
#: several at once, as the VDSR paper does); their modules have ``set_scale``.
MULTI_SCALE_ARCHS = ("vdsr",)


@dataclass(frozen=True)
class TrainConfig:
    """A training recipe (``configs/train/*.toml``). Every key but ``model``, ``scale`` and
    ``train_dirs`` has a default; ``ema`` 0 means no EMA. Raises UsageError on bad values."""

    model: str
    scale: int
    train_dirs: tuple[str, ...]
    val_dirs: tuple[str, ...] = ()
    iterations: int = 20000
    batch_size: int = 32
    lr_patch: int = 24
    lr: float = 1e-3
    lr_min: float = 1e-5
    warmup: int = 0
    loss: str = "l1"
    val_every: int = 1000
    checkpoint_every: int = 500
    seed: int = 0
    threads: int = 0
    hparams: dict[str, str] = field(default_factory=dict)
    init: str = "default"
    ema: float = 0.0
    scales: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        spec = get_spec(self.model)  # UnknownModelError (a UsageError) lists the known ones
        if not spec.needs_weights:
            raise UsageError(f"{spec.name} has no weights to train", hint="choose a network")
        if self.scale not in spec.scales:
            scales = ", ".join(str(s) for s in spec.scales)
            raise UsageError(f"{spec.name} does not support scale {self.scale}: use {scales}")
        if not self.train_dirs:
            raise UsageError("train_dirs is empty", hint="list at least one folder of HR images")
        positive = ("iterations", "batch_size", "lr_patch", "val_every", "checkpoint_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be at least 1, not {getattr(self, name)}")
        for name in ("warmup", "threads", "seed"):
            if getattr(self, name) < 0:
                raise UsageError(f"{name} must be at least 0, not {getattr(self, name)}")
        if not self.lr > 0 or self.lr_min < 0:
            raise UsageError(f"need lr > 0 and lr_min >= 0, not {self.lr} and {self.lr_min}")
        if self.loss not in LOSSES:
            raise UsageError(f"unknown loss {self.loss!r}", hint=f"use {', '.join(LOSSES)}")
        if not 0 <= self.ema < 1:
            raise UsageError(f"ema must be in [0, 1), not {self.ema}", hint="0.999 is usual")

        def known(part: str) -> bool:
            if part.startswith("weights:"):
                return len(part) > len("weights:")
            return part == "bicubic" and spec.arch in INITS

        parts = self.init.split("+")
        if self.init not in ("", "default") and not all(known(p) for p in parts):
            raise UsageError(
                f"init {self.init!r} is not available for {spec.arch}",
                hint=f"use 'default', 'weights:PATH', or 'bicubic' for {', '.join(INITS)}",
            )
        for s in self.scales:
            if s not in spec.scales:
                raise UsageError(f"{spec.name} does not support scale {s} (in scales)")
        if self.scales and spec.arch not in MULTI_SCALE_ARCHS:
            raise UsageError(
                f"{spec.name} keeps no scale-free weights: train one scale per recipe",
                hint="scales is for models whose weights serve every scale (vdsr)",
            )

    @property
    def channels(self) -> int:
        """What the network sees: 1 (luma) or 3 (RGB), from the model's spec."""
        return get_spec(self.model).channels

    @staticmethod
    def from_toml(path: Path, **overrides: object) -> TrainConfig:
        """Read a TOML recipe; ``overrides`` that are not None replace its keys.

        Raises InputNotFoundError, UsageError (not TOML, unknown or missing key, wrong type,
        bad value): one line each, exit 2 in the CLI."""
        path = Path(path)
        if not path.is_file():
            raise InputNotFoundError(f"config not found: {path}")
        try:
            raw = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise UsageError(f"{path.name} is not valid TOML: {exc}") from None
        raw.update({k: v for k, v in overrides.items() if v is not None})
        return TrainConfig.from_dict(raw, source=path.name)

    @staticmethod
    def from_dict(raw: dict[str, Any], *, source: str = "config") -> TrainConfig:
        """Check keys and types (ints are accepted for floats), then build."""
        fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
        unknown = sorted(set(raw) - set(fields))
        if unknown:
            raise UsageError(
                f"{source}: unknown key {unknown[0]!r}", hint=f"known keys: {', '.join(fields)}"
            )
        missing = [
            n
            for n, f in fields.items()
            if f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
            and n not in raw
        ]
        if missing:
            raise UsageError(f"{source}: missing key {missing[0]!r}")
        values: dict[str, Any] = {}
        for key, value in raw.items():
            kind = str(fields[key].type)
            bad = UsageError(f"{source}: {key} must be {_KIND_WORDS[kind]}, not {value!r}")
            if kind == "int":
                if isinstance(value, bool) or not isinstance(value, int):
                    raise bad
            elif kind == "float":
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise bad
                value = float(value)
            elif kind == "str":
                if not isinstance(value, str):
                    raise bad
            elif kind == "tuple[str, ...]":
                if isinstance(value, str):
                    value = [value]
                if not isinstance(value, list | tuple) or not all(
                    isinstance(v, str) for v in value
                ):
                    raise bad
                value = tuple(value)
            elif kind == "tuple[int, ...]":
                if not isinstance(value, list | tuple) or not all(
                    isinstance(v, int) and not isinstance(v, bool) for v in value
                ):
                    raise bad
                value = tuple(value)
            elif kind == "dict[str, str]":
                if not isinstance(value, dict) or not all(
                    isinstance(v, str | int | float) for v in value.values()
                ):
                    raise bad
                value = {str(k): str(v) for k, v in value.items()}
            values[key] = value
        return TrainConfig(**values)


_KIND_WORDS = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "tuple[str, ...]": "a list of folder paths",
    "tuple[int, ...]": "a list of integers",
    "dict[str, str]": "a table of strings",
}


def project_root(config: Path) -> Path:
    """Where a config's relative paths start: the nearest folder above it that holds a
    ``pyproject.toml`` (for ``configs/train/*.toml``, the repository root), else its folder."""
    config = Path(config).resolve()
    for folder in config.parents:
        if (folder / "pyproject.toml").is_file():
            return folder
    return config.parent


def resolve_dirs(dirs: tuple[str, ...], base: Path) -> list[Path]:
    """Config paths are relative to the project root (see :func:`project_root`)."""
    return [(base / d).resolve() if not Path(d).is_absolute() else Path(d) for d in dirs]
