"""``build_backend(options)``: the one place a backend is made from ``InferenceOptions``.

Every mode (``vsr run``, ``--resume``, ``batch``, ``stream``, ``image``, ``eval``,
``compare``) makes its backends here, so an option added to :class:`InferenceOptions`
reaches all of them.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from vsr.backends.options import InferenceOptions, device_key
from vsr.errors import UsageError
from vsr.media.frame import ColorInfo
from vsr.models.registry import LoadedModel, load_model

if TYPE_CHECKING:
    from vsr.backends.opencv_backend import OpenCVBackend
    from vsr.backends.openvino_backend import OpenVINOBackend
    from vsr.backends.torch_backend import TorchBackend

    Backend = TorchBackend | OpenCVBackend | OpenVINOBackend

__all__ = [
    "build_backend",
    "build_backends",
    "check_opencv_options",
    "import_openvino_backend",
    "openvino_installed",
    "resolve_backend",
    "runs_on_cpu",
]

log = logging.getLogger("vsr")

#: The one line ``--backend openvino`` answers without the openvino package.
OPENVINO_MISSING = "--backend openvino needs the openvino package: pip install 'vsr[openvino]'"


def import_openvino_backend() -> type[OpenVINOBackend]:
    """:class:`OpenVINOBackend`, or UsageError (one line) when openvino is not installed."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        raise UsageError(OPENVINO_MISSING) from None
    from vsr.backends.openvino_backend import OpenVINOBackend

    return OpenVINOBackend


def openvino_installed() -> bool:
    """Whether the openvino package can be imported (found without importing it)."""
    try:
        return importlib.util.find_spec("openvino") is not None
    except (ImportError, ValueError):
        return False


def resolve_backend(options: InferenceOptions) -> InferenceOptions:
    """``options`` with ``backend="auto"`` made concrete; other backends as they are.

    ``auto`` is ``openvino`` when every model stage runs on the CPU (``--device cpu``, or
    ``auto`` on a machine without CUDA or MPS), the precision is one openvino runs (auto,
    fp32, bf16, int8), ``--compile`` is off and the openvino package is installed; else
    ``torch``. ``int8`` always means openvino. Whether the network converts is found when
    the backend is built (:func:`build_backend` falls back to torch).
    """
    if options.backend != "auto":
        return options
    precision = str(options.precision).lower()
    if precision == "int8":
        return replace(options, backend="openvino")
    on_cpu = all(runs_on_cpu(name) for name in (options.devices or (options.device,)))
    use_openvino = (
        on_cpu
        and precision in ("auto", "fp32", "bf16")
        and options.compile == "off"
        and openvino_installed()
    )
    return replace(options, backend="openvino" if use_openvino else "torch")


def runs_on_cpu(device: str) -> bool:
    """Whether ``device`` (``auto`` resolved here) is the CPU."""
    kind = device_key(device).split(":")[0]
    if kind != "auto":
        return kind == "cpu"
    from vsr.backends.device import resolve_device

    return resolve_device("auto").type == "cpu"


def check_opencv_options(options: InferenceOptions, *, bit_depth: int) -> None:
    """Raise UsageError for what the opencv backend cannot do (before loading anything)."""
    if options.weights is None:
        raise UsageError(
            "the opencv backend needs --weights FILE.pb", hint="or use --backend torch"
        )
    if options.device not in ("auto", "cpu") or options.precision not in ("auto", "fp32"):
        raise UsageError(
            "the opencv backend runs in fp32 on the CPU",
            hint="drop --device/--precision or use --backend torch",
        )
    if bit_depth > 8:
        raise UsageError(
            f"the opencv backend takes 8-bit video, this is {bit_depth}-bit",
            hint="use --backend torch",
        )


