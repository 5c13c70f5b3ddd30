"""Training checkpoints: saving the whole training state and resuming it exactly.

Exact resume: a checkpoint holds everything the next step depends on: the weights, Adam's
state, the EMA weights, the step (the learning rate is a function of it), the patch
sampler's generator state (the data order), torch's CPU (and CUDA) generator state, the
best score and the history. Validation runs in inference mode and draws no random
numbers. So on the CPU, with the same thread count, a run of N iterations and a run killed
after a checkpoint and resumed to N end with bit-identical weights (tests/test_train.py).
Checkpoints and ``best.pt`` are written to a temporary name and renamed, so a kill never
leaves a torn file.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vsr.train.config import TrainConfig
from vsr.train.data import PatchSampler
from vsr.train.ema import EMA

log = logging.getLogger("vsr")

#: Checkpoint format: 1 (no "format" key) had no EMA/CUDA RNG; 2 adds them. Both resume.
CHECKPOINT_FORMAT = 2


@dataclass
class Resumed:
    """What :func:`resume_checkpoint` restored besides the objects it loads in place: the
    loop's counters, and the EMA to use from now on."""

    step: int
    best: float
    history: list[dict[str, Any]]
    seconds: float
    loss_avg: float | None
    ema: EMA | None


def _save_atomic(obj: object, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def save_weights(module: nn.Module, path: Path) -> None:
    """``module``'s state dict to ``path`` (``best.pt``), atomically."""
    _save_atomic(module.state_dict(), path)


def save_checkpoint(
    path: Path,
    *,
    cfg: TrainConfig,
    module: nn.Module,
    opt: torch.optim.Optimizer,
    ema: EMA | None,
    samplers: dict[int, PatchSampler],
    dev: torch.device,
    step: int,
    best: float,
    history: list[dict[str, Any]],
    seconds: float,
    loss_avg: float | None,
) -> None:
    """Write the training state to ``path`` (``checkpoint.pt``), atomically."""
    _save_atomic(
        {
            "format": CHECKPOINT_FORMAT,
            "model": module.state_dict(),
            "opt": opt.state_dict(),
            "ema": ema.state_dict() if ema is not None else None,
            "sampler": (
                {"multi": 1, **{str(s): smp.state() for s, smp in samplers.items()}}
                if cfg.scales
                else samplers[cfg.scale].state()
            ),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None,
            "step": step,
            "best": best,
            "history": history,
            "seconds": seconds,
            "loss_avg": loss_avg,
            "config": asdict(cfg),
        },
        path,
    )


def resume_checkpoint(
    path: Path,
    *,
    cfg: TrainConfig,
    module: nn.Module,
    opt: torch.optim.Optimizer,
    ema: EMA | None,
    samplers: dict[int, PatchSampler],
    dev: torch.device,
) -> Resumed:
    """Load the checkpoint at ``path`` into ``module``, ``opt``, ``ema``, the samplers and
    torch's generators; return the counters (and the EMA: a new one, started from the
    resumed weights, when the checkpoint has none)."""
    # weights_only: a checkpoint is data (tensors, numbers, strings), never code
    state = torch.load(path, map_location="cpu", weights_only=True)
    _check_resumed_config(state.get("config", {}), asdict(cfg))
    module.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    saved = state["sampler"]
    for s, sampler in samplers.items():
        sampler.set_state(saved[str(s)] if "multi" in saved else saved)
    torch.set_rng_state(state["torch_rng"])
    if dev.type == "cuda" and state.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(state["cuda_rng"], dev)
    step, best, history = state["step"], state["best"], state["history"]
    seconds = state.get("seconds", 0.0)
    running = state.get("loss_avg")
    if ema is not None:
        if state.get("ema") is not None:
            ema.load_state_dict(state["ema"])
        else:
            log.warning("the checkpoint has no EMA weights: the average starts now")
            ema = EMA(module, cfg.ema)
    log.info("resumed %s at step %d", path, step)
    return Resumed(step, best, history, seconds, running, ema)


def _check_resumed_config(saved: dict[str, Any], now: dict[str, Any]) -> None:
    """Warn when the recipe changed since the checkpoint (the run is then not the recipe's)."""
    changed = [
        k
        for k in saved
        if k in now and k != "threads" and json.dumps(saved[k]) != json.dumps(now[k])
    ]
    if changed:
        log.warning("resuming with a config that differs from the checkpoint's in %s", changed)
