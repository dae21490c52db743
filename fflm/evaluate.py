"""Landmark error metrics and evaluation reports.

NME of one face = mean over points of ‖p - t‖ / d, with d the distance between the scheme's two
normalisation points of the truth (outer eye corners for 300-W: "inter-ocular"), or the truth box diagonal.
"""

from __future__ import annotations

import numpy as np


def nme(pred: np.ndarray, truth: np.ndarray, norm_points: tuple[int, int] | None, norm_truth: np.ndarray | None = None) -> np.ndarray:
    """Per-face NME [B] of pred vs truth [B, N, 2]. `norm_points` index into `norm_truth` (default `truth`);
    None normalises by the diagonal of the truth's tight box."""
    pred, truth = np.asarray(pred, np.float64), np.asarray(truth, np.float64)
    ref = truth if norm_truth is None else np.asarray(norm_truth, np.float64)
    if norm_points is None:
        d = np.linalg.norm(ref.max(axis=-2) - ref.min(axis=-2), axis=-1)
    else:
        d = np.linalg.norm(ref[:, norm_points[0]] - ref[:, norm_points[1]], axis=-1)
    return np.linalg.norm(pred - truth, axis=-1).mean(axis=-1) / np.maximum(d, 1e-12)
