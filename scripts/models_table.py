"""Write docs/models.md from the model cards in vsr/weights/*.json.

python scripts/models_table.py            # rewrites docs/models.md
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    cards = [json.loads(p.read_text()) for p in sorted((ROOT / "vsr" / "weights").glob("*.json"))]
    lines = [
        "# Shipped models",
        "",
        "Weights trained by vsr's own training code (`vsr/train`) on T91 + BSD200 only.",
        "Quality is measured with `vsr eval` on the full Set5 and Set14 images with the",
        "protocol of the literature: LR made with MATLAB-compatible bicubic, PSNR/SSIM on the Y",
        "channel (BT.601 limited range; greyscale images on their grey values), `scale` pixels",
        "shaved from each border; bicubic with the same code on the same images. Each line",
        "comes from the command in its last column; `python scripts/update_cards.py` re-measures",
        "every card and rewrites this page. Train a model again with",
        "`vsr train --config RECIPE --export vsr/weights/NAME.safetensors`.",
        "",
        "| model | params | iterations | CPU time | Set5 PSNR / SSIM | bicubic | gain | "
        "Set14 PSNR / SSIM | bicubic | gain | recipe | measured with |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cards:
        cells = [
            c["name"],
            f"{c['parameters']:,}",
            f"{c['iterations']:,}",
            f"{c['train_seconds'] / 60:.0f} min",
        ]
        for name in ("Set5", "Set14"):
            r = c["metrics"][name]
            cells += [
                f"{r['psnr']:.2f} / {r['ssim']:.4f}",
                f"{r['bicubic_psnr']:.2f} / {r['bicubic_ssim']:.4f}",
                f"{r['gain_db']:+.2f} dB",
            ]
        cells.append(f"`{c['recipe']}`")
        cells.append(f"`{c['measured_with']}`")
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Training machine and wall time are in each card (`machine`, `train_seconds`). These",
        "are first weights: the published FSRCNN/ESPCN figures (Set5 x3 about 33.1 dB) need far",
        "longer training than a CPU allows in a session.",
        "",
    ]
    (ROOT / "docs" / "models.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
