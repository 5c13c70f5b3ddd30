"""vsr against the ways people upscale video today, on the same clip and weights, in one run.

    python scripts/bench_vs_peers.py [--input CLIP] [--size 640x360] [--weights ESPCN_x3.pb]
                                     [--repeats 3] [--json]

Contenders, alternating round by round so that all see the same machine state (the
median of each is reported):

- **opencv**: the OpenCV dnn_superres per-frame loop: VideoCapture -> DnnSuperResImpl.
  upsample -> VideoWriter (mp4v), one frame at a time, with the ``.pb`` weights;
- **torch-loop**: a plain per-frame PyTorch loop as common scripts write it: read a BGR
  frame with OpenCV, convert to YCrCb, run the network on Y (the same ``.pb`` weights,
  loaded by vsr), wait for it, resize CrCb bicubic, convert back to BGR, write with
  VideoWriter (mp4v);
- **vsr**: ``vsr run`` with the same weights: decode, model, encode (libx264, preset
  veryfast) in overlapped threads, audio copied.

The default clip is ``../shared/data/video/rabbit320.mp4`` scaled to ``--size`` (real
content at the size of the issue's target), else a generated clip of that size. Each
contender's frame count is checked against the clip's.
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
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def per_frame_loop(clip: Path, out: Path, upscale: Callable[[np.ndarray], np.ndarray]) -> int:
    """The loop common scripts write: VideoCapture -> ``upscale(bgr)`` -> VideoWriter (mp4v),
    one frame at a time, no audio. Returns the frames written."""
    cap = cv2.VideoCapture(str(clip))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    writer = None
    n = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        up = upscale(frame)
        if writer is None:
            h, w = up.shape[:2]
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        writer.write(up)
        n += 1
    cap.release()
    if writer is not None:
        writer.release()
    return n


def opencv_loop(clip: Path, weights: Path, arch: str, scale: int, out: Path) -> int:
    sr = cv2.dnn_superres.DnnSuperResImpl_create()
    sr.readModel(str(weights))
    sr.setModel(arch, scale)
    return per_frame_loop(clip, out, sr.upsample)


def torch_loop(clip: Path, weights: Path, arch: str, scale: int, out: Path) -> int:
    from vsr.models.registry import load_model

    net = load_model(arch, scale, weights=weights).module.eval()

    def upscale(frame: np.ndarray) -> np.ndarray:
        ycrcb = cv2.cvtColor(frame, cv2.COLOR_BGR2YCrCb)
        y = torch.from_numpy(ycrcb[..., 0]).float().div(255.0)[None, None]
        with torch.no_grad():
            sr = net(y)
        y_up = (sr[0, 0].clamp(0, 1) * 255.0).round().byte().numpy()
        h, w = y_up.shape
        crcb = cv2.resize(ycrcb[..., 1:], (w, h), interpolation=cv2.INTER_CUBIC)
        return cv2.cvtColor(np.dstack([y_up, crcb]), cv2.COLOR_YCrCb2BGR)

    return per_frame_loop(clip, out, upscale)


def vsr_run(clip: Path, weights: Path, arch: str, scale: int, out: Path) -> tuple[int, dict]:
    from vsr.config import RunConfig
    from vsr.pipeline.engine import run

    cfg = RunConfig.from_values({
        "input": clip, "output": out, "model": arch, "scale": scale, "weights": weights,
        "device": "cpu", "overwrite": True, "quiet": True,
    })  # fmt: skip
    report = run(cfg)
    return report.frames_out, report.to_dict()


def scaled_clip(src: Path, dst: Path, size: tuple[int, int]) -> Path:
    """``src`` resized to ``size`` (libx264 CRF 16), audio copied: real content, bigger."""
    import av

    w, h = size
    with av.open(str(src)) as inp, av.open(str(dst), "w") as outp:
        vin = inp.streams.video[0]
        vout = outp.add_stream("libx264", rate=vin.average_rate or Fraction(30))
        vout.width, vout.height, vout.pix_fmt = w, h, "yuv420p"
        vout.options = {"crf": "16", "preset": "fast"}
        ain = inp.streams.audio[0] if inp.streams.audio else None
        aout = outp.add_stream_from_template(ain) if ain is not None else None
        streams = [vin] + ([ain] if ain is not None else [])
        for packet in inp.demux(streams):
            if packet.stream is ain:
                if packet.dts is not None:
                    packet.stream = aout
                    outp.mux(packet)
                continue
            for frame in packet.decode():
                img = frame.reformat(width=w, height=h, format="yuv420p", interpolation="BICUBIC")
                img.pts, img.time_base = frame.pts, frame.time_base
                outp.mux(vout.encode(img))
        outp.mux(vout.encode(None))
    return dst


def count_frames(path: Path) -> int:
    import av

    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--input", type=Path, default=None, help="clip (default: see above)")
    ap.add_argument("--size", default="640x360", help="size of the default clip")
    ap.add_argument("--weights", type=Path, default=SHARED / "weights" / "opencv" / "ESPCN_x3.pb")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", nargs="*", default=None, help="contenders to run (default: all)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not args.weights.exists():
        sys.exit(f"weights not found: {args.weights} (pass --weights ESPCN_x3.pb)")
    arch = "fsrcnn" if "FSRCNN" in args.weights.name else "espcn"
    scale = int(args.weights.stem.rsplit("x", 1)[1])
    w, h = (int(v) for v in args.size.split("x"))
    contenders = {"opencv": opencv_loop, "torch-loop": torch_loop, "vsr": vsr_run}
    names = args.only or list(contenders)
    if "opencv" in names:
        from vsr.backends.opencv_backend import OPENCV_PB_REQUIREMENT, opencv_pb_problem

        problem = opencv_pb_problem()
        if problem is not None:
            sys.exit(
                f"the opencv contender cannot run: {problem} (install '{OPENCV_PB_REQUIREMENT}', "
                "or leave it out: --only torch-loop vsr)"
            )
    runs: dict[str, list[float]] = {n: [] for n in names}
    report: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        clip = args.input
        if clip is None:
            rabbit = SHARED / "video" / "rabbit320.mp4"
            if rabbit.exists():
                clip = scaled_clip(rabbit, tmpdir / f"rabbit_{w}x{h}.mp4", (w, h))
            else:
                from vsr.media.sample import make_sample_clip

                clip = make_sample_clip(
                    tmpdir / "sample.mp4", width=w, height=h, frames=120, rate=Fraction(30)
                )
        expected = count_frames(clip)
        for i in range(args.repeats):
            line = []
            for name in names:
                out = tmpdir / f"{name}.mp4"
                t0 = time.perf_counter()
                result = contenders[name](clip, args.weights, arch, scale, out)
                seconds = time.perf_counter() - t0
                if isinstance(result, tuple):
                    frames, report = result
                else:
                    frames = result
                if frames != expected:
                    sys.exit(f"{name} wrote {frames} of {expected} frames")
                runs[name].append(frames / seconds)
                line.append(f"{name} {frames / seconds:.2f} fps")
            print(f"round {i + 1}: " + " | ".join(line), file=sys.stderr)
    fps = {n: round(statistics.median(v), 2) for n, v in runs.items()}
    result = {
        "clip": str(args.input or f"rabbit320.mp4 scaled to {w}x{h}"),
        "frames": expected,
        "weights": str(args.weights),
        "scale": scale,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, OpenCV {cv2.__version__}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "median_fps": fps,
        "rounds": {n: [round(x, 2) for x in v] for n, v in runs.items()},
        "vsr_bottleneck": report.get("bottleneck"),
        "vsr_stages": report.get("stages"),
    }
    if "vsr" in fps:
        result["vsr_over"] = {n: round(fps["vsr"] / f, 2) for n, f in fps.items() if n != "vsr"}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for n, f in fps.items():
            print(f"{n:<11} {f:7.2f} fps")
        for n, r in result.get("vsr_over", {}).items():
            print(f"vsr / {n}: {r:.2f}x")


if __name__ == "__main__":
    main()
