"""Export of trained weights: the safetensors file and its model card (JSON: data,
recipe, selection, metrics, and the earlier training stages behind ``weights:`` inits)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from torch import nn

from vsr.models.registry import get_spec
from vsr.models.weights import write_safetensors
from vsr.train.config import TrainConfig


def _earlier_stages(init: str, root: str | None) -> list[dict[str, Any]]:
    """The training stages behind ``weights:F`` init files (from F's model card, if any):
    recipe, iterations, seconds, machine, oldest first."""
    stages: list[dict[str, Any]] = []
    for part in init.split("+"):
        if not part.startswith("weights:"):
            continue
        path = Path(part[len("weights:") :])
        if root is not None and not path.is_absolute():
            path = Path(root) / path
        try:
            card = json.loads(path.with_suffix(".json").read_text())
        except (OSError, ValueError):
            continue
        stages += card.get("earlier_stages", [])
        stages.append(
            {
                k: card[k]
                for k in ("recipe", "iterations", "train_seconds", "machine", "initialisation")
                if k in card
            }
        )
    return stages


def export_weights(
    module: nn.Module,
    cfg: TrainConfig,
    path: Path,
    report: dict,
    *,
    selected_on: str | None = "Set5",
) -> None:
    """Write ``path`` (safetensors) and its model card ``path.with_suffix('.json')``."""
    meta: dict[str, str | int | float] = {"arch": get_spec(cfg.model).arch, "scale": cfg.scale}
    meta.update(getattr(module, "hparams", {}))
    stages = _earlier_stages(cfg.init, report.get("root"))  # read before path is replaced
    path.parent.mkdir(parents=True, exist_ok=True)
    write_safetensors(path, module.state_dict(), meta)
    selection = (
        f"the checkpoint with the best {selected_on} PSNR, validated every {cfg.val_every} "
        "iterations"
        if selected_on
        else "the last iteration (no validation folder)"
    )
    card: dict[str, Any] = {
        "name": cfg.model if cfg.scales else f"{cfg.model}_x{cfg.scale}",
        "architecture": cfg.model,
        "scale": cfg.scale,
        "parameters": sum(p.numel() for p in module.parameters()),
        "licence": "MIT (weights trained by the vsr project)",
        "training_data": [Path(d).name for d in cfg.train_dirs],
        "recipe": report["recipe"],
        "iterations": report["iterations"],
        "initialisation": cfg.init,
        "selection": selection,
        "date": time.strftime("%Y-%m-%d"),
        "train_seconds": report["train_seconds"],
        "machine": report["machine"],
        "protocol": "Y channel (BT.601 limited), LR by MATLAB-compatible bicubic, "
        "border of `scale` pixels shaved; bicubic measured with the same code",
        "metrics": report["results"],
    }
    if cfg.scales:
        card["scales"] = list(cfg.scales)
    if stages:
        card["earlier_stages"] = stages
    if cfg.ema:
        card["ema"] = cfg.ema
    if cfg.channels == 3:
        card["input"] = "RGB"
    path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
