"""``--precision int8``: NNCF post-training quantisation of the OpenVINO model.

The network's own input tensors (what :meth:`OpenVINOBackend._call_module` receives:
NCHW float after the colour conversion and padding) are the calibration samples. They are
made by the backend's own pre-processing from crops of

- the frames of a video (``vsr run``/``vsr batch`` without ``--calibration``: the input;
  or ``--calibration VIDEO``): :data:`SAMPLES` frames spread evenly over it, or
- the images of a folder (``--calibration FOLDER``, or one image file): up to
  :data:`SAMPLES` of them, spread over the sorted list, several crops each when there are
  fewer.

Each sample is a crop of at most :data:`CROP` pixels a side, so calibrating takes seconds.

**Where int8 ships.** An SR network regresses pixels, and int8 costs PSNR. ``int8`` runs
only for weights whose loss was measured under :data:`MAX_LOSS_DB` on Set5 and Set14 with
``vsr eval`` (docs/precision.md has the commands and the table): :data:`MEASURED_INT8`
maps the weights' identity (:func:`vsr.backends.openvino_backend.model_key`, the sha256 of
the state dict, architecture and scale) to the measured loss. The built-in weights of a
model not in that table, or over the threshold, are refused in one line stating the
measured loss (or that it is unmeasured). Weights of the user's own (``--weights FILE``)
that are not in the table run with one warning that their loss is unmeasured: the user
chose them and can measure them with ``vsr eval --weights FILE --precision int8``.

nncf is imported only here and only when int8 is asked for; without it the one line is
:data:`NNCF_MISSING`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from vsr.errors import UsageError
from vsr.media.frame import PLANAR_FORMATS, Frame

log = logging.getLogger("vsr")

__all__ = [
    "CROP",
    "MAX_LOSS_DB",
    "MEASURED_INT8",
    "NNCF_MISSING",
    "SAMPLES",
    "UNCHECKED_ENV",
    "Int8Loss",
    "calibration_inputs",
    "check_int8_allowed",
    "import_nncf",
    "nncf_version",
    "quantize_model",
    "samples_digest",
]

#: The one line ``--precision int8`` answers without the nncf package.
NNCF_MISSING = "--precision int8 needs the nncf package: pip install 'vsr[openvino]'"
#: int8 ships only where it loses less than this on Set5 and on Set14 (fp32 - int8, dB).
MAX_LOSS_DB = 0.1
#: Calibration samples (crops) per model.
SAMPLES = 24
#: Largest side of a calibration crop, in input (low-resolution) pixels.
CROP = 128
#: Set to 1 to run int8 on any weights (how :data:`MEASURED_INT8` is measured).
UNCHECKED_ENV = "VSR_INT8_UNCHECKED"
#: Changes whenever the quantisation settings below change (part of the cache key).
RECIPE = "v1: minmax activations, overflow fix off, bias correction, first+last conv fp32"


@dataclass(frozen=True)
class Int8Loss:
    """The PSNR int8 lost against fp32 (OpenVINO, ``vsr eval``), in dB (positive: lost)."""

    model: str
    scale: int
    weights: str
    set5_db: float
    set14_db: float

    @property
    def worst_db(self) -> float:
        return max(self.set5_db, self.set14_db)

    @property
    def ships(self) -> bool:
        return self.worst_db < MAX_LOSS_DB


#: ``model_key(model)[:16]`` -> the loss measured by the commands in docs/precision.md
#: (calibrated on ``../shared/data/train/T91``), OpenVINO 2026.4.1, nncf 3.4.0.
MEASURED_INT8: dict[str, Int8Loss] = {
    "e3fe3d68a31e415b": Int8Loss("espcn", 2, "built-in", 0.242, 0.086),
    "af35a8e4a9501346": Int8Loss("espcn", 3, "built-in", 0.118, 0.046),
    "0ecc712a17dc5a0d": Int8Loss("espcn", 4, "built-in", 0.087, 0.039),
    "634186e82bcb825f": Int8Loss("fsrcnn", 2, "built-in", 1.643, 0.632),
    "24a927cbe36c9fc0": Int8Loss("fsrcnn", 3, "built-in", 0.554, 0.288),
    "1445d5367b5f9489": Int8Loss("fsrcnn", 4, "built-in", 0.301, 0.171),
    "cb7812b9eaf750db": Int8Loss("espcn", 2, "ESPCN_x2.pb", 0.204, 0.096),
    "3a753a1630261644": Int8Loss("espcn", 3, "ESPCN_x3.pb", 0.012, 0.002),
    "b76062ad3efb3259": Int8Loss("espcn", 4, "ESPCN_x4.pb", 0.043, 0.026),
    "f6b251a28e6a1d06": Int8Loss("fsrcnn", 2, "FSRCNN_x2.pb", 0.655, 0.344),
    "2301cb26b50d775c": Int8Loss("fsrcnn", 3, "FSRCNN_x3.pb", 0.561, 0.251),
    "b6d6fa5fce2bd0bf": Int8Loss("fsrcnn", 4, "FSRCNN_x4.pb", 0.130, 0.086),
    "c82888d295939f68": Int8Loss("fsrcnn", 2, "FSRCNN-small_x2.pb", 0.241, 0.122),
    "e77596379bb5f459": Int8Loss("fsrcnn", 3, "FSRCNN-small_x3.pb", 0.086, 0.052),
    "6d013c9b191304a3": Int8Loss("fsrcnn", 4, "FSRCNN-small_x4.pb", 0.054, 0.034),
    "9279f0f54444fa63": Int8Loss("srcnn", 3, "built-in", 0.824, 0.348),
}


# -- nncf ----------------------------------------------------------------------------------


def import_nncf() -> Any:
    """The nncf module, or UsageError (:data:`NNCF_MISSING`) when it is not installed."""
    try:
        import nncf
    except ImportError:
        raise UsageError(NNCF_MISSING) from None
    logging.getLogger("nncf").setLevel(logging.WARNING)  # no per-step info lines
    return nncf


def nncf_version() -> str:
    """The installed nncf's version (``3.4.0``)."""
    return str(import_nncf().__version__)


