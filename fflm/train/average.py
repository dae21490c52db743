"""A moving average of a network's weights, validated and exported in place of the last step's weights."""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


def moving_average(model: nn.Module, decay: float) -> AveragedModel:
    """An exponential moving average of `model`'s parameters and BatchNorm statistics, with a warm-up: update n
    uses decay min(`decay`, (1 + n) / (10 + n)). torch's `get_ema_multi_avg_fn` has a fixed decay, so the first
    step's weights keep a share decay^n (a third after 500 steps at 0.998): freshly initialised layers then
    poison the average for epochs. Call `update_parameters(model)` after every optimiser step."""

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n: torch.Tensor) -> None:
        d = min(decay, (1.0 + float(n)) / (10.0 + float(n)))
        for a, c in zip(averaged, current, strict=True):
            if a.is_floating_point():
                a.lerp_(c, 1.0 - d)
            else:  # counters (BatchNorm's num_batches_tracked) follow the model
                a.copy_(c)

    return AveragedModel(model, multi_avg_fn=update, use_buffers=True)
