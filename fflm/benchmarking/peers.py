"""Peer landmark tools for side-by-side benchmarks (optional: used only when installed).

dlib: `pip install dlib-bin face-recognition-models` gives dlib's HOG face detector and its 68-point
shape predictor (trained on iBUG 300-W). Nothing here is imported by the landmark pipeline itself.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np


class DlibLandmarker:
    """dlib's HOG detector (upsampling `upsample` times) and 68-point shape predictor on RGB uint8 arrays.

    `model`: a shape predictor file (e.g. one retrained by benchmarks/train_dlib_300w.py); default dlib's own.
    Coordinates are returned as dlib gives them: integer pixel indices, i.e. 0-based pixel centres like fflm's.
    """

    def __init__(self, upsample: int = 1, model: str | Path | None = None) -> None:
        import dlib

        self.dlib = dlib
        self.version = dlib.__version__
        self.upsample = upsample
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(model or dlib_model_path()))

    def detect(self, image: np.ndarray) -> np.ndarray:
        """Face boxes [K, 4] as [x0, y0, x1, y1]."""
        return hog_boxes(self.detector, image, self.upsample)

    def landmarks(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """68×2 points for one face box."""
        rect = self.dlib.rectangle(*(int(round(v)) for v in box))
        shape = self.predictor(image, rect)
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


def hog_boxes(detector, image: np.ndarray, upsample: int = 1) -> np.ndarray:
    """dlib's frontal face `detector` (`dlib.get_frontal_face_detector()`) on an RGB uint8 image: boxes [K, 4]."""
    dets = detector(image, upsample)
    return np.array([[d.left(), d.top(), d.right(), d.bottom()] for d in dets], dtype=np.float64).reshape(-1, 4)


def dlib_model_path() -> Path:
    """The 68-point model file of `face-recognition-models`, found without importing the package (its
    __init__ needs pkg_resources, which recent setuptools no longer ships)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("face-recognition-models is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / "shape_predictor_68_face_landmarks.dat"
    if not path.exists():
        raise ImportError(f"face-recognition-models has no {path.name}")
    return path


def dlib_available() -> bool:
    """True when dlib and the 68-point model file can be loaded."""
    try:
        import dlib  # noqa: F401

        dlib_model_path()
    except ImportError:
        return False
    return True
