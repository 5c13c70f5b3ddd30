"""The OpenCV backend: ``cv2.dnn_superres`` running an OpenCV ``.pb`` graph, frame by frame.

This is the reference the torch backend is checked against, not a fast path: OpenCV's own
network code (its TensorFlow importer and DNN engine) on the CPU, one frame at a time, with
OpenCV's own pre- and post-processing. ``DnnSuperResImpl.upsample`` takes 8-bit BGR, so
each decoded YUV frame goes YUV -> BGR and back with the stream's own matrix and range:

- in: chroma upsampled bilinearly (``cv2.resize``) to the luma size, YUV -> RGB with the
  float64 reference matrices of ``vsr.media.color``, rounded to 8-bit BGR;
- OpenCV: BGR -> YCrCb (BT.601, full range, uint8), the network on Y, Cr/Cb resized
  bilinearly, YCrCb -> BGR (uint8);
- out: RGB -> YUV with the same matrices (float64), chroma averaged down to the stream's
  subsampling (``subsample``), rounded.

So it differs from the torch path (which stays in YUV and feeds the stream's Y to the
network) by the colour round trip: two 8-bit RGB quantisations, OpenCV's 8-bit YCrCb, its
full-range BT.601 luma instead of the stream's (limited range, or another matrix),
bilinear instead of bicubic chroma, and RGB gamut clipping of out-of-gamut YUV.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from vsr.errors import UsageError, WeightsError
from vsr.media.color import rgb_to_yuv, subsample, to_code, yuv_to_rgb
from vsr.media.frame import PLANAR_FORMATS, ColorInfo, Frame
from vsr.models.registry import LoadedModel

log = logging.getLogger("vsr")

#: Families ``cv2.dnn_superres`` can run that vsr reads from ``.pb`` (``setModel`` names).
OPENCV_ALGOS = ("espcn", "fsrcnn", "lapsrn", "edsr")

#: What to install for ``--backend opencv`` (the last OpenCV releases with a TF importer).
OPENCV_PB_REQUIREMENT = "opencv-contrib-python-headless<5.1"


def opencv_pb_problem() -> str | None:
    """Why this OpenCV cannot run dnn_superres ``.pb`` graphs, or ``None`` if it can.

    ``DnnSuperResImpl.readModel`` reads a ``.pb`` with OpenCV's TensorFlow importer
    (``cv2.dnn.readNetFromTensorflow``). OpenCV 5.1 removed that importer: there
    ``readModel`` hands the file to the ONNX importer, which fails on it. The module
    ``dnn_superres`` itself is in the contrib builds only.
    """
    version = getattr(cv2, "__version__", "?")
    if not hasattr(cv2, "dnn_superres"):
        return f"this OpenCV ({version}) has no dnn_superres module (it is in the contrib builds)"
    if not hasattr(getattr(cv2, "dnn", None), "readNetFromTensorflow"):
        return (
            f"OpenCV {version} cannot read .pb graphs: its TensorFlow importer, which "
            "dnn_superres needs, was removed in OpenCV 5.1"
        )
    return None


def require_opencv_pb() -> None:
    """Raise UsageError (one line, exit 2) when this OpenCV cannot run ``.pb`` graphs."""
    problem = opencv_pb_problem()
    if problem is not None:
        raise UsageError(
            f"--backend opencv is not available: {problem}",
            hint="use the default --backend torch, which reads the .pb file itself, "
            f"or install an OpenCV that reads it: pip install '{OPENCV_PB_REQUIREMENT}'",
        )


class OpenCVBackend:
    """Runs an OpenCV dnn_superres ``.pb`` on frames, one at a time, on the CPU.

    ``model`` is the same weights loaded by ``vsr.models.registry.load_model`` (which reads
    the graph, checks its family and scale, and so tells ``setModel`` which algorithm it
    is); ``weights`` is the ``.pb`` file itself, handed to ``readModel``.
    """

    name = "opencv"

    default_batch_size = 1

    def __init__(self, model: LoadedModel, *, weights: Path, color: ColorInfo | None = None):
        self.model = model
        self.scale = model.scale
        self.color = color or ColorInfo()
        self.algo = model.spec.arch
        if self.algo not in OPENCV_ALGOS:
            raise UsageError(
                f"the opencv backend runs {', '.join(OPENCV_ALGOS)}, not {model.spec.name}",
                hint="use --backend torch",
            )
        if Path(weights).suffix.lower() != ".pb":
            raise UsageError(
                f"the opencv backend needs an OpenCV dnn_superres .pb file, not {weights}",
                hint="pass --weights FILE.pb or use --backend torch",
            )
        require_opencv_pb()
        try:
            self.sr = cv2.dnn_superres.DnnSuperResImpl.create()
            self.sr.readModel(str(weights))
            self.sr.setModel(self.algo, self.scale)
        except cv2.error as exc:
            first = str(exc).strip().splitlines()[-1]
            raise WeightsError(f"OpenCV cannot load {Path(weights).name}: {first}") from None
        self.sr.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        self.sr.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)

    @property
    def description(self) -> str:
        return f"opencv dnn_superres {self.algo} (cpu)"

    def upscale(self, frames: list[Frame]) -> list[Frame]:
        """Upscale 8-bit frames one by one; returns new frames, same order and pts."""
        return [self.upscale_frame(f) for f in frames]

    def upscale_frame(self, frame: Frame) -> Frame:
        if frame.bit_depth != 8:
            raise UsageError(
                f"the opencv backend takes 8-bit video, not {frame.pix_fmt}",
                hint="use --backend torch",
            )
        bgr = yuv_to_bgr(frame, self.color)
        out = self.sr.upsample(bgr)
        expected = (frame.height * self.scale, frame.width * self.scale, 3)
        if out.shape != expected:
            raise WeightsError(f"OpenCV made {out.shape} from {bgr.shape}, expected {expected}")
        planes = bgr_to_yuv(out, self.color, pix_fmt=frame.pix_fmt, height=frame.height)
        return replace(frame, planes=planes)  # index, pts, time base, format, captions


def _upsample_plane(plane: np.ndarray, height: int, width: int) -> np.ndarray:
    """A chroma plane resized bilinearly to the luma size (float32).

    The plane is scaled by whole factors (it covers ``2 * size`` luma pixels for odd
    luma sizes) and then cropped, so chroma samples stay where they belong.
    """
    ch, cw = plane.shape
    fy, fx = -(-height // ch), -(-width // cw)
    src = plane.astype(np.float32)
    if (fy, fx) == (1, 1):
        return src
    up = cv2.resize(src, (cw * fx, ch * fy), interpolation=cv2.INTER_LINEAR)
    return up[:height, :width]


def yuv_to_bgr(frame: Frame, color: ColorInfo) -> np.ndarray:
    """An 8-bit YUV frame as 8-bit BGR with the stream's matrix and range (float64 maths,
    bilinear chroma upsampling, one rounding)."""
    y, u, v = frame.planes
    h, w = y.shape
    rgb = yuv_to_rgb(y, _upsample_plane(u, h, w), _upsample_plane(v, h, w), color, 8)
    return np.ascontiguousarray(to_code(rgb[..., ::-1] * 255.0, 8))


def bgr_to_yuv(
    bgr: np.ndarray, color: ColorInfo, *, pix_fmt: str, height: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """8-bit BGR back to YUV planes of ``pix_fmt`` (8-bit), with the matrix chosen for
    a stream of ``height`` lines (the input's, as the torch backend does)."""
    _, sx, sy = PLANAR_FORMATS[pix_fmt]
    rgb = bgr[..., ::-1].astype(np.float64) / 255.0
    y, u, v = rgb_to_yuv(rgb, color, 8, height=height)
    return to_code(y), to_code(subsample(u, sx, sy)), to_code(subsample(v, sx, sy))
