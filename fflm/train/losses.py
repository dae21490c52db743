"""Training losses on points in normalised frame coordinates (pixels / frame side).

`l2` is the paper's Eq. 1: mean squared distance of the global points to the truth plus mean squared
distance of the refined points to the truth. The others replace the per-point term:
`l1` (|dx| + |dy|), `wing` (Feng et al. 2018, on frame pixels scaled to 256), and `ion`
(Euclidean distance over the inter-ocular distance, after the fine-grained refinement paper).
"""

from __future__ import annotations

import math

import torch

from fflm.choices import LOSSES
from fflm.errors import UsageError



def point_loss(pred: torch.Tensor, truth: torch.Tensor, kind: str, norm: torch.Tensor,
               weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean per-point loss of pred vs truth [B, N, 2] (normalised coordinates); norm [B] = ocular distance.
    `weights` [B, N]: each point's share (0 leaves it out); the mean is over the weights' sum."""
    d = pred - truth
    if kind == "l2":
        per_point = d.pow(2).sum(-1)
    elif kind == "l1":
        per_point = d.abs().sum(-1)
    elif kind == "wing":
        w, eps = 10.0, 2.0
        x = d.abs() * 256.0
        c = w - w * math.log(1 + w / eps)
        per_point = torch.where(x < w, w * torch.log1p(x / eps), x - c).sum(-1) / 256.0
    elif kind == "ion":
        per_point = (d.pow(2).sum(-1) + 1e-12).sqrt().div(norm[:, None])
    else:
        raise UsageError(f"unknown loss {kind!r} (one of {', '.join(LOSSES)})")
    if weights is None:
        return per_point.mean()
    return (per_point * weights).sum() / weights.sum().clamp_min(1e-6)


def landmark_loss(outputs: dict, truth: torch.Tensor, side: float, refined_idx: list[int], norm_points: tuple[int, int],
                  kind: str = "l2", weights: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Eq. 1 generalised: global term (every stack) + refined term (every regional stage); `weights` [B, N] as in
    point_loss (self-occluded points, down-weighted label conventions)."""
    t = truth / side
    norm = (t[:, norm_points[0]] - t[:, norm_points[1]]).norm(dim=-1).clamp_min(1e-3)
    glob = sum(point_loss(g / side, t, kind, norm, weights) for g in outputs["global"]) / len(outputs["global"])
    parts = {"global": glob.item()}
    total = glob
    if refined_idx and outputs["refined"]:
        w_ref = weights[:, refined_idx] if weights is not None else None
        reg = sum(point_loss(r / side, t[:, refined_idx], kind, norm, w_ref)
                  for r in outputs["refined"]) / len(outputs["refined"])
        parts["regional"] = reg.item()
        total = total + reg
    return total, parts
