"""From the network's maps to scored boxes: peak picking, box decoding and non-maximum suppression.

Conventions shared with training (`fflm.train.detector_targets`): on a level of stride s, cell (i, j) covers input
pixels [j·s, (j+1)·s - 1] × [i·s, (i+1)·s - 1], so its centre is at (j·s + (s-1)/2, i·s + (s-1)/2) in 0-based
pixel-centre coordinates. Channel 0 is the centre logit; channels 1-4 are log(distance / s) from the cell centre
to the left, top, right and bottom box edges.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch.nn import functional as F

from fflm.geometry import cell_centres


def decode_level(out: np.ndarray, stride: int, threshold: float, top_k: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """Boxes [K, 4] (input pixels) and scores [K] of one level's map [5, h, w] (one image).

    A candidate is a local maximum of the centre score in its 3×3 neighbourhood (CenterNet's peak rule, done with
    a max-pool) that reaches `threshold`.
    """
    logits = torch.as_tensor(out[:1])[None]
    heat = torch.sigmoid(logits)
    peaks = heat == F.max_pool2d(heat, 3, 1, 1)
    heat = (heat * peaks)[0, 0].numpy()
    iy, ix = np.nonzero(heat >= threshold)
    scores = heat[iy, ix]
    if len(scores) > top_k:
        keep = np.argsort(-scores)[:top_k]
        iy, ix, scores = iy[keep], ix[keep], scores[keep]
    d = np.exp(np.clip(out[1:5, iy, ix].astype(np.float64), -8, 8)) * stride  # [4, K]
    xc, yc = cell_centres(out.shape[2], stride)[ix], cell_centres(out.shape[1], stride)[iy]
    boxes = np.stack([xc - d[0], yc - d[1], xc + d[2], yc + d[3]], axis=1)
    return boxes, scores.astype(np.float64)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float = 0.4, score_threshold: float = 0.0) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression, best score first (OpenCV's NMSBoxes)."""
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.size == 0:
        return np.zeros(0, dtype=np.int64)
    boxes = boxes.reshape(len(boxes), -1)[:, :4]  # rows may carry keypoints after the box
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    keep = cv2.dnn.NMSBoxes(xywh.tolist(), np.asarray(scores, np.float64).tolist(), score_threshold, iou)
    keep = np.asarray(keep, dtype=np.int64).reshape(-1)
    return keep[np.argsort(-np.asarray(scores)[keep], kind="stable")]


def decode(outputs: list[np.ndarray], strides: tuple[int, ...], threshold: float = 0.5, iou: float = 0.4,
           top_k: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """Boxes [K, 4] and scores [K] of one image from its level maps, after NMS across levels, best first."""
    parts = [decode_level(o, s, threshold, top_k) for o, s in zip(outputs, strides)]
    boxes = np.concatenate([b for b, _ in parts]) if parts else np.zeros((0, 4))
    scores = np.concatenate([s for _, s in parts]) if parts else np.zeros(0)
    keep = nms(boxes, scores, iou)
    return boxes[keep], scores[keep]
