"""`YuNetDetector`: YuNet (the shipped fflm/assets/yunet_2026may.onnx, MIT, or another YuNet ONNX file), run by
ONNX Runtime where it is installed (fflm.detect.yunet_ort) or by OpenCV's `cv2.FaceDetectorYN`; the default
detector.

It goes through the same proxy and tiling as the built-in detector, so both can be compared like for like.
Each face carries YuNet's five keypoints and, from them, the landmarks' box (fflm.detect.frame).
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import cv2
import numpy as np

from fflm.choices import YUNET_THRESHOLD
from fflm.detect.base import Detection
from fflm.detect.builtin import finish, parse_tiles, size_limits
from fflm.detect.files import detect_file
from fflm.detect.frame import FaceFrame, roll
from fflm.detect.tiling import detect_tiled, run_proxy
from fflm.detect.weights import DetectorModelError
from fflm.errors import UsageError
from fflm.weights import asset


def _quiet_opencv() -> None:
    """OpenCV 5 warns that its new DNN graph engine ignores targets, once per model: harmless, so hidden."""
    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except AttributeError:  # builds without the logging bindings
        pass


YUNET_ASSET = "yunet_2026may.onnx"
YUNET_RUNTIMES = ("auto", "opencv", "onnxruntime")


def default_model() -> Path:
    """The shipped YuNet ONNX file."""
    return asset(YUNET_ASSET)


class YuNetDetector:
    """Faces, best first, from a YuNet ONNX model (the shipped one, or e.g. OpenCV Zoo's face_detection_yunet_*.onnx).

    `runtime`: `opencv` (cv2.FaceDetectorYN), `onnxruntime` (fflm.detect.yunet_ort: the same faces, faster; the
    fflm[onnx] extra) or `auto`, ONNX Runtime where it is installed and the model has YuNet's outputs, else OpenCV."""

    name = "yunet"

    def __init__(self, model_path: str | Path | None = None, proxy: int = 640, tiles: str | int = "auto",
                 max_faces: int | None = None, min_face_size: float | None = None, threshold: float = YUNET_THRESHOLD,
                 nms_iou: float = 0.3, runtime: str = "auto") -> None:
        path = Path(model_path) if model_path is not None else default_model()
        if not path.is_file():
            raise DetectorModelError(f"YuNet model not found: {path}")
        _quiet_opencv()
        self.model_path, self.proxy, self.tiles, self.threshold = path, proxy, parse_tiles(tiles), float(threshold)
        self.max_faces, self.nms_iou = max_faces, nms_iou
        self.min_face_size, self.tile_face = size_limits(min_face_size)
        self.onnx = self._onnx(runtime)
        self.runtime = "opencv" if self.onnx is None else "onnxruntime"
        # an OpenCV net holds its input size, so threads sharing one would take turns: each thread (the batch
        # runner's workers) gets a net of its own, made on its first image
        self._nets = threading.local()
        if self.onnx is None:
            self._net()  # made here too, so that a file that is no usable model fails now, not on the first image
        self.frame = FaceFrame.load()

    def _onnx(self, runtime: str):  # noqa: ANN202 (a YuNetOnnx or None)
        """YuNet in ONNX Runtime, or None for OpenCV's runner."""
        if runtime not in YUNET_RUNTIMES:
            raise UsageError(f"unknown YuNet runtime {runtime!r} ({', '.join(YUNET_RUNTIMES)})")
        if runtime == "opencv" or (runtime == "auto" and importlib.util.find_spec("onnxruntime") is None):
            return None
        from fflm.detect.yunet_ort import YuNetOnnx

        try:
            return YuNetOnnx(self.model_path, self.threshold, self.nms_iou)
        except Exception as e:  # noqa: BLE001 (onnxruntime raises its own types for unreadable files)
            if runtime == "auto":
                return None  # OpenCV's runner reads more YuNet versions; it says itself if it cannot
            raise DetectorModelError(f"{self.model_path}: not a YuNet model ONNX Runtime can run "
                                     f"({str(e).strip().splitlines()[-1]})") from None

    def _net(self) -> "cv2.FaceDetectorYN":
        """This thread's OpenCV net."""
        net = getattr(self._nets, "net", None)
        if net is None:
            try:
                net = cv2.FaceDetectorYN.create(str(self.model_path), "", (320, 320), self.threshold, self.nms_iou, 5000)
                net.setInputSize((32, 32))
                net.detect(np.zeros((32, 32, 3), np.uint8))  # some OpenCV builds parse lazily: fail here, not later
            except cv2.error as e:
                raise DetectorModelError(f"{self.model_path}: not a usable YuNet ONNX model "
                                         f"({str(e).strip().splitlines()[-1]})") from None
            self._nets.net = net
        return net

    def _run(self, small: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = small.shape[:2]
        bgr = cv2.cvtColor(small, cv2.COLOR_RGB2BGR)
        if self.onnx is not None:
            faces = self.onnx(bgr)
        else:
            net = self._net()
            net.setInputSize((w, h))
            _, faces = net.detect(bgr)
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

    def glance(self, image: np.ndarray) -> list[Detection]:
        """The faces of one pass at half the proxy side, no tiles: a quarter of the cost, enough to tell which
        way up a photo is (fflm.detect.rotations)."""
        return self._finish(*run_proxy(self._run, image, self.proxy // 2))
