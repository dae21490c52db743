"""Running the detector network on one image at its own size: pad, infer, decode; and mapping boxes from a
resized image back to its source through the exact resize map x = (x' + 0.5)/s - 0.5 (pixel centres, as
cv2.resize)."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from fflm.detect.decode import decode
from fflm.detect.model import FaceNet
from fflm.detect.verifier import candidate_threshold, verify


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
