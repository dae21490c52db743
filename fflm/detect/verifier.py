"""The detector's second stage: a small crop classifier that re-scores the first stage's candidate boxes.

The centre-and-size network scores a face from one cell of its maps; many of its misses at a useful precision
are faces it did find, at a lower score than some non-faces, or with a box that misses IoU 0.5 (a cascade's
classic case, as in MTCNN's R-Net). Each candidate is cut from the image the network saw as a square crop of
`grow` × its larger side, resized to `crop` px; the classifier gives a face score and corrections of the box
(centre shift in box widths and heights, log scale of width and height). The final score is
s1^alpha · s2^(1 - alpha) of the two stages' scores.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch
from torch import nn

from fflm.detect.decode import nms
from fflm.model.layers import conv_bn_relu


@dataclass(frozen=True)
class VerifierConfig:
    """The crop classifier's shape and how its score joins the first stage's (stored in the detector file)."""

    crop: int = 40  # crop side in pixels
    grow: float = 1.3  # crop window side / the box's larger side
    widths: tuple[int, ...] = (16, 32, 32, 64, 64, 96)  # channels of the 3×3 convolutions; strides 1, 2, 1, 2, 1, 2
    alpha: float = 0.7  # weight of the first stage's score in the geometric mean

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "VerifierConfig":
        return cls(**{**d, "widths": tuple(d.get("widths", cls.widths))})


class FaceVerifier(nn.Module):
    """Crops [K, 3, S, S] (RGB, 0..255) → [K, 5]: face logit and box deltas (see `apply_deltas`)."""

    def __init__(self, config: VerifierConfig, mean: tuple[float, float, float], std: float) -> None:
        super().__init__()
        self.config = config
        layers, cin = [], 3
        for i, w in enumerate(config.widths):
            layers.append(conv_bn_relu(cin, w, 3, 2 if i % 2 else 1))
            cin = w
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(cin, 5)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.std = float(std)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        x = self.body((crops - self.mean) / self.std)
        return self.out(x.mean(dim=(2, 3)))


def box_deltas(boxes: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Deltas [K, 4] that move each box onto its target: centre shift over width / height, log size ratios."""
    b, t = np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(targets, np.float64).reshape(-1, 4)
    bw, bh = np.maximum(b[:, 2] - b[:, 0], 1e-6), np.maximum(b[:, 3] - b[:, 1], 1e-6)
    tw, th = np.maximum(t[:, 2] - t[:, 0], 1e-6), np.maximum(t[:, 3] - t[:, 1], 1e-6)
    return np.stack([((t[:, 0] + t[:, 2]) - (b[:, 0] + b[:, 2])) / 2 / bw, ((t[:, 1] + t[:, 3]) - (b[:, 1] + b[:, 3])) / 2 / bh,
                     np.log(tw / bw), np.log(th / bh)], axis=1)


def apply_deltas(boxes: np.ndarray, deltas: np.ndarray) -> np.ndarray:
    """The inverse of `box_deltas`: boxes [K, 4] moved and resized by deltas [K, 4] (log scales clipped to ±1)."""
    b, d = np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(deltas, np.float64).reshape(-1, 4)
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    cx, cy = (b[:, 0] + b[:, 2]) / 2 + d[:, 0] * w, (b[:, 1] + b[:, 3]) / 2 + d[:, 1] * h
    w, h = w * np.exp(np.clip(d[:, 2], -1, 1)), h * np.exp(np.clip(d[:, 3], -1, 1))
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def face_crops(image: np.ndarray, boxes: np.ndarray, config: VerifierConfig) -> np.ndarray:
    """Square crops [K, S, S, 3] (uint8) centred on each box, of side grow × its larger side (whole pixels),
    resized by OpenCV (area-averaged when shrinking); parts outside the image repeat its edge pixels."""
    s, (h, w) = config.crop, image.shape[:2]
    out = np.empty((len(boxes), s, s, 3), np.uint8)
    for i, b in enumerate(np.asarray(boxes, np.float64).reshape(-1, 4)):
        side = max(1, int(round(max(b[2] - b[0], b[3] - b[1]) * config.grow)))
        # the window keeps at least one pixel of the image (a box wholly outside gets its nearest edge)
        x0 = min(max(int(round((b[0] + b[2]) / 2 - (side - 1) / 2)), 1 - side), w - 1)
        y0 = min(max(int(round((b[1] + b[3]) / 2 - (side - 1) / 2)), 1 - side), h - 1)
        cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
        window = image[cy0:cy1, cx0:cx1]
        if (cx1 - cx0, cy1 - cy0) != (side, side):  # past an edge: pad (a copy only then)
            window = cv2.copyMakeBorder(window, cy0 - y0, y0 + side - cy1, cx0 - x0, x0 + side - cx1, cv2.BORDER_REPLICATE)
        out[i] = cv2.resize(window, (s, s), interpolation=cv2.INTER_AREA if side > s else cv2.INTER_LINEAR)
    return out


def crops_tensor(crops: np.ndarray) -> torch.Tensor:
    """uint8 crops [K, S, S, 3] as the network's float input [K, 3, S, S] (channels-last memory)."""
    return torch.from_numpy(crops).permute(0, 3, 1, 2).float()


def joint_score(first: np.ndarray, second: np.ndarray, alpha: float) -> np.ndarray:
    """s1^alpha · s2^(1 - alpha): a weighted geometric mean of the two stages' scores."""
    return np.power(first, alpha) * np.power(second, 1.0 - alpha)


def candidate_threshold(threshold: float, alpha: float) -> float:
    """The lowest first-stage score that can still reach `threshold` jointly (the second stage scores ≤ 1)."""
    return float(threshold ** (1.0 / alpha)) if alpha > 0 else 0.0


@torch.inference_mode()
def verify(verifier: FaceVerifier, image: np.ndarray, boxes: np.ndarray, scores: np.ndarray,
           threshold: float, iou: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    """Candidates re-scored jointly and their boxes corrected; those under `threshold` dropped, the rest through
    non-maximum suppression again (corrected boxes may now overlap), best first."""
    if len(boxes) == 0:
        return boxes, scores
    out = verifier(crops_tensor(face_crops(image, boxes, verifier.config))).double().numpy()
    joint = joint_score(scores, 1 / (1 + np.exp(-out[:, 0])), verifier.config.alpha)
    keep = np.nonzero(joint >= threshold)[0]
    boxes, joint = apply_deltas(boxes[keep], out[keep, 1:5]), joint[keep]
    keep = nms(boxes, joint, iou)
    return boxes[keep], joint[keep]
