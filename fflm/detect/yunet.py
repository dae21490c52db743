"""`YuNetDetector`: OpenCV's `cv2.FaceDetectorYN` with YuNet (the shipped fflm/assets/yunet_2026may.onnx, MIT,
or another YuNet ONNX file); the default detector.

It goes through the same proxy and tiling as the built-in detector, so both can be compared like for like.
Each face carries YuNet's five keypoints and, from them, the landmarks' box (fflm.detect.frame).
"""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np

from fflm.choices import YUNET_THRESHOLD
from fflm.detect.base import Detection
from fflm.detect.builtin import finish, parse_tiles, size_limits
from fflm.detect.files import detect_file
from fflm.detect.frame import FaceFrame, roll
from fflm.detect.tiling import detect_tiled
from fflm.detect.weights import DetectorModelError
from fflm.weights import asset


def _quiet_opencv() -> None:
    """OpenCV 5 warns that its new DNN graph engine ignores targets, once per model: harmless, so hidden."""
    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except AttributeError:  # builds without the logging bindings
        pass


YUNET_ASSET = "yunet_2026may.onnx"


def default_model() -> Path:
    """The shipped YuNet ONNX file."""
    return asset(YUNET_ASSET)


class YuNetDetector:
    """Faces, best first, from a YuNet ONNX model (the shipped one, or e.g. OpenCV Zoo's face_detection_yunet_*.onnx)."""

    name = "yunet"

    def __init__(self, model_path: str | Path | None = None, proxy: int = 640, tiles: str | int = "auto",
                 max_faces: int | None = None, min_face_size: float | None = None, threshold: float = YUNET_THRESHOLD,
                 nms_iou: float = 0.3) -> None:
        path = Path(model_path) if model_path is not None else default_model()
        if not path.is_file():
            raise DetectorModelError(f"YuNet model not found: {path}")
        _quiet_opencv()
        try:
            self.net = cv2.FaceDetectorYN.create(str(path), "", (320, 320), threshold, nms_iou, 5000)
            self.net.setInputSize((32, 32))
            self.net.detect(np.zeros((32, 32, 3), np.uint8))  # some OpenCV builds parse lazily: fail here, not later
        except cv2.error as e:
            raise DetectorModelError(f"{path}: not a usable YuNet ONNX model ({str(e).strip().splitlines()[-1]})") from None
        self.proxy, self.tiles, self.threshold = proxy, parse_tiles(tiles), float(threshold)
        self.max_faces, self.nms_iou = max_faces, nms_iou
        self.min_face_size, self.tile_face = size_limits(min_face_size)
        self._lock = threading.Lock()  # the net holds its input size: one image at a time (batch workers share it)
        self.frame = FaceFrame.load()

    def _run(self, small: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = small.shape[:2]
        bgr = cv2.cvtColor(small, cv2.COLOR_RGB2BGR)
        with self._lock:
            self.net.setInputSize((w, h))
            _, faces = self.net.detect(bgr)
        if faces is None or len(faces) == 0:
            return np.zeros((0, 14)), np.zeros(0)
        f = np.asarray(faces, np.float64)
        # YuNet's (x, y, w, h) is in OpenCV pixel indices with the box's far edge at x + w: shift to edges;
        # its keypoints are pixel positions already (0-based centres)
        boxes = np.stack([f[:, 0] - 0.5, f[:, 1] - 0.5, f[:, 0] + f[:, 2] - 0.5, f[:, 1] + f[:, 3] - 0.5], axis=1)
        return np.concatenate([boxes, f[:, 4:14]], axis=1), f[:, -1]

    def boxes(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return detect_tiled(self._run, image, self.proxy, self.tiles, self.tile_face, self.nms_iou)

    def _finish(self, boxes: np.ndarray, scores: np.ndarray) -> list[Detection]:
        dets = finish(boxes, scores, self.max_faces, self.min_face_size)
        for d in dets:
            d.landmark_box = self.frame.landmark_box(d.keypoints)
            d.roll = roll(d.keypoints)
        return dets

    def detect(self, image: np.ndarray) -> list[Detection]:
        boxes, scores = self.boxes(image)
        return self._finish(boxes, scores)

    def detect_file(self, path: str | Path) -> list[Detection]:
        """Like `detect(read_image(path))`, decoding the photo only at the size the detector needs."""
        boxes, scores = detect_file(self._run, path, self.proxy, self.tiles, self.tile_face, self.nms_iou)
        return self._finish(boxes, scores)
