"""Training targets for the detector's levels, and its loss.

Per level of stride s and per face: a Gaussian centre bump (peak exactly 1 at the face's centre cell), the box
distances for cells near the centre, and an ignore mask. Each level owns a band of face sizes (sqrt(w·h) in
input pixels): faces inside are positives, faces in the soft margin are ignored, the rest are negatives, so
the stride-8 head learns small faces and the stride-32 head large ones, with some overlap.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from fflm.geometry import cell_centres, face_size

#: (positive min, positive max, ignore min, ignore max) face size per stride; outside the ignore band = negative
BANDS = {8: (8.0, 72.0, 5.0, 110.0), 16: (24.0, 160.0, 16.0, 240.0), 32: (44.0, 1e9, 26.0, 1e9)}
MIN_FACE = 8.0  # faces smaller than this are ignored everywhere


def level_targets(boxes: np.ndarray, ignore: np.ndarray, size: tuple[int, int], stride: int) -> np.ndarray:
    """Targets [7, h, w] for one image: heat, negative weight, box weight, log-distances (4).

    boxes: positives [N, 4]; ignore: [M, 4] regions that are neither positive nor negative.
    """
    H, W = size
    h, w = H // stride, W // stride
    out = np.zeros((7, h, w), np.float32)
    out[1] = 1.0
    off = (stride - 1) / 2
    xs, ys = cell_centres(w, stride), cell_centres(h, stride)
    pmin, pmax, imin, imax = BANDS[stride]
    owner = np.zeros((h, w), np.float32)

    def blank(b: np.ndarray) -> None:
        j0, j1 = np.searchsorted(xs, b[0]), np.searchsorted(xs, b[2])
        i0, i1 = np.searchsorted(ys, b[1]), np.searchsorted(ys, b[3])
        if j1 <= j0 or i1 <= i0:  # a box between cell centres: blank its nearest cell
            j0, i0 = int(np.clip(round(((b[0] + b[2]) / 2 - off) / stride), 0, w - 1)), int(
                np.clip(round(((b[1] + b[3]) / 2 - off) / stride), 0, h - 1))
            j1, i1 = j0 + 1, i0 + 1
        out[1, i0:i1, j0:j1] = 0.0

    for b in ignore:
        blank(b)
    for b in boxes:
        bw, bh = b[2] - b[0], b[3] - b[1]
        s = float(face_size(b))
        cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        if s < MIN_FACE or not (pmin <= s <= pmax):
            if s < MIN_FACE or imin <= s <= imax:
                blank(b)
            continue
        u, v = (cx - off) / stride, (cy - off) / stride
        if not (-0.5 <= u < w - 0.5 and -0.5 <= v < h - 0.5):
            blank(b)
            continue
        ci, cj = int(round(v)), int(round(u))
        sx, sy = max(0.5, bw / stride / 6), max(0.5, bh / stride / 6)
        r = 3
        i0, i1 = max(0, ci - int(r * sy) - 1), min(h, ci + int(r * sy) + 2)
        j0, j1 = max(0, cj - int(r * sx) - 1), min(w, cj + int(r * sx) + 2)
        gy = np.exp(-((np.arange(i0, i1) - ci) ** 2) / (2 * sy * sy))
        gx = np.exp(-((np.arange(j0, j1) - cj) ** 2) / (2 * sx * sx))
        g = gy[:, None] * gx[None, :]
        out[0, i0:i1, j0:j1] = np.maximum(out[0, i0:i1, j0:j1], g)
        # box targets where this face's bump dominates and is high, and the cell centre lies inside the box
        cxs, cys = xs[j0:j1], ys[i0:i1]
        inside = (cxs[None, :] > b[0]) & (cxs[None, :] < b[2]) & (cys[:, None] > b[1]) & (cys[:, None] < b[3])
        take = (g > owner[i0:i1, j0:j1]) & (g >= 0.3) & inside
        take[ci - i0, cj - j0] = g[ci - i0, cj - j0] > owner[ci, cj]  # the centre cell always, unless taken by a nearer face
        if not take.any():
            continue
        ti, tj = np.nonzero(take)
        gi, gj = ti + i0, tj + j0
        d = np.stack([xs[gj] - b[0], ys[gi] - b[1], b[2] - xs[gj], b[3] - ys[gi]]) / stride
        out[3:7, gi, gj] = np.log(np.maximum(d, 1e-2))
        out[2, gi, gj] = g[ti, tj]
        owner[gi, gj] = g[ti, tj]
    return out


def focal_loss(logits: torch.Tensor, heat: torch.Tensor, negw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """CenterNet's penalty-reduced focal loss summed over cells, and the number of positive cells."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = heat >= 0.999
    logp, log1p = F.logsigmoid(logits), F.logsigmoid(-logits)
    pos_loss = -((1 - p) ** 2 * logp)[pos].sum()
    neg_loss = -(((1 - heat) ** 4) * p ** 2 * log1p * negw)[~pos].sum()
    return pos_loss + neg_loss, pos.sum()


def iou_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """GIoU loss between boxes given as log-distances [K, 4] from the same cell centre, weighted, summed."""
    p, t = pred.clamp(-8, 8).exp(), target.exp()
    pa = (p[:, 0] + p[:, 2]) * (p[:, 1] + p[:, 3])
    ta = (t[:, 0] + t[:, 2]) * (t[:, 1] + t[:, 3])
    iw = torch.minimum(p[:, 0], t[:, 0]) + torch.minimum(p[:, 2], t[:, 2])
    ih = torch.minimum(p[:, 1], t[:, 1]) + torch.minimum(p[:, 3], t[:, 3])
    inter = iw * ih
    union = pa + ta - inter
    cw = torch.maximum(p[:, 0], t[:, 0]) + torch.maximum(p[:, 2], t[:, 2])
    ch = torch.maximum(p[:, 1], t[:, 1]) + torch.maximum(p[:, 3], t[:, 3])
    enclose = cw * ch
    giou = inter / union - (enclose - union) / enclose
    return ((1 - giou) * weight).sum()


def detector_loss(outputs: list[torch.Tensor], targets: list[torch.Tensor], box_weight: float = 2.0) -> dict:
    """Total loss over levels: focal (normalised by positives) + box GIoU (normalised by box weight)."""
    cls, box, npos, nbox = 0.0, 0.0, 0.0, 0.0
    for o, t in zip(outputs, targets):
        c, n = focal_loss(o[:, 0], t[:, 0], t[:, 1])
        cls, npos = cls + c, npos + n
        m = t[:, 2] > 0
        if m.any():
            pr = o[:, 1:5].permute(0, 2, 3, 1)[m]
            tg = t[:, 3:7].permute(0, 2, 3, 1)[m]
            wt = t[:, 2][m]
            box, nbox = box + iou_loss(pr, tg, wt), nbox + wt.sum()
    cls = cls / max(float(npos), 1.0)
    box = box / max(float(nbox), 1e-6)
    return {"loss": cls + box_weight * box, "cls": cls, "box": box}
