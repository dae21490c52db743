"""`YuNetDetector`: OpenCV's `cv2.FaceDetectorYN` with a user-supplied YuNet ONNX file (nothing is downloaded).

It goes through the same proxy and tiling as the built-in detector, so both can be compared like for like.
"""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np

from fflm.choices import YUNET_THRESHOLD
from fflm.detect.base import Detection
from fflm.detect.builtin import finish, parse_tiles
from fflm.detect.files import detect_file
from fflm.detect.tiling import detect_tiled
from fflm.detect.weights import DetectorModelError


def _quiet_opencv() -> None:
    """OpenCV 5 warns that its new DNN graph engine ignores targets, once per model: harmless, so hidden."""
    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except AttributeError:  # builds without the logging bindings
        pass


class YuNetDetector:
    """Faces, best first, from a YuNet ONNX model (e.g. OpenCV Zoo's face_detection_yunet_*.onnx)."""

    name = "yunet"

    def __init__(self, model_path: str | Path | None, proxy: int = 640, tiles: str | int = "auto",
                 max_faces: int | None = None, min_face_size: float = 0.0, threshold: float = YUNET_THRESHOLD,
                 nms_iou: float = 0.3) -> None:
        if model_path is None:
            raise DetectorModelError("--detector yunet needs a YuNet ONNX file: give it with --detector-model")
        path = Path(model_path)
        if not path.is_file():
            raise DetectorModelError(f"YuNet model not found: {path}")
        _quiet_opencv()
        try:
            self.net = cv2.FaceDetectorYN.create(str(path), "", (320, 320), threshold, nms_iou, 5000)
            self.net.setInputSize((32, 32))
            self.net.detect(np.zeros((32, 32, 3), np.uint8))  # some OpenCV builds parse lazily: fail here, not later
        except cv2.error as e:
            raise DetectorModelError(f"{path}: not a usable YuNet ONNX model ({str(e).strip().splitlines()[-1]})") from None
        self.proxy, self.tiles = proxy, parse_tiles(tiles)
        self.max_faces, self.min_face_size, self.nms_iou = max_faces, float(min_face_size or 0.0), nms_iou
        self._lock = threading.Lock()  # the net holds its input size: one image at a time (batch workers share it)

    def _run(self, small: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = small.shape[:2]
        bgr = cv2.cvtColor(small, cv2.COLOR_RGB2BGR)
        with self._lock:
            self.net.setInputSize((w, h))
            _, faces = self.net.detect(bgr)
        if faces is None or len(faces) == 0:
            return np.zeros((0, 4)), np.zeros(0)
        f = np.asarray(faces, np.float64)
        # YuNet's (x, y, w, h) is in OpenCV pixel indices with the box's far edge at x + w: shift to edges
        boxes = np.stack([f[:, 0] - 0.5, f[:, 1] - 0.5, f[:, 0] + f[:, 2] - 0.5, f[:, 1] + f[:, 3] - 0.5], axis=1)
        return boxes, f[:, -1]

    def boxes(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return detect_tiled(self._run, image, self.proxy, self.tiles, self.min_face_size, self.nms_iou)

    def detect(self, image: np.ndarray) -> list[Detection]:
        boxes, scores = self.boxes(image)
        return finish(boxes, scores, self.max_faces, self.min_face_size)

    def detect_file(self, path: str | Path) -> list[Detection]:
        """Like `detect(read_image(path))`, decoding the photo only at the size the detector needs."""
        boxes, scores = detect_file(self._run, path, self.proxy, self.tiles, self.min_face_size, self.nms_iou)
        return finish(boxes, scores, self.max_faces, self.min_face_size)
