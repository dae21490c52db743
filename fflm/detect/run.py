"""Running the detector network on one image at a given scale: resize, pad, infer, decode, map back.

The detector sees a proxy whose long side is `long_side` (area-averaged down, linear up); its boxes come back
to the caller's pixels through the exact resize map x = (x' + 0.5)/s - 0.5 (pixel centres, as cv2.resize).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from fflm.detect.decode import decode
from fflm.detect.model import FaceNet
from fflm.detect.verifier import candidate_threshold, verify


def resize_long(image: np.ndarray, long_side: int) -> tuple[np.ndarray, float, float]:
    """The image resized so its long side is `long_side`, and the x and y scale factors actually used."""
    h, w = image.shape[:2]
    s = long_side / max(h, w)
    nw, nh = max(1, int(round(w * s))), max(1, int(round(h * s)))
    if (nw, nh) == (w, h):
        return image, 1.0, 1.0
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, (nw, nh), interpolation=interp), nw / w, nh / h


def unscale_boxes(boxes: np.ndarray, sx: float, sy: float, dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
    """Boxes from resized pixels back to source pixels (inverse of x' = (x + 0.5)·s - 0.5), then shifted by
    (dx, dy), e.g. a tile's origin. Rows may carry points after the box (x, y pairs: a detector's keypoints)."""
    out = np.array(boxes, dtype=np.float64, copy=True)
    out = out.reshape(-1, out.shape[1] if out.ndim == 2 else 4)
    out[:, 0::2] = (out[:, 0::2] + 0.5) / sx - 0.5 + dx
    out[:, 1::2] = (out[:, 1::2] + 0.5) / sy - 0.5 + dy
    return out


def prepare(model: FaceNet, image: np.ndarray) -> torch.Tensor:
    """The network's input [1, 3, H', W'] for an RGB uint8 image: normalised, padded (bottom, right) to a
    multiple of 32 so every level's cells line up with its pixels, the padding the mean colour (0 once
    normalised: a neutral input). Built by OpenCV in the image's own HWC layout, which the convolutions take
    as channels-last: torch's broadcasting over 3 interleaved channels took a fifth of the detector's time."""
    h, w = image.shape[:2]
    c = model.config
    x = np.zeros((h + (-h % 32), w + (-w % 32), 3), np.float32)
    cv2.subtract(np.ascontiguousarray(image), c.mean, dst=x[:h, :w], dtype=cv2.CV_32F)
    x[:h, :w] *= 1.0 / c.std
    return torch.from_numpy(x).permute(2, 0, 1)[None]


@torch.inference_mode()
def infer(model: FaceNet, image: np.ndarray, threshold: float = 0.5, iou: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    """Boxes [K, 4] (this image's pixels) and scores [K] for an RGB uint8 image run at its own size, best first.
    With a verifier, the boxes decoded from the maps are re-scored and corrected by it (crops from this image) and
    `threshold` applies to the joint score. Always float32, even inside a caller's own autocast: the threshold
    was chosen in float32."""
    with torch.autocast("cpu", enabled=False):
        outs = [o[0].numpy() for o in model.run_normalised(prepare(model, image))]
        if model.verifier is None:
            return decode(outs, model.config.strides, threshold, iou)
        boxes, scores = decode(outs, model.config.strides, candidate_threshold(threshold, model.verifier.config.alpha), iou)
        return verify(model.verifier, image, boxes, scores, threshold, iou)


def detect_scaled(model: FaceNet, image: np.ndarray, long_side: int, threshold: float = 0.5,
                  iou: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    """Run at a proxy of `long_side` pixels; boxes in the image's own pixels."""
    proxy, sx, sy = resize_long(image, long_side)
    boxes, scores = infer(model, proxy, threshold, iou)
    return unscale_boxes(boxes, sx, sy), scores
