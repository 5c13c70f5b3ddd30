"""Thin wrapper: python scripts/train.py configs/train/NAME.toml [--resume] [--export PATH].

The same function as ``vsr train --config ...`` (``vsr.train.loop.train_from_file``); kept for
``scripts/train_shipped.sh``. Errors: one line on stderr, exit 2 for a bad config.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from vsr.errors import VsrError
from vsr.train.loop import format_results, train_from_file


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("config", type=Path)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="run folder (default runs/<config>)")
    ap.add_argument("--export", type=Path, default=None, help="write best weights here")
    ap.add_argument("--iterations", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        report = train_from_file(
            args.config,
            resume=args.resume,
            out=args.out,
            export=args.export,
            iterations=args.iterations,
            threads=args.threads,
            device=args.device,
            progress=not args.no_progress,
        )
    except VsrError as exc:
        print(f"train.py: error: {exc.one_line()}", file=sys.stderr)
        sys.exit(exc.exit_code)
    for line in format_results(report):
        print(line)


if __name__ == "__main__":
    main()
