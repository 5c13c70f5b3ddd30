"""Re-measure the shipped weights with ``vsr eval``'s protocol and write the figures into
their model cards (``vsr/weights/*.json``), then rewrite docs/models.md.

    python scripts/update_cards.py [--val ../shared/data/val]

Each card's ``metrics`` gets Set5 and Set14 PSNR/SSIM of the model and of bicubic (MATLAB
imresize), measured now, and ``measured_with`` the equivalent ``vsr eval`` command.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import models_table
import torch

from vsr import evaluate as ev
from vsr.models.registry import load_model

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--val", type=Path, default=ROOT.parent / "shared" / "data" / "val")
    args = ap.parse_args()
    sets = [args.val / "Set5", args.val / "Set14"]
    for card_path in sorted((ROOT / "vsr" / "weights").glob("*.json")):
        card = json.loads(card_path.read_text())
        name, scale = card["architecture"], int(card["scale"])
        model = load_model(name, scale)  # the built-in weights this card describes
        module = model.module.eval()
        metrics = {}
        for folder in sets:
            pairs = ev.load_dataset(folder, scale)
            with torch.inference_mode():
                p, s = ev.mean_scores(ev.model_scores(module, pairs, scale=scale, channels=1))
            bp, bs = ev.mean_scores(ev.bicubic_scores(pairs, scale=scale))
            metrics[folder.name] = {
                "psnr": round(p, 3),
                "ssim": round(s, 4),
                "bicubic_psnr": round(bp, 3),
                "bicubic_ssim": round(bs, 4),
                "gain_db": round(p - bp, 3),
            }
        card["metrics"] = metrics
        card["measured_with"] = (
            f"vsr eval ../shared/data/val/Set5 ../shared/data/val/Set14 -m {name} -x {scale}"
        )
        card_path.write_text(json.dumps(card, indent=2) + "\n")
        print(card_path.name, json.dumps(metrics))
    models_table.main()


if __name__ == "__main__":
    main()
