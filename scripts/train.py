"""Thin wrapper: python scripts/train.py configs/train/NAME.toml [--resume] [--export PATH]."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from vsr.train.loop import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("config", type=Path)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="run folder (default runs/<config>)")
    ap.add_argument("--export", type=Path, default=None, help="write best weights here")
    ap.add_argument("--iterations", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = TrainConfig.from_toml(args.config, iterations=args.iterations, threads=args.threads)
    out = args.out or ROOT / "runs" / args.config.stem
    recipe = (
        str(args.config.resolve().relative_to(ROOT))
        if args.config.resolve().is_relative_to(ROOT)
        else str(args.config)
    )
    report = train(
        cfg,
        out_dir=out,
        root=ROOT,
        resume=args.resume,
        export=args.export,
        recipe=recipe,
        progress=not args.no_progress,
    )
    for name, r in report["results"].items():
        print(
            f"{name}: {r['psnr']:.2f} dB / {r['ssim']:.4f} (bicubic {r['bicubic_psnr']:.2f} dB, "
            f"gain {r['gain_db']:+.2f} dB)"
        )


if __name__ == "__main__":
    main()
