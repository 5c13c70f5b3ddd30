"""``--backend openvino``: the torch backend's path with the network run by OpenVINO on the CPU.

Everything but the network call is :class:`~vsr.backends.torch_backend.TorchBackend`'s
(cpu, fp32): the colour path, chroma, padding, tiles, the x8 self-ensemble and the
quantisation. Only :meth:`OpenVINOBackend._call_module` differs: the padded NCHW batch goes
through an OpenVINO model compiled for the CPU (latency hint, ``threads`` inference threads,
f32 inference precision: on CPUs with AMX/AVX512-BF16 OpenVINO would otherwise run in bf16,
several code values away from torch).

``precision``: ``auto``/``fp32`` run exactly that; ``bf16`` compiles with the bf16
inference precision where the CPU has it (``OPTIMIZATION_CAPABILITIES`` lists ``BF16``:
AVX512-BF16 or AMX) and is refused in one line where it has not; ``int8`` runs the network
quantised by NNCF on calibration samples (:mod:`vsr.backends.quantize`: which weights it
ships for, how the samples are made), cached like the fp32 model under a key that also
covers the samples, the quantisation recipe and the nncf version.

The network is converted once (``openvino.convert_model`` on the torch module) with a
dynamic batch, height and width, so any frame or tile size runs without recompiling; an
architecture whose dynamic conversion fails is converted and compiled per input shape
instead. Converted models are kept in ``<cache>/openvino/<key>.xml`` (``<cache>``:
``$VSR_CACHE``, else ``$XDG_CACHE_HOME/vsr``, else ``~/.cache/vsr``; ``<key>``: sha256 of the
weights, the architecture, the scale and the layers as converted), so a later run skips the
conversion.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import torch

from vsr.backends.torch_backend import TorchBackend
from vsr.errors import UsageError
from vsr.media.frame import ColorInfo, Frame
from vsr.models.registry import LoadedModel

log = logging.getLogger("vsr")

__all__ = ["OpenVINOBackend", "cpu_has_bf16", "openvino_cache_dir", "openvino_version"]

#: Spatial size of the example input used to trace the network (rounded up to its multiple).
_EXAMPLE = 32


def openvino_version() -> str:
    """``2026.4.1`` (the release, without the build suffix)."""
    return str(ov.__version__).split("-")[0]


def openvino_cache_dir() -> Path:
    """Where converted models are kept: ``<vsr cache>/openvino``."""
    from vsr.models.download import cache_dir

    return cache_dir() / "openvino"


def model_key(model: LoadedModel) -> str:
    """sha256 of the state dict (names, shapes, dtypes and bytes), architecture and scale."""
    h = hashlib.sha256()
    h.update(f"{model.spec.arch}\0{model.spec.name}\0x{model.scale}\0".encode())
    h.update(type(model.module).__name__.encode())
    for name, t in model.module.state_dict().items():
        t = t.detach().to("cpu").contiguous()
        h.update(f"\0{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def cpu_has_bf16(core: Any) -> bool:
    """Whether OpenVINO runs bf16 on this CPU (AVX512-BF16 or AMX)."""
    try:
        caps = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:
        return False
    return "BF16" in [str(c).upper() for c in caps]


class OpenVINOBackend(TorchBackend):
    """:class:`TorchBackend` on the CPU (fp32, bf16 or int8), with the network run by
    OpenVINO."""

    name = "openvino"

    def __init__(
        self,
        model: LoadedModel,
        *,
        color: ColorInfo | None = None,
        threads: int | None = None,
        tile: int = 0,
        tile_overlap: int | None = None,
        tile_batch: int | None = None,
        self_ensemble: bool = False,
        cache_dir: Path | None = None,
        precision: str = "fp32",
        calibration: Path | None = None,
        strict: bool = False,
    ) -> None:
        """``cache_dir``: where converted models are kept (default
        :func:`openvino_cache_dir`). ``precision``: ``auto``/``fp32``, ``bf16`` or ``int8``;
        ``calibration``: int8's calibration images (a folder or one image) or video (the
        input of ``vsr run``, or ``--calibration``). ``strict``: raise when the network
        does not convert with a dynamic size (``--backend auto`` then runs torch) instead
        of compiling it per input size.

        Raises UsageError: a precision openvino does not run, bf16 on a CPU without it,
        int8 without nncf, for weights it was not measured on (:mod:`vsr.backends.quantize`)
        or without calibration data."""
        precision = str(precision).lower()
        precision = "fp32" if precision == "auto" else precision
        if precision not in ("fp32", "bf16", "int8"):
            raise UsageError(
                f"--backend openvino runs in fp32, bf16 or int8, not {precision}",
                hint="drop --precision or use --backend torch",
            )
        self.precision = precision
        self._core = ov.Core()
        if precision == "bf16" and not cpu_has_bf16(self._core):
            raise UsageError("this CPU has no bf16; use --precision fp32")
        if precision == "int8":
            from vsr.backends import quantize

            quantize.import_nncf()
            if calibration is None:
                raise UsageError(
                    "--precision int8 needs --calibration FOLDER or VIDEO here "
                    "(images or a video to calibrate on)"
                )
            quantize.check_int8_allowed(
                model_key(model), name=model.spec.name, scale=model.scale, source=model.source
            )
        super().__init__(
            model,
            device="cpu",
            precision="fp32",
            color=color,
            threads=threads,
            channels_last=False,  # OpenVINO takes plain NCHW arrays
            tile=tile,
            tile_overlap=tile_overlap,
            tile_batch=tile_batch,
            self_ensemble=self_ensemble,
            compile="off",
        )
        self.ov_threads = threads or os.cpu_count() or 1
        self.cache_dir = cache_dir if cache_dir is not None else openvino_cache_dir()
        # the cache key: the weights, and the network as converted (self.module is the
        # inference copy, vsr.models.deploy: a changed rewrite is a new entry)
        self._key = hashlib.sha256(f"{model_key(model)}\0{self.module!r}".encode()).hexdigest()
        self._capture: list[np.ndarray] | None = None  # calibration: the inputs seen
        self._dynamic: Any = None  # the compiled model with dynamic N, H, W
        self._static: dict[tuple[int, ...], Any] = {}  # per input shape, when that failed
        try:
            self._dynamic = self._compile(self._load_or_convert(None))
        except Exception as exc:
            if strict:
                raise
            log.warning(
                "OpenVINO: %s does not convert with a dynamic size (%s: %s); "
                "compiling it per input size",
                self.spec.name,
                type(exc).__name__,
                (str(exc).strip().splitlines() or [""])[0][:200],
            )
        if precision == "int8":
            assert calibration is not None
            if self._dynamic is None:
                raise UsageError(
                    f"--precision int8: {self.spec.name} does not convert to OpenVINO "
                    "with a dynamic size",
                    hint="use --precision fp32",
                )
            self._dynamic = self._compile(self._quantized(Path(calibration)))

    @property
    def description(self) -> str:
        extra = f", tiles {self.tile}+{self.tile_overlap}" if self.tile else ""
        extra += ", x8 self-ensemble" if self.self_ensemble else ""
        return f"cpu {self.precision} (OpenVINO {openvino_version()}){extra}"

    # -- int8 -------------------------------------------------------------------------------
    def calibration_samples(self, source: Path) -> list[np.ndarray]:
        """The network's inputs for crops of ``source`` (a video, a folder of images or an
        image: :func:`vsr.backends.quantize.calibration_inputs`), made by this backend's
        own pre-processing (video frames through :meth:`upscale`, images through
        :class:`vsr.images.ImageUpscaler`) with the fp32 model."""
        from vsr.backends.quantize import calibration_inputs
        from vsr.images import ImageUpscaler

        upscaler = ImageUpscaler(self)
        self._capture = []
        try:
            for item in calibration_inputs(source):
                if isinstance(item, Frame):
                    self.upscale([item])
                else:
                    upscaler.upscale(item)
            samples = self._capture
        finally:
            self._capture = None
        if not samples:
            raise UsageError(f"no calibration samples could be made from {source}")
        return samples

    def _quantized(self, source: Path) -> Any:
        """The int8 model calibrated on ``source``: from the cache when the same samples,
        recipe and nncf made it before, else quantised and saved."""
        from vsr.backends import quantize

        samples = self.calibration_samples(source)
        h = hashlib.sha256()
        for part in (self._key, "int8", quantize.nncf_version(), quantize.RECIPE):
            h.update(f"{part}\0".encode())
        h.update(quantize.samples_digest(samples).encode())
        path = self.cache_dir / f"{h.hexdigest()}-int8.xml"
        if path.exists() and path.with_suffix(".bin").exists():
            try:
                return self._core.read_model(str(path))
            except Exception as exc:  # a damaged cache entry: quantise again
                log.warning("OpenVINO: cannot read %s (%s), quantising again", path, exc)
        log.info(
            "OpenVINO: quantising %s x%d to int8 on %d samples from %s",
            self.spec.name,
            self.scale,
            len(samples),
            source,
        )
        quantized = quantize.quantize_model(self._load_or_convert(None), samples)
        self._save(quantized, path)
        return quantized

    # -- conversion, cache, compilation -----------------------------------------------------
    def _cache_path(self, shape: tuple[int, ...] | None) -> Path:
        suffix = "" if shape is None else "-" + "x".join(map(str, shape))
        return self.cache_dir / f"{self._key}{suffix}.xml"

    def _load_or_convert(self, shape: tuple[int, ...] | None) -> Any:
        """The OpenVINO model for ``shape`` (``None``: dynamic N, H, W), from the cache when
        it is there, else converted and saved."""
        path = self._cache_path(shape)
        if path.exists() and path.with_suffix(".bin").exists():
            try:
                return self._core.read_model(str(path))
            except Exception as exc:  # a damaged cache entry: convert again
                log.warning("OpenVINO: cannot read %s (%s), converting again", path, exc)
        c = self.spec.channels
        if shape is None:
            side = -(-_EXAMPLE // self.spec.size_multiple) * self.spec.size_multiple
            example = torch.rand(1, c, side, side)
            kwargs: dict[str, Any] = {"input": [ov.PartialShape([-1, c, -1, -1])]}
        else:
            example = torch.rand(*shape)
            kwargs = {"input": [ov.PartialShape(list(shape))]}
        with torch.no_grad(), warnings.catch_warnings():
            # torch.jit.trace's deprecation and tracer warnings: nothing the user can act on
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            converted = ov.convert_model(self.module, example_input=example, **kwargs)
        self._save(converted, path)
        return converted

    def _save(self, converted: Any, path: Path) -> None:
        """Write ``path`` (.xml) and its .bin: both into a temporary folder beside them, then
        renamed, the .bin first (the .xml is what marks the entry as present)."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".vsr-tmp-", dir=path.parent))
            try:
                ov.save_model(converted, str(tmp / path.name), compress_to_fp16=False)
                os.replace(tmp / path.with_suffix(".bin").name, path.with_suffix(".bin"))
                os.replace(tmp / path.name, path)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError as exc:  # the cache is an optimisation: never fatal
            log.warning("OpenVINO: cannot cache the converted model in %s: %s", path.parent, exc)

    def _compile(self, converted: Any) -> Any:
        """Compiled for the CPU: latency hint, ``ov_threads`` threads, f32 inference
        precision (bf16 for ``bf16``; int8 keeps its fp32 layers exact)."""
        return self._core.compile_model(
            converted,
            "CPU",
            {
                "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_NUM_THREADS": str(self.ov_threads),
                "INFERENCE_PRECISION_HINT": "bf16" if self.precision == "bf16" else "f32",
            },
        )

    # -- the network ------------------------------------------------------------------------
    def _call_module(self, x: torch.Tensor) -> torch.Tensor:
        """The network on a padded batch, run by OpenVINO."""
        n, c = x.shape[:2]
        if self.spec.planewise and c != self.spec.channels:
            # a plane-wise network given all planes at once (vsr image, compare: RGB): the
            # converted network takes one plane, so the planes go as a batch
            out = self._call_module(x.reshape(n * c, 1, *x.shape[2:]))
            return out.reshape(n, c, *out.shape[2:])
        array = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        if self._capture is not None:
            self._capture.append(array.copy())
        compiled = self._dynamic
        if compiled is None:
            shape = tuple(array.shape)
            compiled = self._static.get(shape)
            if compiled is None:
                compiled = self._static[shape] = self._compile(self._load_or_convert(shape))
        out = compiled(array)[0]
        return torch.from_numpy(np.array(out, copy=True))