def build_backend(
    options: InferenceOptions,
    *,
    color: ColorInfo | None = None,
    bit_depth: int = 8,
    model: LoadedModel | None = None,
    device: str | None = None,
    threads: int | None = None,
    calibration_source: Path | None = None,
) -> Backend:
    """The backend ``options.backend`` names, for a stream with ``color`` and ``bit_depth``,
    running ``model`` (default: ``load_model(options.model, options.scale,
    weights=options.weights)``) on ``device`` (default ``options.device``) with ``threads``
    CPU threads (default ``options.threads``, else all cores). ``calibration_source``:
    what ``--precision int8`` calibrates on when ``options.calibration`` is ``None`` (the
    input video of ``vsr run``); without either, int8 is refused.

    Raises UsageError (options the backend lacks), DeviceError, WeightsError.
    """
    auto = options.backend == "auto"
    options = resolve_backend(options)
    if options.backend == "opencv":
        check_opencv_options(options, bit_depth=bit_depth)
    openvino_backend = import_openvino_backend() if options.backend == "openvino" else None
    if model is None:
        model = load_model(options.model, options.scale, weights=options.weights)
    if openvino_backend is not None:
        try:
            return openvino_backend(
                model,
                color=color,
                threads=options.threads if threads is None else threads,
                tile=options.tile,
                tile_overlap=options.tile_overlap,
                self_ensemble=options.self_ensemble,
                precision=options.precision,
                calibration=(
                    options.calibration if options.calibration is not None else calibration_source
                ),
                strict=auto and options.precision != "int8",
            )
        except UsageError:
            raise
        except Exception as exc:
            if not auto or options.precision == "int8":
                raise
            log.info(
                "--backend auto: %s does not convert to OpenVINO (%s); running it in torch",
                model.spec.name,
                type(exc).__name__,
            )
            options = replace(options, backend="torch")
    if options.backend == "opencv":
        assert options.weights is not None
        from vsr.backends.opencv_backend import OpenCVBackend

        return OpenCVBackend(model, weights=options.weights, color=color)
    from vsr.backends.torch_backend import TorchBackend

    return TorchBackend(
        model,
        device=options.device if device is None else device,
        precision=options.precision,
        threads=options.threads if threads is None else threads,
        color=color,
        tile=options.tile,
        tile_overlap=options.tile_overlap,
        self_ensemble=options.self_ensemble,
        compile=options.compile,
    )


def build_backends(
    options: InferenceOptions,
    *,
    color: ColorInfo | None = None,
    bit_depth: int = 8,
    calibration_source: Path | None = None,
) -> list[Backend]:
    """One backend per entry of ``options.devices`` (or the one :func:`build_backend`
    makes), the model loaded once; ``calibration_source`` as :func:`build_backend`.

    Each backend gets its own copy of the network (moving a module to a device moves it
    in place). Several ``cpu`` entries share the cores: each gets ``cores // n`` threads
    (torch's thread count is per process, so they all run with that count).
    """
    if options.backend == "opencv":
        check_opencv_options(options, bit_depth=bit_depth)
    if resolve_backend(options).backend == "openvino":
        import_openvino_backend()  # before loading anything
    if options.devices:
        from vsr.backends.device import resolve_device

        for name in options.devices:  # unknown or missing devices before loading anything
            resolve_device(name)
    model = load_model(options.model, options.scale, weights=options.weights)
    if not options.devices:
        return [
            build_backend(
                options,
                color=color,
                bit_depth=bit_depth,
                model=model,
                calibration_source=calibration_source,
            )
        ]
    n_cpu = sum(device_key(d).startswith("cpu:") for d in options.devices)
    threads = max(1, (os.cpu_count() or 1) // n_cpu) if n_cpu > 1 else None
    # Copy before any backend moves (or converts) the original module.
    models = [model] + [
        replace(model, module=copy.deepcopy(model.module)) for _ in options.devices[1:]
    ]
    return [
        build_backend(
            options,
            color=color,
            bit_depth=bit_depth,
            model=m,
            device=d,
            threads=threads,
            calibration_source=calibration_source,
        )
        for m, d in zip(models, options.devices, strict=True)
    ]
