"""The reference for comparisons with cv2.dnn_superres: the pre- and post-processing of
``cv2.dnn_superres.DnnSuperResImpl.upsample`` with a torch module in place of the OpenCV
network (shared by the .pb reader's tests and the OpenCV backend's tests; moved here from
``vsr/models/opencv_pb.py``, which no code outside the tests used it from)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def upsample_like_opencv(module: nn.Module, bgr: np.ndarray) -> np.ndarray:
    """Upscale ``bgr`` (uint8, HxWx3 BGR or HxW grey) as ``DnnSuperResImpl.upsample``
    does, with ``module`` as the network: for espcn/fsrcnn/lapsrn a luma module (NCHW
    [0, 1]); for edsr an ``EDSR(layout="opencv")`` (see :func:`_upsample_edsr`).

    The steps follow opencv_contrib ``dnn_superres.cpp`` (``preprocess_YCrCb``,
    ``reconstruct_YCrCb``): cvtColor BGR->YCrCb on uint8, then float32 times 1/255; Y
    through the network; Cr and Cb resized by ``cv::resize`` at the scale with its default
    interpolation (INTER_LINEAR, not cubic); merge with the network's Y; ``convertTo(CV_8U,
    255)`` (round half to even, saturate); cvtColor YCrCb->BGR on uint8. A grey image is
    only scaled, run and converted back. The network's output is not clamped: the uint8
    conversion saturates, as in OpenCV.
    """
    import cv2

    from vsr.models.archs.edsr import EDSR

    image = np.asarray(bgr)
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    if isinstance(module, EDSR):
        return _upsample_edsr(module, image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        grey = image.astype(np.float32) * np.float32(1.0 / 255.0)
        return _to_u8(_run_luma(module, grey))
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected HxWx3 BGR or HxW grey, got shape {image.shape}")

    ycrcb = cv2.cvtColor(image, cv2.COLOR_BGR2YCrCb).astype(np.float32) * np.float32(1.0 / 255.0)
    y = _run_luma(module, ycrcb[:, :, 0])
    scale = y.shape[0] // image.shape[0]
    if y.shape != (image.shape[0] * scale, image.shape[1] * scale):
        raise ValueError(f"the network made {y.shape} from {image.shape[:2]}")
    cr = cv2.resize(ycrcb[:, :, 1], None, fx=scale, fy=scale)
    cb = cv2.resize(ycrcb[:, :, 2], None, fx=scale, fy=scale)
    merged = _to_u8(np.dstack([y, cr, cb]))
    return cv2.cvtColor(merged, cv2.COLOR_YCrCb2BGR)


def _upsample_edsr(module: nn.Module, image: np.ndarray) -> np.ndarray:
    """OpenCV's ``edsr`` branch of ``upsample``: no YCrCb. It converts the BGR uint8 image
    to float32 (0..255), ``blobFromImage`` subtracts the BGR mean (103.15, 111.56, 114.36)
    in float32 without swapping channels, the net runs, the mean is added back (float32)
    and ``convertTo(CV_8U)`` rounds half to even and saturates; no clamping before.

    Here the module does the mean and the BGR order itself (``layout="opencv"``): it is
    given RGB ``u8 / 255`` in float32 (whose ``* 255`` gives back the integers exactly)
    and its RGB output in [0, 1] is scaled by 255 and rounded the same way. A grey image
    is refused: OpenCV's EDSR path subtracts a 3-channel mean from it and the 3-channel
    first convolution then fails."""
    if getattr(module, "layout", None) != "opencv":
        raise ValueError("OpenCV's edsr path runs the opencv EDSR layout, not EDSR-PyTorch's")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"OpenCV's edsr path takes HxWx3 BGR, got shape {image.shape}")
    rgb = image[:, :, ::-1].astype(np.float32) / np.float32(255.0)
    param = next(module.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None].to(device)
    with torch.inference_mode():
        out = module(x)
    bgr = out[0].float().cpu().numpy().transpose(1, 2, 0)[:, :, ::-1]
    return _to_u8(bgr)


def _run_luma(module: nn.Module, luma: np.ndarray) -> np.ndarray:
    param = next(module.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    x = torch.from_numpy(np.ascontiguousarray(luma, dtype=np.float32))[None, None].to(device)
    with torch.inference_mode():
        out = module(x)
    return out[0, 0].float().cpu().numpy()


def _to_u8(values: np.ndarray) -> np.ndarray:
    """``Mat::convertTo(CV_8U, 255.0)``: float32 multiply, round half to even, saturate."""
    scaled = values.astype(np.float32) * np.float32(255.0)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
