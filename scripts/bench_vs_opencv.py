"""Side by side, in one run: the OpenCV dnn_superres per-frame loop and ``vsr run``.

Both use the same ESPCN x3 ``.pb`` weights on the same clip. The OpenCV loop is the way
the usual scripts do it: VideoCapture -> DnnSuperResImpl.upsample -> VideoWriter, one
frame at a time. vsr runs its full pipeline (decode, model, encode with libx264, audio
remux). Runs alternate (OpenCV, vsr, OpenCV, vsr, ...) so that both see the same machine
state; the median of each is reported.

    python scripts/bench_vs_opencv.py [--input CLIP] [--weights ESPCN_x3.pb] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def opencv_loop(clip: Path, weights: Path, scale: int, out: Path) -> tuple[int, float]:
    sr = cv2.dnn_superres.DnnSuperResImpl_create()
    sr.readModel(str(weights))
    sr.setModel("espcn", scale)
    t0 = time.perf_counter()
    cap = cv2.VideoCapture(str(clip))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    writer = None
    n = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        up = sr.upsample(frame)
        if writer is None:
            h, w = up.shape[:2]
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        writer.write(up)
        n += 1
    cap.release()
    if writer is not None:
        writer.release()
    return n, time.perf_counter() - t0


def vsr_run(clip: Path, weights: Path, scale: int, out: Path) -> tuple[int, float, dict]:
    from vsr.config import RunConfig
    from vsr.pipeline.engine import run

    cfg = RunConfig(
        input=clip,
        output=out,
        model="espcn",
        scale=scale,
        weights=weights,
        device="cpu",
        overwrite=True,
        quiet=True,
    )
    t0 = time.perf_counter()
    report = run(cfg)
    return report.frames_out, time.perf_counter() - t0, report.to_dict()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--input",
        type=Path,
        default=None,
        help="clip (default: ../shared/data/video/rabbit320.mp4, else a generated 640x360 clip)",
    )
    ap.add_argument("--weights", type=Path, default=SHARED / "weights" / "opencv" / "ESPCN_x3.pb")
    ap.add_argument("--scale", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not args.weights.exists():
        sys.exit(f"weights not found: {args.weights} (pass --weights ESPCN_x3.pb)")
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        clip = args.input
        if clip is None:
            clip = SHARED / "video" / "rabbit320.mp4"
            if not clip.exists():
                from fractions import Fraction

                from vsr.media.sample import make_sample_clip

                clip = make_sample_clip(
                    tmpdir / "sample.mp4", width=640, height=360, frames=120, rate=Fraction(30)
                )
        cv_runs, vsr_runs, report = [], [], {}
        for i in range(args.repeats):
            n_cv, t_cv = opencv_loop(clip, args.weights, args.scale, tmpdir / "cv.mp4")
            n_vsr, t_vsr, report = vsr_run(clip, args.weights, args.scale, tmpdir / "vsr.mp4")
            cv_runs.append(n_cv / t_cv)
            vsr_runs.append(n_vsr / t_vsr)
            print(
                f"round {i + 1}: opencv {n_cv} frames {n_cv / t_cv:.2f} fps | "
                f"vsr {n_vsr} frames {n_vsr / t_vsr:.2f} fps",
                file=sys.stderr,
            )
    cv_fps, vsr_fps = statistics.median(cv_runs), statistics.median(vsr_runs)
    result = {
        "clip": str(clip),
        "weights": str(args.weights),
        "scale": args.scale,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "opencv_fps": round(cv_fps, 2),
        "vsr_fps": round(vsr_fps, 2),
        "ratio": round(vsr_fps / cv_fps, 2),
        "vsr_bottleneck": report.get("bottleneck"),
        "vsr_stages": report.get("stages"),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"OpenCV dnn_superres loop: {cv_fps:.2f} fps")
        print(f"vsr run:                  {vsr_fps:.2f} fps")
        print(f"ratio (vsr / OpenCV):     {vsr_fps / cv_fps:.2f}x")


if __name__ == "__main__":
    main()
