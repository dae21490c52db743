"""Face detectors behind one protocol (fflm.detect.base): builtin (fflm's own network), yunet (OpenCV's
FaceDetectorYN with a user-supplied ONNX file) and none (the whole image is the face)."""

from __future__ import annotations

from pathlib import Path

from fflm.choices import DETECTORS
from fflm.detect.base import Detection, FaceDetector, WholeImage
from fflm.detect.weights import DetectorModelError
from fflm.errors import UsageError


def make_detector(name: str = "builtin", model: str | Path | None = None, tiles: str | int = "auto",
                  max_faces: int | None = None, min_face_size: float = 0.0, device: str | None = None,
                  **kwargs) -> FaceDetector:
    """A detector by name. `model` is the detector's model file (the shipped one for builtin; required for
    yunet). The detectors run on the CPU whatever `device` is: they are small and their input is a ≤640 px
    proxy, so a transfer to a GPU would cost more than it saves."""
    if name == "builtin":
        from fflm.detect.builtin import BuiltinDetector

        return BuiltinDetector(model, tiles=tiles, max_faces=max_faces, min_face_size=min_face_size, **kwargs)
    if name == "yunet":
        from fflm.detect.yunet import YuNetDetector

        return YuNetDetector(model, tiles=tiles, max_faces=max_faces, min_face_size=min_face_size, **kwargs)
    if name == "none":
        return WholeImage()
    raise UsageError(f"unknown detector {name!r} (one of {', '.join(DETECTORS)})")


__all__ = ["Detection", "FaceDetector", "WholeImage", "DetectorModelError", "DETECTORS", "make_detector"]