def check_int8_allowed(key: str, *, name: str, scale: int, source: str) -> None:
    """Raise UsageError unless int8 may run the weights whose :func:`model_key` is ``key``.

    ``source`` is ``LoadedModel.source``: ``built-in``/``none``, or the path of weights of
    the user's own. Weights in :data:`MEASURED_INT8` run when their loss is under
    :data:`MAX_LOSS_DB` and are refused (stating it) otherwise; built-in weights not in
    the table are refused as unmeasured; the user's own weights not in the table run with
    a warning when int8 ships for some weights of the same model and scale (else they are
    refused as unmeasured). ``VSR_INT8_UNCHECKED=1`` skips the table (with a warning):
    it is how the table is measured (docs/precision.md).
    """
    measured = MEASURED_INT8.get(key[:16])
    own = source not in ("built-in", "none")
    what = f"{name} x{scale}" + (f" ({Path(source).name})" if own else "")
    if os.environ.get(UNCHECKED_ENV, "") not in ("", "0"):
        log.warning("%s is set: --precision int8 runs %s unchecked", UNCHECKED_ENV, what)
        return
    if measured is not None:
        if measured.ships:
            return
        raise UsageError(
            f"--precision int8 loses {measured.worst_db:.2f} dB PSNR on {what} "
            f"(Set5 {measured.set5_db:.2f}, Set14 {measured.set14_db:.2f}; "
            f"int8 ships under {MAX_LOSS_DB} dB)",
            hint="use --precision bf16 or fp32",
        )
    if own and any(m.ships and (m.model, m.scale) == (name, scale) for m in MEASURED_INT8.values()):
        log.warning(
            "--precision int8: the PSNR it costs on %s is unmeasured; check it with "
            "vsr eval --weights %s --precision int8 --calibration FOLDER",
            what,
            source,
        )
        return
    raise UsageError(
        f"--precision int8 is unmeasured for {what} (it ships only where Set5/Set14 "
        f"lose under {MAX_LOSS_DB} dB)",
        hint="use --precision bf16 or fp32",
    )


# -- calibration inputs --------------------------------------------------------------------


def _is_image(path: Path) -> bool:
    from vsr.images import IMAGE_SUFFIXES

    return path.suffix.lower() in IMAGE_SUFFIXES


def calibration_inputs(path: Path, count: int = SAMPLES) -> Iterator[Frame | np.ndarray]:
    """``count`` crops of what ``path`` holds: :class:`Frame` crops of a video, or image
    crops (as :func:`vsr.images.read_image` returns them) of a folder of images or one
    image. Raises UsageError (nothing usable), InputNotFoundError, MediaError."""
    from vsr.errors import InputNotFoundError

    path = Path(path)
    if not path.exists():
        raise InputNotFoundError(f"calibration input not found: {path}")
    if path.is_dir() or _is_image(path):
        yield from _image_crops(path, count)
    else:
        yield from _video_crops(path, count)


def _spots(h: int, w: int, k: int, n: int, align: tuple[int, int] = (1, 1)) -> tuple[int, int]:
    """Top-left corner of crop ``k`` of ``n`` (spread along the diagonal), aligned."""
    frac = (k + 0.5) / n
    top = int((h - min(h, CROP)) * frac) // align[0] * align[0]
    left = int((w - min(w, CROP)) * (1 - frac)) // align[1] * align[1]
    return top, left


