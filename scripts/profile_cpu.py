"""Where the CPU time of ``vsr run`` goes, per frame: decode, model (by operator), encode.

    python scripts/profile_cpu.py [--input CLIP | --size 640x360] [-m espcn -x 3]
                                  [--weights F] [--frames 40]

Each part runs alone on the same frames: the decoder (PyAV, as vsr's Reader runs it),
the model stage (``TorchBackend.upscale`` under ``torch.profiler``, top operators), and
the encoder (vsr's Writer, libx264 at the default preset). For each it prints wall time
and CPU time (all threads of the process) per frame, then the end-to-end rate the cores
allow if the three overlapped perfectly: ``cores / (sum of CPU time per frame)``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from vsr.backends.torch_backend import TorchBackend
from vsr.media.frame import Frame
from vsr.media.probe import probe
from vsr.media.reader import Reader
from vsr.media.writer import Writer
from vsr.models.registry import load_model


def timed(fn):  # noqa: ANN001, ANN201 - tiny helper
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--input", type=Path, default=None)
    ap.add_argument("--size", default="640x360")
    ap.add_argument("-m", "--model", default="espcn")
    ap.add_argument("-x", "--scale", type=int, default=3)
    ap.add_argument("--weights", type=Path, default=None)
    ap.add_argument("--frames", type=int, default=40)
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        clip = args.input
        if clip is None:
            from vsr.media.sample import make_sample_clip

            w, h = (int(v) for v in args.size.split("x"))
            clip = make_sample_clip(
                Path(tmp) / "clip.mp4", width=w, height=h, frames=args.frames, rate=Fraction(30)
            )
        info = probe(clip)

        def decode() -> list[Frame]:
            out: list[Frame] = []
            with Reader(clip, info=info) as reader:
                for item in reader.items():
                    if isinstance(item, Frame):
                        out.append(item)
                        if len(out) >= args.frames:
                            break
            return out

        frames, dw, dc = timed(decode)
        n = len(frames)
        model = load_model(args.model, args.scale, weights=args.weights)
        backend = TorchBackend(model, device="cpu", color=info.video.color)
        backend.upscale(frames[:1])
        backend.upscale(frames[1:2])
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            ups, mw, mc = timed(lambda: [backend.upscale([f])[0] for f in frames])
        enc_path = Path(tmp) / "out.mp4"
        writer = Writer(
            output=enc_path,
            source=info,
            source_path=clip,
            width=ups[0].width,
            height=ups[0].height,
            audio=False,
        )

        def encode() -> None:
            for f in ups:
                writer.write_frame(f)
            writer.close()

        _, ew, ec = timed(encode)
    rows = [("decode", dw, dc), ("model stage", mw, mc), ("encode (libx264)", ew, ec)]
    first = frames[0]
    print(
        f"{n} frames {first.width}x{first.height} -> {ups[0].width}x{ups[0].height}, "
        f"{args.model} x{args.scale}, {torch.get_num_threads()} torch threads, {cores} cores"
    )
    print(f"{'part':<18} {'wall ms/frame':>14} {'CPU ms/frame':>13}")
    for name, w_, c_ in rows:
        print(f"{name:<18} {w_ / n * 1000:14.1f} {c_ / n * 1000:13.1f}")
    total_cpu = sum(c for _, _, c in rows) / n
    print(
        f"CPU time per frame, all parts: {total_cpu * 1000:.1f} ms -> at most "
        f"{cores / total_cpu:.2f} fps end to end on {cores} cores if they overlap perfectly; "
        f"the model stage alone runs at {n / mw:.2f} fps"
    )
    print("\nmodel stage, top operators (self CPU time, all frames):")
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8)
    print("\n".join(line for line in table.splitlines() if line.strip()))


if __name__ == "__main__":
    main()
