"""Model stage alone: the torch backend (eager, cpu fp32) vs ``--backend openvino``.

    python scripts/bench_openvino.py [--size 640x360] [--frames 10] [--threads 2]

Times ``backend.upscale`` on one yuv420p frame (batch 1: the CPU default) for ESPCN x3 and
FSRCNN x2, after a warm-up, the two backends alternating call by call so that both see the
same machine state (``--sequential``: one block each); prints the median ms per frame. The
OpenVINO conversion cache is put in a temporary folder (the first build converts).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from fractions import Fraction

import numpy as np

from vsr.media.frame import Frame


def _frame(w: int, h: int) -> Frame:
    rng = np.random.default_rng(0)
    planes = (
        rng.integers(16, 236, (h, w), dtype=np.uint8),
        rng.integers(16, 241, (h // 2, w // 2), dtype=np.uint8),
        rng.integers(16, 241, (h // 2, w // 2), dtype=np.uint8),
    )
    return Frame(0, 0, Fraction(1, 25), planes, "yuv420p")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size", default="640x360", help="input WxH (default 640x360)")
    ap.add_argument("--frames", type=int, default=10, help="timed calls per backend")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--sequential",
        action="store_true",
        help="time each backend in its own block instead of alternating (the thread pools of "
        "torch (OpenMP) and OpenVINO (TBB) slow each other down when they take turns)",
    )
    args = ap.parse_args()
    os.environ.setdefault("VSR_CACHE", tempfile.mkdtemp(prefix="vsr-bench-"))

    import openvino as ov

    from vsr.backends.openvino_backend import OpenVINOBackend
    from vsr.backends.torch_backend import TorchBackend
    from vsr.models.registry import load_model

    w, h = (int(v) for v in args.size.lower().split("x"))
    frames = [_frame(w, h)]
    mode = "sequential" if args.sequential else "alternating"
    print(
        f"input {w}x{h} yuv420p, batch 1, {args.threads} threads, median of {args.frames} ({mode})"
    )
    print(f"OpenVINO {ov.__version__}")
    rows = []
    for name, scale in (("espcn", 3), ("fsrcnn", 2)):
        model = load_model(name, scale)
        backends = {
            "torch eager": TorchBackend(
                model, device="cpu", precision="fp32", threads=args.threads
            ),
            "openvino": OpenVINOBackend(model, threads=args.threads),
        }
        for b in backends.values():
            for _ in range(args.warmup):
                b.upscale(frames)
        times: dict[str, list[float]] = {k: [] for k in backends}
        order = list(backends.items())
        if args.sequential:
            steps = [kb for kb in order for _ in range(args.frames)]
        else:
            steps = [kb for _ in range(args.frames) for kb in order]
        for key, b in steps:
            t0 = time.perf_counter()
            b.upscale(frames)
            times[key].append((time.perf_counter() - t0) * 1000)
        med = {k: statistics.median(v) for k, v in times.items()}
        rows.append((f"{name} x{scale}", med["torch eager"], med["openvino"]))
    print(f"{'model':<12} {'torch eager ms':>15} {'openvino ms':>12} {'speed-up':>9}")
    for label, t, o in rows:
        print(f"{label:<12} {t:>15.1f} {o:>12.1f} {t / o:>8.2f}x")


if __name__ == "__main__":
    main()
