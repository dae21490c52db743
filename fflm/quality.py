"""A landmark-quality score per face in [0, 1]: are the points on a face?

The score is a logistic map of the mean point confidence (heatmap peak mass, `Face.landmark_scores`): on a face
the landmark networks' heatmaps are sharp, on a collar, a wall or a crowd's background they spread out. Its centre
and width were fitted (`python -m fflm.train.fit_quality`, fflm/assets/quality.json) on the shipped weights' scores
for 300-W train faces against background crops of scene photos; other weights keep the same map, which then
orders faces the same way but is not calibrated for them.
"""

from __future__ import annotations

import json

import numpy as np

QUALITY_ASSET = "quality.json"


def load_map() -> tuple[float, float]:
    """(centre, width) of the logistic map."""
    from fflm.weights import asset

    d = json.loads(asset(QUALITY_ASSET).read_text())
    return float(d["centre"]), float(d["width"])


def quality(landmark_scores: np.ndarray, centre: float, width: float) -> np.ndarray:
    """Quality [K] of faces with point confidences [K, N]: 1 / (1 + exp(-(mean - centre) / width))."""
    m = np.asarray(landmark_scores, np.float64).mean(axis=-1)
    return 1.0 / (1.0 + np.exp(-(m - centre) / width))


def fit_logistic(positives: np.ndarray, negatives: np.ndarray, iterations: int = 50) -> tuple[float, float]:
    """(centre, width) of the 1-D logistic regression separating two sets of mean confidences (Newton's method,
    a small ridge on the slope so separable sets still give a finite width)."""
    x = np.concatenate([positives, negatives]).astype(np.float64)
    y = np.concatenate([np.ones(len(positives)), np.zeros(len(negatives))])
    a, b = 0.0, 0.0  # logit = a·x + b
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-(a * x + b)))
        g = np.array([((p - y) * x).sum() + 1e-3 * a, (p - y).sum()])
        w = p * (1 - p)
        h = np.array([[(w * x * x).sum() + 1e-3, (w * x).sum()], [(w * x).sum(), w.sum()]])
        a, b = np.array([a, b]) - np.linalg.solve(h + 1e-9 * np.eye(2), g)
    return float(-b / a), float(1 / a)
