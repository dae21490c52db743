"""Rolled faces framed upright: a patch of the photo turned about the face so that its eyes are level, the
landmarks found in it, and the points turned back.

A face whose roll (fflm.detect.base.Detection.roll: from YuNet's keypoints, or the quarter turn of the
photo it was found in) exceeds `MIN_ROLL` degrees is cut out as a square patch `PATCH` times its landmark box's side
(room for the re-centring passes and the regional crops), turned by -roll about the box's centre with one affine
warp (bilinear; area-averaged first when the patch would exceed `MAX_PATCH` px), and the landmark stage runs on
the patch as if it were the photo. Points come back through the inverse warp; the reported box stays the
detector's. A detector's keypoints understate strong rolls (YuNet's put a face rolled by 45° at about 15°), so the
roll of the landmarks themselves (their normalisation points: the outer eye corners) decides once more: a face
whose points are rolled by MIN_ROLL or more, and by `RETURN` degrees more than its frame was turned, runs again,
framed upright from its points, when its quality (fflm.quality) says the points are on a face.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from fflm.detect.base import Detection
from fflm.geometry import affine_points

MIN_ROLL = 20.0  # degrees: below this the landmark networks take the face as it is
PATCH = 3.0
MAX_PATCH = 1024
RETURN = 10.0  # degrees between the points' roll and the frame's that send a face round once more
TRUSTED_QUALITY = 0.5  # points of this quality (fflm.quality) or more are on a face: their roll is trusted


def used_roll(d: Detection) -> float:
    """The roll a detection's frame is turned by (0 when it is framed as it is)."""
    return d.roll if abs(d.roll) >= MIN_ROLL else 0.0


def needs_turn(points_roll: float, frame_roll: float) -> bool:
    """Whether the points' roll asks for an upright frame other than the one they were found in."""
    diff = (points_roll - frame_roll + 180) % 360 - 180
    return abs(points_roll) >= MIN_ROLL and abs(diff) > RETURN


def points_detection(points: np.ndarray, norm_points: tuple[int, int], d: Detection) -> Detection:
    """`d` with its landmark box and roll from found points: the roll of the line between the normalisation points,
    and the square around the points' tight box in the upright frame (centre and larger side)."""
    p = np.asarray(points, np.float64)
    v = p[norm_points[1]] - p[norm_points[0]]
    angle = math.degrees(math.atan2(v[1], v[0]))
    a = math.radians(angle)
    back = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])  # turns by -angle
    up = p @ back.T
    lo, hi = up.min(0), up.max(0)
    centre = back.T @ ((lo + hi) / 2)
    half = (hi - lo).max() / 2
    return Detection(d.box, d.score, np.concatenate([centre - half, centre + half]), d.keypoints, angle)


def upright_patch(image: np.ndarray, d: Detection) -> tuple[np.ndarray, Detection, np.ndarray] | None:
    """(patch, the detection in the patch, the 2×3 map from patch pixels to image pixels), or None for a face whose
    roll is under MIN_ROLL (its own frame is used)."""
    if abs(d.roll) < MIN_ROLL:
        return None
    box = d.landmark_box if d.landmark_box is not None else d.box
    centre = (box[:2] + box[2:]) / 2
    side = float(max(box[2] - box[0], box[3] - box[1]))
    size = int(min(MAX_PATCH, math.ceil(PATCH * side)))
    scale = size / (PATCH * side)
    a = math.radians(-d.roll)  # turn the face back: its roll is clockwise, so counter-clockwise by as much
    rot = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    shift = (size - 1) / 2 - rot @ centre  # the face's centre onto the patch's centre (pixel centres)
    forward = np.concatenate([rot, shift[:, None]], axis=1)
    src = image
    if scale < 0.5:  # shrink by an area filter first, so the warp does not alias
        f = 1 / (2 * scale)
        src = cv2.resize(image, None, fx=1 / f, fy=1 / f, interpolation=cv2.INTER_AREA)
        sx, sy = src.shape[1] / image.shape[1], src.shape[0] / image.shape[0]
        forward = forward @ np.array([[1 / sx, 0, 0.5 / sx - 0.5], [0, 1 / sy, 0.5 / sy - 0.5], [0, 0, 1]])
    patch = cv2.warpAffine(np.ascontiguousarray(src), forward, (size, size), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
    half = side * scale / 2
    c = (size - 1) / 2
    square = np.array([c - half, c - half, c + half, c + half])
    inverse = cv2.invertAffineTransform(np.concatenate([rot, shift[:, None]], axis=1))
    return patch, Detection(square, d.score, square), inverse


def restore(points: np.ndarray, inverse: np.ndarray) -> np.ndarray:
    """Points [..., N, 2] of a patch in the photo's pixels."""
    return affine_points(points, inverse)
