"""FSRCNN's transposed convolution vs its sub-pixel rewrite (``vsr.models.deploy``), network only.

    .venv/bin/python scripts/bench_deconv.py [--scale 2] [--size 640x360] [--runs 10]
                                             [--threads 2] [--no-openvino]

Times the network alone on a 1x1xHxW tensor under ``torch.no_grad`` (``--threads`` torch
threads): the original module (``nn.ConvTranspose2d``) and the module from
:func:`~vsr.models.deploy.inference_module`, in torch eager; then, when ``openvino`` is
importable, both converted with ``openvino.convert_model`` and compiled for the CPU (latency
hint, ``--threads`` inference threads, f32 precision). The variants alternate run by run so
that all see the same machine state; prints the median (and the fastest) ms per frame of
``--runs`` runs after ``--warmup`` runs, and the max difference between the outputs.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from vsr.models.deploy import inference_module
from vsr.models.registry import get_spec


def _openvino(module: torch.nn.Module, example: torch.Tensor, threads: int) -> Callable[..., Any]:
    import openvino as ov

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        converted = ov.convert_model(module, example_input=example)
    compiled = ov.Core().compile_model(
        converted,
        "CPU",
        {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": str(threads),
            "INFERENCE_PRECISION_HINT": "f32",
        },
    )
    array = np.ascontiguousarray(example.numpy())
    return lambda: compiled(array)[0]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--scale", type=int, default=2, help="FSRCNN scale: 2, 3 or 4 (default 2)")
    ap.add_argument("--size", default="640x360", help="input WxH (default 640x360)")
    ap.add_argument("--runs", type=int, default=10, help="timed runs per variant (default 10)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    ap.add_argument("--threads", type=int, default=2, help="torch / OpenVINO threads (default 2)")
    ap.add_argument("--no-openvino", action="store_true", help="torch eager only")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    original = get_spec("fsrcnn").build(args.scale, None, {}).eval()
    rewritten = inference_module(original)
    x = torch.rand(1, 1, h, w)
    variants: dict[str, Callable[..., Any]] = {
        "torch eager, ConvTranspose2d": lambda: original(x),
        "torch eager, sub-pixel": lambda: rewritten(x),
    }
    if not args.no_openvino:
        try:
            variants["OpenVINO, ConvTranspose2d"] = _openvino(original, x, args.threads)
            variants["OpenVINO, sub-pixel"] = _openvino(rewritten, x, args.threads)
        except ImportError:
            print("openvino is not importable: torch eager only")

    times: dict[str, list[float]] = {name: [] for name in variants}
    outputs: dict[str, np.ndarray] = {}
    with torch.no_grad():
        for i in range(args.warmup + args.runs):
            for name, run in variants.items():
                start = time.perf_counter()
                y = run()
                elapsed = time.perf_counter() - start
                if i >= args.warmup:
                    times[name].append(elapsed)
                outputs[name] = np.asarray(y)

    ref = outputs["torch eager, ConvTranspose2d"]
    print(f"FSRCNN x{args.scale}, input 1x1x{h}x{w}, {args.threads} threads, median of {args.runs}")
    for name, t in times.items():
        diff = float(np.abs(outputs[name] - ref).max())
        ms, best = 1000 * statistics.median(t), 1000 * min(t)
        print(
            f"  {name:30s} {ms:8.1f} ms/frame (min {best:.1f})"
            f"   max |diff| vs torch deconv {diff:.2e}"
        )


if __name__ == "__main__":
    main()
