"""The backends side by side: model stage alone and end to end, on the same weights and clip.

    python scripts/bench_backends.py [--input CLIP] [--size 640x360] [--rounds 3]
        [--case espcn:3:ESPCN_x3.pb --case fsrcnn:2:FSRCNN_x2.pb]
        [--variant torch --variant openvino --variant openvino:int8 --variant opencv ...]
        [--markdown] [--json]

For every case (model, scale, weights) and variant (backend[:precision]) this runs
``python -m vsr bench --backend B --precision P --weights W --input CLIP --json`` in a fresh
process (so that no thread pool of one backend is left spinning beside the next), round
after round with the variants alternating, and reports the medians of:

- **model ms/frame**: ``backend.upscale`` alone on decoded frames, batch 1 (the CPU default),
  colour conversion included (what the model stage of ``vsr run`` does per frame);
- **end-to-end fps**: ``vsr run`` on the clip with that backend (decode, model, encode with
  vsr's default encoder settings, audio copied).

The default clip is ``../shared/data/video/rabbit320.mp4`` scaled to ``--size`` (as
``scripts/bench_vs_peers.py`` makes it), else a generated clip. A variant that cannot run
(say int8 refused for weights whose loss was not measured under 0.1 dB) is reported with
its one-line reason instead of numbers. The first round is a warm-up (OpenVINO's
conversion cache, the page cache) and is not counted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
OPENCV_WEIGHTS = SHARED / "weights" / "opencv"
DEFAULT_CASES = ["espcn:3:ESPCN_x3.pb", "fsrcnn:2:FSRCNN_x2.pb"]
DEFAULT_VARIANTS = ["torch", "openvino", "openvino:bf16", "openvino:int8", "opencv"]


def _case(text: str) -> tuple[str, int, Path]:
    model, scale, weights = text.split(":", 2)
    path = Path(weights)
    if not path.is_absolute() and not path.exists():
        path = OPENCV_WEIGHTS / path
    return model, int(scale), path


def _bench(clip: Path, model: str, scale: int, weights: Path, variant: str) -> dict:
    backend, _, precision = variant.partition(":")
    cmd = [sys.executable, "-m", "vsr", "bench", "-m", model, "-x", str(scale)]
    cmd += ["--weights", str(weights), "--input", str(clip), "--device", "cpu"]
    cmd += ["--backend", backend, "--precision", precision or "fp32", "--no-matmul", "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or ["(no output)"]
        return {"error": lines[-1][:300]}
    return json.loads(proc.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--input", type=Path, default=None, help="clip (default: see above)")
    ap.add_argument("--size", default="640x360", help="size of the default clip")
    ap.add_argument("--rounds", type=int, default=3, help="counted rounds (default 3)")
    ap.add_argument("--case", action="append", default=None, help="MODEL:SCALE:WEIGHTS")
    ap.add_argument("--variant", action="append", default=None, help="BACKEND[:PRECISION]")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    cases = [_case(c) for c in (args.case or DEFAULT_CASES)]
    variants = args.variant or DEFAULT_VARIANTS
    for _, _, weights in cases:
        if not weights.exists():
            sys.exit(f"weights not found: {weights}")
    sys.path.insert(0, str(ROOT / "scripts"))
    from bench_vs_peers import count_frames, scaled_clip

    runs: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        clip = args.input
        if clip is None:
            w, h = (int(v) for v in args.size.split("x"))
            rabbit = SHARED / "video" / "rabbit320.mp4"
            if rabbit.exists():
                clip = scaled_clip(rabbit, Path(tmp) / f"rabbit_{w}x{h}.mp4", (w, h))
            else:
                from fractions import Fraction

                from vsr.media.sample import make_sample_clip

                clip = make_sample_clip(
                    Path(tmp) / "sample.mp4", width=w, height=h, frames=120, rate=Fraction(30)
                )
        frames = count_frames(clip)
        for r in range(-1, args.rounds):
            for model, scale, weights in cases:
                for variant in variants:
                    result = _bench(clip, model, scale, weights, variant)
                    key = (f"{model} x{scale}", variant)
                    shown = result.get("error") or (
                        f"model {result['model_ms_per_frame']:.1f} ms, "
                        f"e2e {result['e2e_fps']:.2f} fps"
                    )
                    label = "warm-up" if r < 0 else f"round {r + 1}"
                    print(f"{label}: {key[0]} {variant}: {shown}", file=sys.stderr)
                    if r >= 0:
                        runs.setdefault(key, []).append(result)
    rows = []
    for (case, variant), results in runs.items():
        ok = [x for x in results if "error" not in x]
        row: dict = {"case": case, "variant": variant}
        if not ok:
            row["error"] = results[-1]["error"]
        else:
            row["model_ms"] = [x["model_ms_per_frame"] for x in ok]
            row["e2e_fps"] = [x["e2e_fps"] for x in ok]
            row["model_ms_median"] = round(statistics.median(row["model_ms"]), 1)
            row["e2e_fps_median"] = round(statistics.median(row["e2e_fps"]), 2)
            row["device"] = ok[-1]["device"]
        rows.append(row)
    summary = {
        "clip": str(args.input or f"rabbit320.mp4 scaled to {args.size}"),
        "frames": frames,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "rows": rows,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    if args.markdown:
        print("| model | backend | model stage, ms/frame | end to end, fps | ran as |")
        print("|---|---|---|---|---|")
    for row in rows:
        if "error" in row:
            cells = [row["case"], row["variant"], "-", "-", f"not run: {row['error']}"]
        else:
            cells = [
                row["case"],
                row["variant"],
                f"{row['model_ms_median']} ({', '.join(map(str, row['model_ms']))})",
                f"{row['e2e_fps_median']} ({', '.join(map(str, row['e2e_fps']))})",
                row["device"],
            ]
        print("| " + " | ".join(cells) + " |" if args.markdown else "  ".join(cells))


if __name__ == "__main__":
    main()
