"""The exponential moving average of a network's weights that training can keep
(``ema`` in a recipe), with the state a checkpoint saves to resume it exactly."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class EMA:
    """Exponential moving average of a module's weights (and buffers), on its device.

    The decay ramps up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so early
    averages are not dominated by the initial weights; it depends only on ``n``, which the
    checkpoint keeps."""

    def __init__(self, module: nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(module).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.updates = 0

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        src = module.state_dict()
        for key, avg in self.module.state_dict().items():
            if avg.dtype.is_floating_point:
                avg.lerp_(src[key], 1.0 - d)
            else:
                avg.copy_(src[key])

    def state_dict(self) -> dict[str, Any]:
        return {"weights": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["weights"])
        self.updates = int(state["updates"])
