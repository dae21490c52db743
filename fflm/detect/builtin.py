"""`BuiltinDetector`: fflm's own face detector (fflm/assets/fflm-detector.safetensors), no download needed."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from fflm.choices import BUILTIN_THRESHOLD, MIN_FACE
from fflm.detect.base import Detection
from fflm.detect.files import detect_file
from fflm.detect.run import infer
from fflm.detect.tiling import detect_tiled, run_proxy
from fflm.detect.weights import load_detector
from fflm.errors import UsageError
from fflm.geometry import face_size
from fflm.weights import resolve
from fflm.model.serving import for_inference


def parse_tiles(value: str | int | None) -> str | int:
    """`auto`, `off` or a positive tile count along the photo's long side."""
    if value is None:
        return "auto"
    if isinstance(value, int) or str(value).isdigit():
        n = int(value)
        if n < 1:
            raise UsageError("--tiles must be auto, off or a positive number")
        return "off" if n == 1 else n
    v = str(value).lower()
    if v not in ("auto", "off"):
        raise UsageError(f"--tiles must be auto, off or a number, got {value!r}")
    return v


def finish(boxes: np.ndarray, scores: np.ndarray, max_faces: int | None, min_face_size: float,
           landmark_box: Sequence[float] | None = None) -> list[Detection]:
    """Detections best first, without faces under `min_face_size` px (sqrt of the box area), at most `max_faces`;
    with `landmark_box` (see `to_landmark_box`) each carries its estimated landmark box. Rows of 14 carry five
    keypoints after the box."""
    out = []
    for b, s in sorted(zip(boxes, scores), key=lambda bs: -bs[1]):
        if min_face_size and face_size(b) < min_face_size:
            continue
        b = np.asarray(b, dtype=np.float64)
        kps = b[4:14].reshape(5, 2) if len(b) >= 14 else None
        b = b[:4]
        out.append(Detection(b, float(s), None if landmark_box is None else to_landmark_box(b, landmark_box), kps))
    return out[:max_faces] if max_faces else out


def size_limits(min_face_size: float | None) -> tuple[float, float]:
    """(the smallest face a detector keeps, the face size that steers --tiles auto): MIN_FACE and no steering by
    default, so the floor does not multiply the tiles of big photos; a size given does both."""
    if min_face_size is None:
        return MIN_FACE, 0.0
    return float(min_face_size), float(min_face_size)


def to_landmark_box(box: np.ndarray, params: Sequence[float]) -> np.ndarray:
    """The square estimate of the landmarks' tight box from a detector box: params (scale, dx, dy) give its
    side as scale × the box's larger side and its centre moved by (dx, dy) × that side (fit_landmark_box)."""
    scale, dx, dy = params
    side = max(box[2] - box[0], box[3] - box[1])
    c = (box[:2] + box[2:]) / 2 + np.array([dx, dy]) * side
    h = scale * side / 2
    return np.array([c[0] - h, c[1] - h, c[0] + h, c[1] + h])


def fit_landmark_box(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[float]:
    """(scale, dx, dy) for to_landmark_box: medians over (detector box, tight landmark box) pairs."""
    rows = []
    for box, tight in pairs:
        side = max(box[2] - box[0], box[3] - box[1])
        rows.append([max(tight[2] - tight[0], tight[3] - tight[1]) / side,
                     *(((tight[:2] + tight[2:]) - (box[:2] + box[2:])) / 2 / side)])
    return [round(float(v), 4) for v in np.median(np.array(rows), axis=0)]


class BuiltinDetector:
    """Faces in an RGB uint8 photo of any size, best first, boxes in its pixels (they may reach past its edges
    for faces cut by the frame).

    The network runs on a proxy of at most `proxy` px (long side); `tiles` ("auto", "off" or N) adds overlapping
    tiles of a larger proxy for small faces in big photos (see fflm.detect.tiling).
    """

    name = "builtin"

    def __init__(self, model_path: str | Path | None = None, proxy: int | None = None, tiles: str | int = "auto",
                 max_faces: int | None = None, min_face_size: float | None = None, threshold: float | None = None,
                 nms_iou: float = 0.4) -> None:
        self.model, self.metadata = load_detector(model_path)
        self.model_path = resolve(model_path, "detector")
        for_inference(self.model)
        extra = self.model.config.extra
        self.proxy = int(proxy or self.model.config.proxy)
        self.threshold = float(threshold if threshold is not None else extra.get("threshold", BUILTIN_THRESHOLD))
        self.tiles = parse_tiles(tiles)
        self.max_faces, self.nms_iou = max_faces, nms_iou
        self.min_face_size, self.tile_face = size_limits(min_face_size)
        self.landmark_box = extra.get("landmark_box")  # (scale, dx, dy) measured on 300-W at export, if any

    def _run(self, small: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return infer(self.model, small, self.threshold, self.nms_iou)

    def boxes(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """All boxes [K, 4] and scores [K] above the threshold, best first, before the face-count/size filters."""
        return detect_tiled(self._run, image, self.proxy, self.tiles, self.tile_face, self.nms_iou, coarse=True)

    def detect(self, image: np.ndarray) -> list[Detection]:
        boxes, scores = self.boxes(image)
        return finish(boxes, scores, self.max_faces, self.min_face_size, self.landmark_box)

    def detect_file(self, path: str | Path) -> list[Detection]:
        """Like `detect(read_image(path))`, but decoding the photo only at the size the detector needs."""
        boxes, scores = detect_file(self._run, path, self.proxy, self.tiles, self.tile_face, self.nms_iou, coarse=True)
        return finish(boxes, scores, self.max_faces, self.min_face_size, self.landmark_box)

    def glance(self, image: np.ndarray) -> list[Detection]:
        """The faces of one pass at half the proxy side, no tiles: a quarter of the cost, enough to tell which
        way up a photo is (fflm.detect.rotations)."""
        return finish(*run_proxy(self._run, image, self.proxy // 2), self.max_faces, self.min_face_size,
                      self.landmark_box)

