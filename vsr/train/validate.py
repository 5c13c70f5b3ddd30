"""Validation during training: the model's (and bicubic's) mean Y-PSNR and SSIM under the
protocol of ``vsr.evaluate``, in inference mode, drawing no random numbers (so validating
never changes what training does next)."""

from __future__ import annotations

import torch
from torch import nn

from vsr import evaluate as protocol


@torch.inference_mode()
def evaluate(
    module: nn.Module,
    pairs: list[protocol.EvalPair],
    scale: int,
    *,
    channels: int = 1,
    device: torch.device | None = None,
) -> tuple[float, float]:
    """Mean Y-PSNR and SSIM of the model under the protocol of ``vsr.evaluate``.

    ``channels`` 1: the model sees the LR luma; 3: the LR RGB, and its output's luma is
    scored. Inference mode, no random numbers drawn: training's generators are untouched."""
    module.eval()
    dev = device or torch.device("cpu")

    def fn(x: torch.Tensor) -> torch.Tensor:
        return module(x.to(dev))

    return protocol.mean_scores(protocol.model_scores(fn, pairs, scale=scale, channels=channels))


def bicubic_scores(pairs: list[protocol.EvalPair], scale: int) -> tuple[float, float]:
    """Mean Y-PSNR and SSIM of bicubic under the protocol of ``vsr.evaluate``."""
    return protocol.mean_scores(protocol.bicubic_scores(pairs, scale=scale))
