"""Training losses on points in normalised frame coordinates (pixels / frame side).

`l2` is the paper's Eq. 1: mean squared distance of the global points to the truth plus mean squared
distance of the refined points to the truth. The others replace the per-point term:
`l1` (|dx| + |dy|), `wing` (Feng et al. 2018, on frame pixels scaled to 256), and `ion`
(Euclidean distance over the inter-ocular distance, after the fine-grained refinement paper).
"""

from __future__ import annotations

import math

import torch

LOSSES = ("l2", "l1", "wing", "ion")


def point_loss(pred: torch.Tensor, truth: torch.Tensor, kind: str, norm: torch.Tensor) -> torch.Tensor:
    """Mean per-point loss of pred vs truth [B, N, 2] (normalised coordinates); norm [B] = ocular distance."""
    d = pred - truth
    if kind == "l2":
        return d.pow(2).sum(-1).mean()
    if kind == "l1":
        return d.abs().sum(-1).mean()
    if kind == "wing":
        w, eps = 10.0, 2.0
        x = d.abs() * 256.0
        c = w - w * math.log(1 + w / eps)
        return torch.where(x < w, w * torch.log1p(x / eps), x - c).sum(-1).mean() / 256.0
    if kind == "ion":
        return (d.pow(2).sum(-1) + 1e-12).sqrt().div(norm[:, None]).mean()
    raise ValueError(f"unknown loss {kind!r} (one of {', '.join(LOSSES)})")


def landmark_loss(outputs: dict, truth: torch.Tensor, side: float, refined_idx: list[int], norm_points: tuple[int, int],
                  kind: str = "l2") -> tuple[torch.Tensor, dict[str, float]]:
    """Eq. 1 generalised: global term (every stack) + refined term (every regional stage)."""
    t = truth / side
    norm = (t[:, norm_points[0]] - t[:, norm_points[1]]).norm(dim=-1).clamp_min(1e-3)
    glob = sum(point_loss(g / side, t, kind, norm) for g in outputs["global"]) / len(outputs["global"])
    parts = {"global": glob.item()}
    total = glob
    if refined_idx and outputs["refined"]:
        reg = sum(point_loss(r / side, t[:, refined_idx], kind, norm) for r in outputs["refined"]) / len(outputs["refined"])
        parts["regional"] = reg.item()
        total = total + reg
    return total, parts