def _image_crops(path: Path, count: int) -> Iterator[np.ndarray]:
    from vsr.images import read_image

    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and _is_image(p))
        if not files:
            raise UsageError(f"no images in {path}", hint="--calibration takes images or a video")
    else:
        files = [path]
    picked = [files[int(i * len(files) / count)] for i in range(min(count, len(files)))]
    per = math.ceil(count / len(picked))
    made = 0
    for file in picked:
        img = read_image(file)
        h, w = img.shape[:2]
        for k in range(per):
            if made == count:
                return
            top, left = _spots(h, w, k, per)
            yield np.ascontiguousarray(img[top : top + CROP, left : left + CROP])
            made += 1


def _video_crops(path: Path, count: int) -> Iterator[Frame]:
    """Frames spread evenly over the video (a seek, then decoding up to the frame), each
    cropped. Not deinterlaced: the crops only set the quantisation ranges."""
    from vsr.media.decode import frame_from_av
    from vsr.media.probe import open_input, probe

    video = probe(path).video
    tb = video.time_base
    start = video.start_time or 0
    duration = video.duration
    if duration is None or duration <= 0:
        n = video.frames_estimate
        rate = video.frame_rate
        duration = Fraction(n) / rate if n and rate else None
    targets = [
        start + int(Fraction(k * 2 + 1, 2 * count) * duration / tb) if duration else start
        for k in range(count)
    ]
    container = open_input(path)
    try:
        stream = container.streams[video.index]
        stream.thread_type = "AUTO"
        seen: set[int] = set()
        for k, target in enumerate(targets):
            frame = _frame_at(container, stream, target)
            if frame is None or (frame.pts is not None and frame.pts in seen):
                continue
            if frame.pts is not None:
                seen.add(frame.pts)
            f = frame_from_av(frame, index=k, pts=frame.pts, time_base=tb)
            sub = PLANAR_FORMATS[f.pix_fmt]
            top, left = _spots(f.height, f.width, k, count, (1 << sub[2], 1 << sub[1]))
            planes = []
            for i, p in enumerate(f.planes):
                sy, sx = (sub[2], sub[1]) if i else (0, 0)
                size_y, size_x = -(-CROP // (1 << sy)), -(-CROP // (1 << sx))
                planes.append(
                    np.ascontiguousarray(
                        p[top >> sy : (top >> sy) + size_y, left >> sx : (left >> sx) + size_x]
                    )
                )
            yield Frame(k, f.pts, tb, (planes[0], planes[1], planes[2]), f.pix_fmt)
    finally:
        container.close()


def _frame_at(container: Any, stream: Any, target: int) -> Any:
    """The first decoded frame at or after ``target`` (pts), else the last one decoded."""
    with contextlib.suppress(Exception):  # a stream that cannot seek: take what comes next
        container.seek(target, stream=stream, backward=True, any_frame=False)
    last = None
    for frame in container.decode(stream):
        last = frame
        if frame.pts is None or frame.pts >= target:
            return frame
    return last


def samples_digest(samples: list[np.ndarray]) -> str:
    """sha256 of the calibration tensors (shapes, dtypes and bytes)."""
    h = hashlib.sha256()
    for s in samples:
        h.update(f"{s.dtype}{s.shape}\0".encode())
        h.update(np.ascontiguousarray(s).tobytes())
    return h.hexdigest()


# -- quantisation --------------------------------------------------------------------------


def quantize_model(converted: Any, samples: list[np.ndarray]) -> Any:
    """``converted`` (an ``openvino.Model``) quantised to int8 by NNCF on ``samples``.

    Settings (what kept ESPCN x3 under 0.1 dB, docs/precision.md): activation ranges from
    the min and max seen (the default mean of per-sample extremes clips these
    regressions), full 8-bit weights (no overflow fix: the 7-bit first layer cost PSNR),
    the exact bias correction, and the first and last convolutions (the image in, the
    image out) left in fp32.
    """
    nncf = import_nncf()
    convs = [
        op.get_friendly_name()
        for op in converted.get_ordered_ops()
        if op.get_type_name()
        in ("Convolution", "GroupConvolution", "ConvolutionBackpropData", "MatMul")
    ]
    ignored = nncf.IgnoredScope(names=[convs[0], convs[-1]] if len(convs) > 2 else convs)
    # nncf draws progress bars on stdout, which is vsr's --json output: silenced.
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        return _quantize(nncf, converted, samples, ignored)


def _quantize(nncf: Any, converted: Any, samples: list[np.ndarray], ignored: Any) -> Any:
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        OverflowFix,
    )
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    return nncf.quantize(
        converted,
        nncf.Dataset(samples),
        subset_size=len(samples),
        fast_bias_correction=False,
        ignored_scope=ignored,
        advanced_parameters=AdvancedQuantizationParameters(
            overflow_fix=OverflowFix.DISABLE,
            activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX,
        ),
    )
