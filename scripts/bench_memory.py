"""Peak memory of ``vsr run`` against video length: it must not grow with the length.

    python scripts/bench_memory.py [--size 640x360] [--frames 60 240 960] [-m espcn -x 3]
                                   [--device auto] [--repeats N] [--container mp4]
                                   [--series] [--json]

For each length a synthetic clip (with audio) is made, then ``vsr run`` upscales it in a
fresh process; the peak resident set size of that process (``ru_maxrss``) and, on CUDA,
``torch.cuda.max_memory_allocated`` are reported beside the bound the pipeline documents:
``(queue_size + batch) x (one decoded + one upscaled frame)`` (docs/architecture.md,
"Memory"; batch 1, the CPU default). The resident set is also sampled every 0.25 s: the
trend (least-squares slope over the last three quarters of a run, in MiB per 1000 frames)
separates a leak (a steady positive slope) from the allocator's spikes, which move the
peak by tens of MiB from run to run (``--repeats`` shows that spread; ``--series`` prints
the samples).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

CHILD = r"""
import json, resource, sys, threading, time
from pathlib import Path
import torch
from vsr.config import RunConfig
from vsr.pipeline.engine import run
clip, out, model, scale, device = sys.argv[1:6]
samples, done = [], threading.Event()
def sample():
    t0 = time.monotonic()
    while not done.wait(0.25):
        with open("/proc/self/status") as f:
            kib = next(int(l.split()[1]) for l in f if l.startswith("VmRSS"))
        samples.append((time.monotonic() - t0, kib / 1024))
threading.Thread(target=sample, daemon=True).start()
report = run(RunConfig.from_values({"input": clip, "output": out, "model": model,
                                    "scale": int(scale), "device": device,
                                    "overwrite": True, "quiet": True}))
done.set()
on_gpu = torch.cuda.is_available() and "cuda" in report.device
gpu = torch.cuda.max_memory_allocated() if on_gpu else None
print(json.dumps({"frames": report.frames_out, "fps": report.fps,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "gpu_peak_mib": None if gpu is None else gpu / 2**20,
                  "rss_samples": samples}))
"""


def trend(samples: list[list[float]], fps: float) -> float | None:
    """Least-squares slope of the resident set over the last three quarters of a run, in
    MiB per 1000 frames: a leak shows as a steady positive slope, allocator noise as
    none. None when the run was too short to sample (under 8 samples)."""
    tail = samples[len(samples) // 4 :]
    if len(tail) < 8 or fps <= 0:
        return None
    n = len(tail)
    mt = sum(t for t, _ in tail) / n
    mr = sum(r for _, r in tail) / n
    var = sum((t - mt) ** 2 for t, _ in tail)
    if var == 0:
        return None
    slope = sum((t - mt) * (r - mr) for t, r in tail) / var  # MiB per second
    return slope * 1000 / fps


def frame_bytes(w: int, h: int, scale: int) -> int:
    """One decoded yuv420p frame plus its upscaled version, 8-bit."""
    return w * h * 3 // 2 + (w * scale) * (h * scale) * 3 // 2


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--frames", type=int, nargs="+", default=[60, 240, 960])
    ap.add_argument("-m", "--model", default="espcn")
    ap.add_argument("-x", "--scale", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--container", default="mp4", help="output container (default mp4)")
    ap.add_argument(
        "--series", action="store_true", help="also print the RSS over time (20 points per run)"
    )
    ap.add_argument("--repeats", type=int, default=1, help="runs per length (default 1)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    from vsr.config import RunConfig
    from vsr.media.sample import make_sample_clip

    queue = RunConfig(input=Path("x")).queue_size
    bound = (queue + 1) * frame_bytes(w, h, args.scale) / 2**20
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.frames:
            clip = make_sample_clip(
                Path(tmp) / f"clip{n}.mp4", width=w, height=h, frames=n, rate=Fraction(30)
            )
            out = Path(tmp) / f"out.{args.container}"
            for _ in range(args.repeats):
                proc = subprocess.run(
                    [sys.executable, "-c", CHILD, str(clip), str(out),
                     args.model, str(args.scale), args.device],
                    capture_output=True, text=True, check=False,
                )  # fmt: skip
                if proc.returncode != 0:
                    last = proc.stderr.strip().splitlines()[-1:] or ["no message"]
                    sys.exit(f"vsr run failed on {n} frames: {last[0]}")
                row = json.loads(proc.stdout.strip().splitlines()[-1])
                samples = row.pop("rss_samples")
                if args.series:
                    step = max(1, len(samples) // 20)
                    row["rss_series"] = [[round(t, 1), round(r, 1)] for t, r in samples[::step]]
                    for t, r in row["rss_series"]:
                        print(f"    t={t:7.1f} s  RSS {r:7.1f} MiB", file=sys.stderr)
                row["length"] = n
                row["rss_trend_mib_per_1k_frames"] = trend(samples, row["fps"])
                rows.append(row)
                gpu = row["gpu_peak_mib"]
                slope = row["rss_trend_mib_per_1k_frames"]
                print(
                    f"{n:5d} frames: peak RSS {row['peak_rss_mib']:7.1f} MiB"
                    + (f", trend {slope:+.1f} MiB per 1000 frames" if slope is not None else "")
                    + (f", GPU peak {gpu:7.1f} MiB" if gpu is not None else ""),
                    file=sys.stderr,
                )
    first = [r["peak_rss_mib"] for r in rows if r["length"] == args.frames[0]]
    last = [r["peak_rss_mib"] for r in rows if r["length"] == args.frames[-1]]
    growth = statistics.median(last) - statistics.median(first)
    slope = rows[-1]["rss_trend_mib_per_1k_frames"]
    result = {
        "size": [w, h],
        "model": args.model,
        "scale": args.scale,
        "queue_size": queue,
        "frame_bound_mib": round(bound, 1),
        "runs": rows,
        "rss_growth_mib": round(growth, 1),
        "peak_spread_mib": round(max(first + last) - min(first + last), 1),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"frames-in-flight bound: {bound:.1f} MiB (({queue} + 1) x one LR + one HR frame); "
            f"median peak RSS grew {growth:+.1f} MiB from {args.frames[0]} to "
            f"{args.frames[-1]} frames"
            + (
                f"; over the longest run the RSS trend is {slope:+.1f} MiB per 1000 frames"
                if slope is not None
                else ""
            )
        )


if __name__ == "__main__":
    main()
