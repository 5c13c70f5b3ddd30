"""OpenVINO with one request at a time (what vsr does) against two requests in flight.

    python scripts/bench_openvino_async.py [--model espcn --scale 3] [--rounds 3]
    python scripts/bench_openvino_async.py --e2e CLIP [--rounds 2] [--batch-size 2]

Variants, all on the CPU in fp32 with 2 inference threads:

- **sync**: ``OpenVINOBackend`` as it is: one synchronous request per batch (latency hint);
- **async2-latency**: the frames of a batch as separate requests through
  ``openvino.AsyncInferQueue(compiled, 2)``, latency hint (the two share the threads);
- **async2-throughput**: the same queue on a compile with the throughput hint and 2 streams.

Without ``--e2e``: model-stage time per frame (``backend.upscale``, 640x360 yuv420p frames)
at batch 1 and 2, the variants alternating round by round, the minimum of the rounds.
With ``--e2e CLIP``: ``vsr run CLIP -m MODEL -x SCALE --backend openvino --batch-size N``
end to end, each run in a fresh process with the variant patched in, alternating; fps.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

VARIANTS = ("sync", "async2-latency", "async2-throughput")


def _patch(variant: str) -> None:
    """Replace OpenVINOBackend's compile and network call by ``variant``'s."""
    if variant == "sync":
        return
    import openvino as ov
    import torch

    from vsr.backends.openvino_backend import OpenVINOBackend

    hint = "LATENCY" if variant == "async2-latency" else "THROUGHPUT"

    def compile_(self: Any, converted: Any) -> Any:
        cfg = {
            "PERFORMANCE_HINT": hint,
            "INFERENCE_PRECISION_HINT": "f32",
            "INFERENCE_NUM_THREADS": str(self.ov_threads),
        }
        if hint == "THROUGHPUT":
            cfg["NUM_STREAMS"] = "2"
        compiled = self._core.compile_model(converted, "CPU", cfg)
        self._queue = ov.AsyncInferQueue(compiled, 2)
        return compiled

    def call(self: Any, x: torch.Tensor) -> torch.Tensor:
        a = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        outs: list[Any] = [None] * a.shape[0]

        def done(request: Any, i: int) -> None:
            outs[i] = np.array(request.get_output_tensor(0).data, copy=True)

        self._queue.set_callback(done)
        for i in range(a.shape[0]):
            self._queue.start_async({0: a[i : i + 1]}, i)
        self._queue.wait_all()
        return torch.from_numpy(np.concatenate(outs))

    OpenVINOBackend._compile = compile_  # type: ignore[method-assign]
    OpenVINOBackend._call_module = call  # type: ignore[method-assign]


def _frames(n: int, w: int = 640, h: int = 360) -> list[Any]:
    from vsr.media.frame import Frame

    rng = np.random.default_rng(0)
    return [
        Frame(
            i,
            i,
            Fraction(1, 30),
            (
                rng.integers(16, 235, (h, w), dtype=np.uint8),
                rng.integers(16, 235, (h // 2, w // 2), dtype=np.uint8),
                rng.integers(16, 235, (h // 2, w // 2), dtype=np.uint8),
            ),
            "yuv420p",
        )
        for i in range(n)
    ]


def model_stage(model: str, scale: int, rounds: int) -> None:
    from vsr.backends.openvino_backend import OpenVINOBackend
    from vsr.models.registry import load_model

    loaded = load_model(model, scale)
    backends = {}
    for variant in VARIANTS:  # each patch is taken into the instance's bound methods
        _patch(variant)
        cls = type(f"Bench_{variant}", (OpenVINOBackend,), {})
        cls._compile = OpenVINOBackend._compile  # type: ignore[method-assign]
        cls._call_module = OpenVINOBackend._call_module  # type: ignore[method-assign]
        backends[variant] = cls(loaded, threads=2)
    frames = _frames(8)
    for b in backends.values():
        b.upscale(frames[:2])
        b.upscale(frames[:1])
    times: dict[tuple[str, int], list[float]] = {(v, n): [] for v in VARIANTS for n in (1, 2)}
    for _ in range(rounds):
        for variant, b in backends.items():
            for n in (1, 2):
                t0 = time.perf_counter()
                for i in range(0, len(frames), n):
                    b.upscale(frames[i : i + n])
                times[(variant, n)].append((time.perf_counter() - t0) / len(frames) * 1000)
    for (variant, n), v in times.items():
        runs = ", ".join(f"{x:.1f}" for x in v)
        print(f"{model} x{scale} {variant:18s} batch {n}: {min(v):6.1f} ms/frame ({runs})")


def end_to_end(clip: Path, model: str, scale: int, batch: int, rounds: int) -> None:
    fps: dict[str, list[float]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            for variant in VARIANTS:
                cmd = [sys.executable, __file__, "--worker", variant, "--", "run", str(clip)]
                cmd += ["-m", model, "-x", str(scale), "--backend", "openvino"]
                cmd += ["--device", "cpu", "--batch-size", str(batch)]
                cmd += ["-o", str(Path(tmp) / "out.mp4"), "--overwrite", "--json"]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    sys.exit(f"{variant}: {proc.stderr.strip().splitlines()[-1:]}")
                fps[variant].append(json.loads(proc.stdout)["fps"])
                print(f"{variant}: {fps[variant][-1]:.2f} fps", file=sys.stderr)
    for variant, v in fps.items():
        print(f"end to end {variant:18s} batch {batch}: " + ", ".join(f"{x:.2f}" for x in v))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="espcn")
    ap.add_argument("--scale", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--e2e", type=Path, default=None, help="a clip: time vsr run end to end")
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--worker", choices=VARIANTS, default=None, help=argparse.SUPPRESS)
    ap.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker is not None:
        _patch(args.worker)
        from vsr.cli import app

        sys.argv = ["vsr", *args.rest]
        app()
        return
    if args.e2e is not None:
        end_to_end(args.e2e, args.model, args.scale, args.batch_size, args.rounds)
    else:
        model_stage(args.model, args.scale, args.rounds)


if __name__ == "__main__":
    main()
