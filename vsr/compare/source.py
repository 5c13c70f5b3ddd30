"""The image ``vsr compare`` upscales: an image file, a video frame, or an LR image made
from the ground truth; as RGB (and, for a video frame, the frame and its colours)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vsr import evaluate as protocol
from vsr.compare.config import CompareConfig
from vsr.errors import InputNotFoundError, UsageError
from vsr.images import IMAGE_SUFFIXES, read_image
from vsr.media.frame import ColorInfo, Frame
from vsr.metrics import imresize_uint8, mod_crop

# -- the source -----------------------------------------------------------------------


@dataclass
class _Source:
    """The LR input as RGB uint8, and for a video frame the frame itself and its colours."""

    description: str
    rgb: np.ndarray
    frame: Frame | None = None
    color: ColorInfo | None = None


def _to_rgb8(img: np.ndarray, *, bgr: bool = True) -> np.ndarray:
    """An image (grey, grey + alpha, BGR(A) as OpenCV reads it or RGB with ``bgr`` off;
    8- or 16-bit) as RGB uint8; alpha dropped."""
    if img.dtype == np.uint16:
        img = ((img.astype(np.float64) / 257.0).round()).astype(np.uint8)
    if img.ndim == 2:
        return np.ascontiguousarray(np.repeat(img[:, :, None], 3, axis=2))
    if img.shape[2] == 2:
        return np.ascontiguousarray(np.repeat(img[:, :, :1], 3, axis=2))
    return np.ascontiguousarray(img[:, :, 2::-1] if bgr else img[:, :, :3])


def frame_to_rgb(frame: Frame, color: ColorInfo) -> np.ndarray:
    """A YUV :class:`Frame` as RGB uint8 with the stream's matrix and range (chroma
    upsampled bilinearly, as the torch backend does for RGB models)."""
    from vsr.backends.color import yuv_to_rgb

    peak = float((1 << frame.bit_depth) - 1)
    y, u, v = (torch.from_numpy(p.astype(np.float32) / peak)[None, None] for p in frame.planes)
    h, w = y.shape[-2:]
    if u.shape[-2:] != (h, w):
        u = F.interpolate(u, size=(h, w), mode="bilinear", align_corners=False)
        v = F.interpolate(v, size=(h, w), mode="bilinear", align_corners=False)
    rgb = yuv_to_rgb(torch.cat([y, u, v], 1), color, height=h, bit_depth=frame.bit_depth)
    out = rgb.clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255.0
    return np.ascontiguousarray(out.round().astype(np.uint8))


def read_frame(path: Path, index: int) -> tuple[Frame, ColorInfo]:
    """Frame ``index`` (presentation order) of the video at ``path``, decoded from the
    start. Raises InputNotFoundError, MediaError, UsageError (past the end)."""
    from vsr.media.reader import Reader

    with Reader(path, audio=False, subtitles=False) as reader:
        color = reader.info.video.color
        count = 0
        for frame in reader.frames():
            if frame.index == index:
                return frame, color
            count += 1
    raise UsageError(f"{path.name} has {count} frames; there is no frame {index}")


def _load_source(cfg: CompareConfig) -> tuple[_Source, np.ndarray | None]:
    """The LR source and the ground truth (mod-cropped HR as the protocol reads it:
    RGB, or HxW for a grey file), or None."""
    gt = None
    if cfg.gt is not None or cfg.from_gt:
        gt_path = cfg.gt if cfg.gt is not None else cfg.input
        assert gt_path is not None
        if not gt_path.exists():
            raise InputNotFoundError(f"ground truth not found: {gt_path}")
        gt = np.ascontiguousarray(mod_crop(protocol.read_hr(gt_path), cfg.scale))
        protocol.check_size(gt_path.name, gt.shape, cfg.scale)
    if cfg.from_gt:
        assert gt is not None
        lr = imresize_uint8(gt, 1 / cfg.scale)
        name = (cfg.gt or cfg.input or Path("?")).name
        lr_rgb = _to_rgb8(lr, bgr=False)
        return _Source(f"{name} (LR by MATLAB bicubic /{cfg.scale})", lr_rgb), gt
    path = cfg.input
    assert path is not None
    if not path.exists():
        raise InputNotFoundError(f"input not found: {path}")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        if cfg.frame is not None:
            raise UsageError("--frame is for video input", hint="drop --frame for an image")
        source = _Source(path.name, _to_rgb8(read_image(path)))
    else:
        index = cfg.frame or 0
        frame, color = read_frame(path, index)
        source = _Source(f"{path.name} frame {index}", frame_to_rgb(frame, color), frame, color)
    if gt is not None:
        h, w = source.rgb.shape[:2]
        if gt.shape[:2] != (h * cfg.scale, w * cfg.scale):
            raise UsageError(
                f"the ground truth is {gt.shape[1]}x{gt.shape[0]} (cropped to a multiple of "
                f"{cfg.scale}), the input x{cfg.scale} is {w * cfg.scale}x{h * cfg.scale}",
                hint="give the HR image the input was made from, or use --from-gt",
            )
    return source, gt
