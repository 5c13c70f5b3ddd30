"""The ESPCN x3 network alone at 640x360 on the CPU, in the execution paths PyTorch offers:
eager channels_last (what vsr uses), eager NCHW, traced + frozen TorchScript in both
layouts, and MKLDNN tensors.

    python scripts/bench_layouts.py [--size 640x360] [--frames 8]
"""

from __future__ import annotations

import argparse
import time

import torch

from vsr.models.registry import load_model


def _ms(fn, n: int) -> float:  # noqa: ANN001
    for _ in range(2):
        fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--frames", type=int, default=8)
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    net = load_model("espcn", 3).module.eval()
    x = torch.rand(1, 1, h, w)
    xcl = x.contiguous(memory_format=torch.channels_last)
    print(f"ESPCN x3 on {w}x{h}, {torch.get_num_threads()} threads, ms per frame:")
    with torch.inference_mode():
        cl = net.to(memory_format=torch.channels_last)
        print(f"eager channels_last   {_ms(lambda: cl(xcl), args.frames):7.1f}")
        nchw = net.to(memory_format=torch.contiguous_format)
        print(f"eager NCHW            {_ms(lambda: nchw(x), args.frames):7.1f}")
    with torch.no_grad():
        for name, fmt, inp in (("channels_last", torch.channels_last, xcl),
                               ("NCHW", torch.contiguous_format, x)):  # fmt: skip
            traced = torch.jit.freeze(torch.jit.trace(net.to(memory_format=fmt).eval(), inp))
            print(f"TorchScript {name:<10}{_ms(lambda t=traced, i=inp: t(i), args.frames):7.1f}")
        try:
            from torch.utils import mkldnn

            m = mkldnn.to_mkldnn(net.to(memory_format=torch.contiguous_format))
            xm = x.to_mkldnn()
            print(f"MKLDNN tensors        {_ms(lambda: m(xm).to_dense(), args.frames):7.1f}")
        except RuntimeError as exc:
            print(f"MKLDNN tensors        fails: {str(exc).splitlines()[0][:90]}")


if __name__ == "__main__":
    main()
