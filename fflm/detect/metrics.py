"""Detection metrics: greedy matching at an IoU threshold, recall by face size, precision.

A detection is a true positive when it matches a ground-truth face of the evaluated sizes, neutral when it
matches a face outside them (too small, an ignore region, an unlabelled YuNet face), and a false positive
otherwise. This is WIDER FACE's usual treatment of tiny and ignored faces.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fflm.geometry import box_iou, face_size


def match(dets: np.ndarray, truth: np.ndarray, iou: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching in detection order (best first): (truth index per detection or -1, matched flag per truth)."""
    dets, truth = np.asarray(dets).reshape(-1, 4), np.asarray(truth).reshape(-1, 4)
    owner = np.full(len(dets), -1)
    taken = np.zeros(len(truth), bool)
    if len(dets) and len(truth):
        m = box_iou(dets, truth)
        for i in range(len(dets)):
            cand = np.where(~taken & (m[i] >= iou))[0]
            if len(cand):
                j = cand[m[i, cand].argmax()]
                owner[i], taken[j] = j, True
    return owner, taken


@dataclass
class DetectionTally:
    """Counts over many images for one detector."""

    min_size: float = 20.0
    found_by_size: list = field(default_factory=list)  # (size, found) per evaluated truth face
    tp: int = 0
    fp: int = 0

    def add(self, dets: np.ndarray, truth: np.ndarray, neutral: np.ndarray | None = None, iou: float = 0.5) -> None:
        """One image: detections best first, truth faces, and neutral regions (ignored faces, unlabelled faces)."""
        truth = np.asarray(truth, np.float64).reshape(-1, 4)
        neutral = np.zeros((0, 4)) if neutral is None else np.asarray(neutral, np.float64).reshape(-1, 4)
        sizes = face_size(truth)
        big = sizes >= self.min_size
        allb = np.concatenate([truth[big], truth[~big], neutral])
        owner, taken = match(dets, allb, iou)
        nbig = int(big.sum())
        self.tp += int(((owner >= 0) & (owner < nbig)).sum())
        unmatched = owner < 0
        if unmatched.any() and len(neutral):  # a detection inside an ignore region is not a false positive
            d = np.asarray(dets).reshape(-1, 4)[unmatched]
            cx, cy = (d[:, 0] + d[:, 2]) / 2, (d[:, 1] + d[:, 3]) / 2
            inside = ((cx[:, None] >= neutral[None, :, 0]) & (cx[:, None] <= neutral[None, :, 2])
                      & (cy[:, None] >= neutral[None, :, 1]) & (cy[:, None] <= neutral[None, :, 3])).any(1)
            unmatched[np.where(unmatched)[0][inside]] = False
        self.fp += int(unmatched.sum())
        self.found_by_size += list(zip(sizes[big].tolist(), taken[:nbig].tolist()))

    def recall(self, lo: float = 0.0, hi: float = float("inf")) -> float:
        sel = [f for s, f in self.found_by_size if lo <= s < hi]
        return float(np.mean(sel)) if sel else float("nan")

    def count(self, lo: float = 0.0, hi: float = float("inf")) -> int:
        return sum(1 for s, _ in self.found_by_size if lo <= s < hi)

    def precision(self) -> float:
        return self.tp / max(self.tp + self.fp, 1)


def roc_auc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """Area under the ROC curve of a score: the chance that a random positive scores above a random negative
    (ties count half), the Mann-Whitney U statistic over both counts."""
    pos, neg = np.asarray(positives, np.float64).ravel(), np.asarray(negatives, np.float64).ravel()
    if not len(pos) or not len(neg):
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))
