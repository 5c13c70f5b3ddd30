"""The weights vsr ships: each has a model card that matches it, loads at every scale the
card names, comes from a recipe in configs/train, and FSRCNN x3 reaches its target."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from vsr.cli import app
from vsr.models.registry import WEIGHTS_DIR, default_weights, load_model

REPO_ROOT = Path(__file__).resolve().parents[1]
CARDS = sorted(WEIGHTS_DIR.glob("*.json"))


def test_every_weights_file_has_a_card_and_the_reverse() -> None:
    weights = {p.stem for p in WEIGHTS_DIR.glob("*.safetensors")}
    assert weights == {p.stem for p in CARDS}
    assert {"espcn_x3", "fsrcnn_x3"} <= weights


@pytest.mark.parametrize("card_path", CARDS, ids=[p.stem for p in CARDS])
def test_card_describes_its_weights(card_path: Path) -> None:
    card = json.loads(card_path.read_text())
    assert (REPO_ROOT / card["recipe"]).is_file(), card["recipe"]
    assert card["training_data"] == ["T91", "BSD200"]
    for scale in card.get("scales", [card["scale"]]):
        path = default_weights(card["architecture"], scale)
        assert path.with_suffix(".json") == card_path  # what `-m NAME -x S` loads
        model = load_model(card["architecture"], scale)
        assert sum(p.numel() for p in model.module.parameters()) == card["parameters"]
        x = torch.rand(1, model.spec.channels, 12, 16)
        with torch.inference_mode():
            assert model.module(x).shape[-2:] == (12 * scale, 16 * scale)
        assert {"Set5", "Set14"} <= set(card["metrics"])


@pytest.mark.slow
def test_fsrcnn_x3_eval_within_the_target_margin(shared_data: Path | None, tmp_path: Path) -> None:
    """Issue #4: `vsr eval Set5 Set14 -m fsrcnn -x 3` within 0.2 dB of 33.18 / 29.37. Without
    ../shared/data, on generated images: FSRCNN must beat bicubic there."""
    val = shared_data / "val" if shared_data is not None else None
    if val is not None and (val / "Set5").is_dir() and (val / "Set14").is_dir():
        folders = [val / "Set5", val / "Set14"]
    else:
        folders = [tmp_path / "generated"]
        folders[0].mkdir()
        for i in range(3):  # sharp-edged shapes: what SR networks are trained to restore
            rng = np.random.default_rng(i)
            img = np.full((96, 120, 3), 128, np.uint8)
            for _ in range(12):
                colour = tuple(int(c) for c in rng.integers(0, 256, 3))
                x0, y0 = (int(v) for v in rng.integers(0, 100, 2))
                cv2.rectangle(img, (x0, y0), (x0 + 25, y0 + 15), colour, -1)
                cv2.line(img, (x0, 0), (119 - x0, 95), colour, 2)
            cv2.imwrite(str(folders[0] / f"im{i}.png"), img)
    args = ["eval", *map(str, folders), "-m", "fsrcnn", "-x", "3", "--json", "-q"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stderr
    means = {d["name"]: d["mean"] for d in json.loads(result.stdout)["datasets"]}
    if "Set5" in means:
        set5, set14 = means["Set5"]["psnr"], means["Set14"]["psnr"]
        assert set5 >= 33.18 - 0.2 and set14 >= 29.37 - 0.2, (set5, set14)
    else:
        mean = means["generated"]
        assert mean["psnr"] > mean["bicubic_psnr"] + 0.5, mean
