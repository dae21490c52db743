"""The face-detector protocol: an RGB uint8 image in, boxes with scores out (original pixels)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from fflm.geometry import image_box


@dataclass
class Detection:
    """One face: box [x0, y0, x1, y1] in image pixels (fflm's convention), score in [0, 1].

    `landmark_box`, when the detector knows how its boxes relate to faces' landmarks, is its estimate of
    the tight box of the 68 iBUG landmarks (brows to chin, jaw to jaw): the landmark model frames the
    face from it, so the first global pass already sees the face at the scale it was trained on.
    `keypoints` [5, 2], when the detector gives them (YuNet): the subject's right eye, left eye, nose tip, right
    and left mouth corners, in image pixels (0-based pixel centres). `roll`: the face's roll in degrees,
    clockwise on screen (from the keypoints, or the quarter turn of the photo it was found in; 0: upright).
    """

    box: np.ndarray
    score: float
    landmark_box: np.ndarray | None = None
    keypoints: np.ndarray | None = None
    roll: float = 0.0


class FaceDetector(Protocol):
    """Anything with `detect(image) -> list[Detection]`, best first. It may also have `glance(image)`, a cheaper
    pass by which `--rotations auto` compares orientations (fflm.detect.rotations)."""

    name: str

    def detect(self, image: np.ndarray) -> list[Detection]: ...


class WholeImage:
    """The whole image is one face: for pre-cropped portraits."""

    name = "none"

    def detect(self, image: np.ndarray) -> list[Detection]:
        h, w = image.shape[:2]
        return [Detection(image_box(w, h), 1.0)]
