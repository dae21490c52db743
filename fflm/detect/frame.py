"""The landmark frame from a detector's five keypoints: where the 68 landmarks' tight box lies.

The keypoints (eyes, nose tip, mouth corners) fix the face's roll and scale better than a box does. In the
face's own upright frame (the eye line horizontal, origin at the keypoints' mean, unit = their RMS radius),
a least-squares map from the ten keypoint coordinates (and a constant) gives the landmarks' tight box:
its centre and its larger side. `python -m fflm.train.fit_frame` fits it on 300-W train faces
(fflm/assets/yunet_frame.json).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

FRAME_ASSET = "yunet_frame.json"


def roll(kps: np.ndarray) -> float:
    """The face's roll in degrees: the angle of the line from the subject's right eye to the left eye (0: upright,
    positive: clockwise on screen, image y pointing down)."""
    d = np.asarray(kps, np.float64)[1] - np.asarray(kps, np.float64)[0]
    return math.degrees(math.atan2(d[1], d[0]))


def rotation(degrees: float) -> np.ndarray:
    """The 2×2 matrix turning vectors by `degrees` (clockwise on screen)."""
    a = math.radians(degrees)
    return np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])


def features(kps: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """(features [11], origin [2], unit, roll in degrees) of five keypoints in their upright frame."""
    k = np.asarray(kps, np.float64).reshape(5, 2)
    angle = roll(k)
    origin = k.mean(0)
    upright = (k - origin) @ rotation(-angle).T
    unit = max(float(np.sqrt((upright ** 2).sum(1).mean())), 1e-6)
    return np.append((upright / unit).reshape(-1), 1.0), origin, unit, angle


@dataclass
class FaceFrame:
    """`coef` [11, 3]: features -> (centre x, centre y, side) of the landmarks' tight box, in keypoint units."""

    coef: np.ndarray

    @classmethod
    def load(cls) -> "FaceFrame":
        from fflm.weights import asset

        text = asset(FRAME_ASSET).read_text()
        return cls(np.array(json.loads(text)["coef"], np.float64))

    @classmethod
    def fit(cls, kps: np.ndarray, points: np.ndarray) -> "FaceFrame":
        """Least squares over faces: keypoints [M, 5, 2], their landmarks [M, N, 2]."""
        rows, targets = [], []
        for k, p in zip(kps, points):
            f, origin, unit, angle = features(k)
            up = (np.asarray(p, np.float64) - origin) @ rotation(-angle).T / unit
            lo, hi = up.min(0), up.max(0)
            rows.append(f)
            targets.append([*(lo + hi) / 2, (hi - lo).max()])
        coef, *_ = np.linalg.lstsq(np.array(rows), np.array(targets), rcond=None)
        return cls(coef)

    def upright(self, kps: np.ndarray) -> tuple[np.ndarray, float, float]:
        """(centre [2] in image pixels, side in pixels, roll in degrees) of the upright landmark box."""
        f, origin, unit, angle = features(kps)
        cx, cy, side = f @ self.coef
        return origin + rotation(angle) @ np.array([cx, cy]) * unit, float(side * unit), angle

    def landmark_box(self, kps: np.ndarray) -> np.ndarray:
        """The axis-aligned square estimate of the landmarks' tight box, for a face seen without rotation."""
        c, side, _ = self.upright(kps)
        return np.array([c[0] - side / 2, c[1] - side / 2, c[0] + side / 2, c[1] + side / 2])
