"""Model stage alone: vsr's torch backend vs cv2.dnn_superres ``upsample`` on one frame size.

    python scripts/bench_model.py [--weights ESPCN_x3.pb] [--size 320x240] [--frames 20]

The torch figure is ``TorchBackend.upscale`` (Y through the network, chroma bicubic,
quantisation), per frame, batch 1, fp32 on the CPU, with and without channels_last; the
OpenCV figure is ``DnnSuperResImpl.upsample`` on a BGR frame of the same size.
"""

from __future__ import annotations

import argparse
import time
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import torch

from vsr.backends.opencv_backend import opencv_pb_problem
from vsr.backends.torch_backend import TorchBackend
from vsr.media.frame import Frame
from vsr.models.registry import load_model

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _time(fn, frames: int) -> float:
    for _ in range(3):
        fn()
    t0 = time.perf_counter()
    for _ in range(frames):
        fn()
    return (time.perf_counter() - t0) / frames


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--weights", type=Path, default=SHARED / "weights" / "opencv" / "ESPCN_x3.pb")
    ap.add_argument("--size", default="320x240")
    ap.add_argument("--frames", type=int, default=20)
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    arch = "fsrcnn" if "FSRCNN" in args.weights.name else "espcn"
    scale = int(args.weights.stem.rsplit("x", 1)[1])
    rng = np.random.default_rng(0)
    planes = (
        rng.integers(0, 256, (h, w), dtype=np.uint8),
        rng.integers(0, 256, (h // 2, w // 2), dtype=np.uint8),
        rng.integers(0, 256, (h // 2, w // 2), dtype=np.uint8),
    )
    frame = Frame(0, 0, Fraction(1, 30), planes, "yuv420p")
    times = {}
    for cl in (True, False):
        model = load_model(arch, scale, weights=args.weights)
        backend = TorchBackend(model, device="cpu", channels_last=cl)
        times[cl] = _time(lambda b=backend: b.upscale([frame]), args.frames)
    t_cl, t_nchw = times[True], times[False]
    problem = opencv_pb_problem()
    t_cv = None
    if problem is None:
        sr = cv2.dnn_superres.DnnSuperResImpl_create()
        sr.readModel(str(args.weights))
        sr.setModel(arch, scale)
        bgr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        t_cv = _time(lambda: sr.upsample(bgr), args.frames)
    print(
        f"{args.weights.name} {w}x{h}, {torch.get_num_threads()} torch threads, "
        f"{cv2.getNumThreads()} OpenCV threads"
    )
    print(f"vsr torch backend, channels_last: {t_cl * 1000:.1f} ms/frame ({1 / t_cl:.1f} fps)")
    print(f"vsr torch backend, NCHW:          {t_nchw * 1000:.1f} ms/frame ({1 / t_nchw:.1f} fps)")
    if t_cv is None:
        print(f"cv2.dnn_superres upsample:        not run: {problem}")
    else:
        print(f"cv2.dnn_superres upsample:        {t_cv * 1000:.1f} ms/frame ({1 / t_cv:.1f} fps)")


if __name__ == "__main__":
    main()
