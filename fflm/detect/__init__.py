"""Face detectors behind one protocol (fflm.detect.base): yunet (the default: the shipped YuNet ONNX file or
another, in ONNX Runtime or OpenCV's FaceDetectorYN), builtin (fflm's own network) and none (the whole image is the face)."""

from __future__ import annotations

from pathlib import Path

from fflm.choices import DETECTORS
from fflm.detect.base import Detection, FaceDetector, WholeImage
from fflm.detect.weights import DetectorModelError
from fflm.errors import UsageError


def make_detector(name: str = "yunet", model: str | Path | None = None, tiles: str | int = "auto",
                  max_faces: int | None = None, min_face_size: float | None = None, device: str | None = None,
                  rotations: str = "auto", **kwargs) -> FaceDetector:
    """A detector by name. `model` is the detector's model file (default: the shipped one). `rotations` (auto, all,
    none): when to look at the photo turned by quarter turns too (fflm.detect.rotations). The detectors run on the
    CPU whatever `device` is: they are small and their input is a ≤640 px proxy, so a transfer to a GPU would cost
    more than it saves."""
    from fflm.detect.rotations import ROTATIONS, RotatingDetector

    if rotations not in ROTATIONS:
        raise UsageError(f"--rotations must be one of {', '.join(ROTATIONS)}, got {rotations!r}")
    if name in ("builtin", "yunet"):
        if name == "builtin":
            from fflm.detect.builtin import BuiltinDetector as Detector
        else:
            from fflm.detect.yunet import YuNetDetector as Detector
        det = Detector(model, tiles=tiles, max_faces=max_faces, min_face_size=min_face_size, **kwargs)
        return det if rotations == "none" else RotatingDetector(det, rotations)
    if name == "none":
        return WholeImage()
    raise UsageError(f"unknown detector {name!r} (one of {', '.join(DETECTORS)})")


__all__ = ["Detection", "FaceDetector", "WholeImage", "DetectorModelError", "DETECTORS", "make_detector"]
