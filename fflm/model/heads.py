"""Latent heatmaps to points: channel-wise spatial softmax, soft-argmax and a per-point confidence."""

from __future__ import annotations

import math

import torch
from torch import nn


def heatmap_grid(h: int, w: int, stride: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Input-pixel coordinates of heatmap cell centres (a stride-s cell averages s input pixels)."""
    off = (stride - 1) / 2
    xs = torch.arange(w, device=device, dtype=dtype) * stride + off
    ys = torch.arange(h, device=device, dtype=dtype) * stride + off
    return xs, ys


def soft_argmax(logits: torch.Tensor, beta: torch.Tensor | float = 1.0, stride: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Spatial softmax of logits [B, N, h, w] (temperature 1/beta) and its expectation.

    Returns points [B, N, 2] in input pixels (0-based centres) and the probability maps [B, N, h, w].
    """
    b, n, h, w = logits.shape
    dtype = torch.promote_types(logits.dtype, torch.float32)  # half/bfloat16 logits: softmax in float32
    prob = torch.softmax((logits * beta).reshape(b, n, h * w).to(dtype), dim=-1).reshape(b, n, h, w)
    xs, ys = heatmap_grid(h, w, stride, logits.device, prob.dtype)
    x = (prob.sum(dim=2) * xs).sum(dim=-1)
    y = (prob.sum(dim=3) * ys).sum(dim=-1)
    return torch.stack([x, y], dim=-1), prob


def confidence(prob: torch.Tensor, points: torch.Tensor, stride: int = 1, radius: float = 1.5) -> torch.Tensor:
    """Fraction of each heatmap's probability mass within `radius` heatmap cells of its soft-argmax point.

    Near 1: a single sharp peak (the point is well determined). Low: a diffuse or multi-modal map, as on
    occluded, blurred or out-of-frame points. Values lie in [0, 1].
    """
    _, _, h, w = prob.shape
    xs, ys = heatmap_grid(h, w, stride, prob.device, prob.dtype)
    dx2 = ((xs[None, None, :] - points[..., 0:1]) / stride) ** 2
    dy2 = ((ys[None, None, :] - points[..., 1:2]) / stride) ** 2
    inside = (dy2[..., :, None] + dx2[..., None, :]) <= radius**2
    return (prob * inside).sum(dim=(2, 3)).clamp(0.0, 1.0)


class SoftArgmax(nn.Module):
    """Soft-argmax with a configured or learnable temperature (learned as log beta)."""

    def __init__(self, temperature: float = 1.0, learnable: bool = True) -> None:
        super().__init__()
        log_beta = torch.tensor(-math.log(temperature))
        if learnable:
            self.log_beta = nn.Parameter(log_beta)
        else:
            self.register_buffer("log_beta", log_beta)

    def forward(self, logits: torch.Tensor, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
        return soft_argmax(logits, self.log_beta.exp(), stride)
