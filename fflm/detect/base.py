"""The face-detector protocol: an RGB uint8 image in, boxes with scores out (original pixels)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from fflm.geometry import image_box


@dataclass
class Detection:
    """One face: box [x0, y0, x1, y1] in image pixels (fflm's convention), score in [0, 1]."""

    box: np.ndarray
    score: float


class FaceDetector(Protocol):
    """Anything with `detect(image) -> list[Detection]`, best first."""

    name: str

    def detect(self, image: np.ndarray) -> list[Detection]: ...


class WholeImage:
    """The whole image is one face: for pre-cropped portraits."""

    name = "none"

    def detect(self, image: np.ndarray) -> list[Detection]:
        h, w = image.shape[:2]
        return [Detection(image_box(w, h), 1.0)]
