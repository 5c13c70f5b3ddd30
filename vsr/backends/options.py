"""``InferenceOptions``: what the model stage is asked to do, declared and checked once.

Every mode holds one (``RunConfig``, ``StreamConfig``, ``ImageConfig``, ``EvalConfig``,
``CompareConfig``, and ``vsr batch`` through ``RunConfig``), and every backend is made from
one by :func:`vsr.backends.build.build_backend`. The options are validated when they are
made, so a mode never checks them again. This module imports no torch: the CLI and the
config loader use it before anything heavy is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from vsr.errors import UsageError

__all__ = [
    "BACKENDS",
    "COMPILE_MODES",
    "INFERENCE_FIELDS",
    "PRECISIONS",
    "SMALLEST_TILE",
    "InferenceOptions",
    "check_compile",
    "check_devices",
    "check_inference_options",
    "check_openvino_device",
    "device_key",
]

#: ``auto`` (the default): openvino on the CPU when it is installed and the network converts,
#: else torch (:func:`vsr.backends.build.resolve_backend`).
BACKENDS = ("auto", "torch", "opencv", "openvino")
#: ``int8``: post-training quantisation, openvino only (:mod:`vsr.backends.quantize`).
PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8")
SMALLEST_TILE = 8  # what --tile accepts (out-of-memory recovery stops at 16)
#: ``compile`` values: eager, ``torch.compile(module)``, and its CUDA-graph mode.
COMPILE_MODES = ("off", "default", "reduce-overhead")


@dataclass(frozen=True)
class InferenceOptions:
    """The model, its weights, and how and where it runs.

    ``devices``: several devices, one model stage each (``("cuda:0", "cuda:1")``); ``()``
    uses ``device``. ``cpu`` may repeat (splitting the cores between stages).
    ``batch_size`` ``None``: the backend's default (1 on the CPU, 8 on a GPU). ``tile``: core
    tile size in input pixels (0: whole frames); ``tile_overlap`` ``None``: 16. ``threads``:
    torch CPU threads (``None``: all cores).

    Raises:
        UsageError: a value no backend accepts, or a combination the backend lacks.
    """

    model: str = "espcn"
    scale: int = 3
    weights: Path | None = None
    backend: str = "auto"  # "torch"; "opencv": cv2.dnn_superres on a .pb; "openvino": CPU
    device: str = "auto"
    devices: tuple[str, ...] = ()
    precision: str = "auto"
    batch_size: int | None = None
    tile: int = 0
    tile_overlap: int | None = None
    self_ensemble: bool = False  # x8 geometric self-ensemble
    compile: str = "off"  # torch.compile: "off", "default" or "reduce-overhead"
    threads: int | None = None
    calibration: Path | None = None  # --precision int8: images folder or video

    def __post_init__(self) -> None:
        # Normalise what config files and pickled batch jobs carry (str paths, lists).
        for name in ("weights", "calibration"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
        if isinstance(self.devices, list):
            object.__setattr__(self, "devices", tuple(self.devices))
        if not isinstance(self.scale, int) or isinstance(self.scale, bool) or self.scale < 1:
            raise UsageError(f"scale must be a positive integer, got {self.scale}")
        if self.batch_size is not None and self.batch_size < 1:
            raise UsageError(f"batch size must be at least 1, got {self.batch_size}")
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"threads must be at least 1, got {self.threads}")
        if str(self.precision).lower() not in PRECISIONS:
            raise UsageError(
                f"unknown precision {self.precision!r}",
                hint="use auto, fp32, fp16, bf16 or int8",
            )
        check_compile(self.compile, backend=self.backend)
        check_openvino_device(self.backend, self.device, self.precision, self.calibration)
        check_inference_options(
            backend=self.backend,
            tile=self.tile,
            tile_overlap=self.tile_overlap,
            self_ensemble=self.self_ensemble,
        )
        check_devices(self.devices, backend=self.backend, device=self.device)

    @property
    def first_device(self) -> str:
        """The device of the (first) model stage: ``devices[0]``, else ``device``."""
        return self.devices[0] if self.devices else self.device

    @classmethod
    def take(cls, values: dict[str, Any]) -> InferenceOptions:
        """Options from the matching keys of ``values``, which are removed from it (a flat
        mapping such as a config file's or a batch job's); the rest stay for the caller."""
        picked = {name: values.pop(name) for name in INFERENCE_FIELDS if name in values}
        return cls(**picked)


#: The field names of :class:`InferenceOptions` (flat keys of config files and jobs).
INFERENCE_FIELDS = tuple(f.name for f in fields(InferenceOptions))


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
        if backend == "openvino" and not key.startswith("cpu:"):
            raise UsageError(
                f"--backend openvino runs on the CPU, not {name}",
                hint="list only cpu in --devices or use --backend torch",
            )
        if key in seen and not key.startswith("cpu:"):
            raise UsageError(
                f"device {name!r} is listed twice in --devices",
                hint="one model stage per device; only cpu may repeat",
            )
        seen.add(key)


def check_compile(mode: object, *, backend: str = "torch") -> None:
    """Raise UsageError for an unknown compile mode, or one asked of the opencv or openvino
    backend."""
    if mode not in COMPILE_MODES:
        raise UsageError(f"unknown compile mode {mode!r}", hint=f"use {', '.join(COMPILE_MODES)}")
    if mode != "off" and backend in ("opencv", "openvino"):
        raise UsageError("--compile needs the torch backend", hint="drop it or use --backend torch")


def check_openvino_device(
    backend: str, device: str, precision: str, calibration: Path | None = None
) -> None:
    """Raise UsageError when the openvino backend is asked for another device than the CPU
    or a precision it lacks (it runs fp32, bf16 and int8), when int8 is asked of a backend
    other than openvino (or auto), or a calibration set is given without int8."""
    precision = str(precision).lower()
    if precision == "int8" and backend not in ("auto", "openvino"):
        raise UsageError(
            "--precision int8 needs the openvino backend",
            hint="use --backend openvino (pip install 'vsr[openvino]')",
        )
    if calibration is not None and precision != "int8":
        raise UsageError(
            "--calibration is for --precision int8", hint="drop it or add --precision int8"
        )
    if precision == "int8" and device_key(device).split(":")[0] not in ("auto", "cpu"):
        raise UsageError(
            f"--precision int8 runs on the CPU (openvino), not {device}",
            hint="drop --device or use --precision fp16/bf16",
        )
    if backend != "openvino":
        return
    if device_key(device).split(":")[0] not in ("auto", "cpu"):
        raise UsageError(
            f"--backend openvino runs on the CPU, not {device}",
            hint="drop --device or use --backend torch",
        )
    if precision not in ("auto", "fp32", "bf16", "int8"):
        raise UsageError(
            f"--backend openvino runs in fp32, bf16 or int8, not {precision}",
            hint="drop --precision or use --backend torch",
        )


def check_inference_options(
    *, backend: str, tile: int, tile_overlap: int | None, self_ensemble: bool
) -> None:
    """Raise UsageError for a bad backend, tile size or overlap, or options the
    ``opencv`` backend does not have (tiles, self-ensemble)."""
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}", hint=f"use {', '.join(BACKENDS)}")
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
