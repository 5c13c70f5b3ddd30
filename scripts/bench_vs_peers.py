"""vsr against the ways people upscale video today, on the same clip and weights, in one run.

    python scripts/bench_vs_peers.py [--input CLIP] [--size 640x360] [--weights ESPCN_x3.pb]
                                     [--repeats 3] [--only opencv vsr vsr-torch ...] [--json]

Contenders, alternating round by round so that all see the same machine state (the
median of each is reported):

- **opencv**: the OpenCV dnn_superres per-frame loop: VideoCapture -> DnnSuperResImpl.
  upsample -> VideoWriter (mp4v), one frame at a time, with the ``.pb`` weights;
- **torch-loop**: a plain per-frame PyTorch loop as common scripts write it: read a BGR
  frame with OpenCV, convert to YCrCb, run the network on Y (the same ``.pb`` weights,
  loaded by vsr), wait for it, resize CrCb bicubic, convert back to BGR, write with
  VideoWriter (mp4v);
- **vsr**: ``vsr run`` with the same weights and its default settings (``--backend auto``:
  OpenVINO on the CPU when it is installed, else PyTorch): decode, model, encode (libx264,
  preset veryfast) in overlapped threads, audio copied;
- **vsr-torch**, **vsr-openvino**, **vsr-openvino-bf16**, **vsr-openvino-int8**: the same
  with that backend (and precision) named (the last three need ``vsr[openvino]``; int8 is
  calibrated on frames of the clip). Not run unless listed in ``--only``.

Each contender runs in a fresh Python process (``--worker``), so that no thread pool of one
(PyTorch's OpenMP, OpenVINO's TBB, OpenCV's) is left spinning beside the next; its time runs
from loading the weights to the last frame written (torch and OpenCV already imported).

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
import subprocess
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


def vsr_run(
    clip: Path, weights: Path, arch: str, scale: int, out: Path, **options: str
) -> tuple[int, dict]:
    from vsr.config import RunConfig
    from vsr.pipeline.engine import run

    cfg = RunConfig.from_values({
        "input": clip, "output": out, "model": arch, "scale": scale, "weights": weights,
        "device": "cpu", "overwrite": True, "quiet": True, **options,
    })  # fmt: skip
    report = run(cfg)
    return report.frames_out, report.to_dict()


def vsr_with(**options: str) -> Callable[..., tuple[int, dict]]:
    return lambda clip, weights, arch, scale, out: vsr_run(
        clip, weights, arch, scale, out, **options
    )


CONTENDERS: dict[str, Callable[..., int | tuple[int, dict]]] = {
    "opencv": opencv_loop,
    "torch-loop": torch_loop,
    "vsr": vsr_run,
    "vsr-torch": vsr_with(backend="torch"),
    "vsr-openvino": vsr_with(backend="openvino"),
    "vsr-openvino-bf16": vsr_with(backend="openvino", precision="bf16"),
    "vsr-openvino-int8": vsr_with(backend="openvino", precision="int8"),
}
DEFAULT_CONTENDERS = ["opencv", "torch-loop", "vsr", "vsr-torch"]


def worker(name: str, clip: Path, weights: Path, arch: str, scale: int, out: Path) -> None:
    """Run one contender in this process; print its frames, seconds and report as JSON."""
    t0 = time.perf_counter()
    result = CONTENDERS[name](clip, weights, arch, scale, out)
    seconds = time.perf_counter() - t0
    frames, report = result if isinstance(result, tuple) else (result, {})
    print(json.dumps({"frames": frames, "seconds": seconds, "report": report}))


def in_fresh_process(
    name: str, clip: Path, weights: Path, size: str, out: Path
) -> tuple[int, float, dict]:
    cmd = [sys.executable, __file__, "--worker", name, "--input", str(clip)]
    cmd += ["--weights", str(weights), "--size", size, "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        sys.exit(f"{name} failed: {tail}")
    done = json.loads(proc.stdout.strip().splitlines()[-1])
    return done["frames"], done["seconds"], done["report"]


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
    ap.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="uncounted rounds first (default 1: fills OpenVINO's conversion cache and the "
        "page cache, as for anyone who runs vsr twice)",
    )
    ap.add_argument(
        "--only",
        nargs="*",
        default=None,
        choices=list(CONTENDERS),
        help=f"contenders to run (default: {' '.join(DEFAULT_CONTENDERS)})",
    )
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not args.weights.exists():
        sys.exit(f"weights not found: {args.weights} (pass --weights ESPCN_x3.pb)")
    arch = "fsrcnn" if "FSRCNN" in args.weights.name else "espcn"
    scale = int(args.weights.stem.rsplit("x", 1)[1])
    if args.worker is not None:
        worker(args.worker, args.input, args.weights, arch, scale, args.out)
        return
    w, h = (int(v) for v in args.size.split("x"))
    names = args.only or DEFAULT_CONTENDERS
    if "opencv" in names:
        from vsr.backends.opencv_backend import OPENCV_PB_REQUIREMENT, opencv_pb_problem

        problem = opencv_pb_problem()
        if problem is not None:
            sys.exit(
                f"the opencv contender cannot run: {problem} (install '{OPENCV_PB_REQUIREMENT}', "
                "or leave it out: --only torch-loop vsr)"
            )
    runs: dict[str, list[float]] = {n: [] for n in names}
    reports: dict[str, dict] = {}
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
        for i in range(-args.warmup, args.repeats):
            line = []
            for name in names:
                out = tmpdir / f"{name}.mp4"
                frames, seconds, reports[name] = in_fresh_process(
                    name, clip, args.weights, args.size, out
                )
                if frames != expected:
                    sys.exit(f"{name} wrote {frames} of {expected} frames")
                if i >= 0:
                    runs[name].append(frames / seconds)
                line.append(f"{name} {frames / seconds:.2f} fps")
            label = f"round {i + 1}" if i >= 0 else "warm-up"
            print(f"{label}: " + " | ".join(line), file=sys.stderr)
    fps = {n: round(statistics.median(v), 2) for n, v in runs.items()}
    result = {
        "clip": str(args.input or f"rabbit320.mp4 scaled to {w}x{h}"),
        "frames": expected,
        "weights": str(args.weights),
        "scale": scale,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, OpenCV {cv2.__version__}{_openvino()}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "median_fps": fps,
        "rounds": {n: [round(x, 2) for x in v] for n, v in runs.items()},
        # what ran the network in each vsr contender (vsr: what --backend auto chose)
        "backend": {n: _ran(r) for n, r in reports.items() if r},
        "vsr_bottleneck": {n: r.get("bottleneck") for n, r in reports.items() if r},
        "vsr_stages": {n: r.get("stages") for n, r in reports.items() if r},
    }
    if "vsr" in fps:
        result["vsr_over"] = {n: round(fps["vsr"] / f, 2) for n, f in fps.items() if n != "vsr"}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{'contender':<18} {'fps':>7}  backend")
        for n, f in fps.items():
            print(f"{n:<18} {f:7.2f}  {result['backend'].get(n, n)}")
        for n, r in result.get("vsr_over", {}).items():
            print(f"vsr / {n}: {r:.2f}x")


def _openvino() -> str:
    try:
        import openvino
    except ImportError:
        return ""
    return f", OpenVINO {openvino.__version__.split('-')[0]}"


def _ran(report: dict) -> str:
    """``openvino: cpu fp32 (OpenVINO 2026.4.1)``: the backend and its device line."""
    return f"{report.get('backend', '?')}: {report.get('device', '?')}"


if __name__ == "__main__":
    main()
