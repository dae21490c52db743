"""YuNet's network run by ONNX Runtime, its outputs decoded as OpenCV's `cv2.FaceDetectorYN` decodes them.

The same faces as OpenCV's own runner, in about half the time on a CPU (ONNX Runtime fuses the small
convolutions; docs/detector.md): `YuNetDetector` takes this path wherever onnxruntime is installed. Written here
because OpenCV runs the network and the decoding as one call, with no way to hand the network to another runtime.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from fflm.backends.onnx import Sessions

STRIDES = (8, 16, 32)
DIVISOR = 32  # the network's input is padded (zeros, bottom and right) to multiples of this
OUTPUTS = [f"{kind}_{s}" for kind in ("cls", "obj", "bbox", "kps") for s in STRIDES]


class YuNetOnnx:
    """`__call__(bgr)` is OpenCV's `FaceDetectorYN.detect(bgr)[1]`: faces [K, 15] as (x, y, w, h, five keypoints'
    x and y, score) in the image's pixels, after the score threshold and NMS."""

    def __init__(self, path: Path, threshold: float, nms_iou: float, top_k: int = 5000) -> None:
        self.sessions = Sessions(path)
        session = self.sessions.get()
        names = {o.name for o in session.get_outputs()}
        if not set(OUTPUTS) <= names:
            raise ValueError(f"{path}: not a YuNet model with outputs {', '.join(OUTPUTS)}")
        self.input = session.get_inputs()[0].name
        self.threshold, self.nms_iou, self.top_k = threshold, nms_iou, top_k

    def __call__(self, bgr: np.ndarray) -> np.ndarray:
        h, w = bgr.shape[:2]
        ph, pw = -(-h // DIVISOR) * DIVISOR, -(-w // DIVISOR) * DIVISOR
        blob = np.zeros((1, 3, ph, pw), np.float32)
        blob[0, :, :h, :w] = bgr.transpose(2, 0, 1)
        out = dict(zip(OUTPUTS, self.sessions.get().run(OUTPUTS, {self.input: blob})))
        faces = []
        for s in STRIDES:
            cols = pw // s
            cls, obj = out[f"cls_{s}"][0, :, 0], out[f"obj_{s}"][0, :, 0]
            score = np.sqrt(np.clip(cls, 0, 1) * np.clip(obj, 0, 1))
            idx = np.flatnonzero(score >= self.threshold)
            r, c = (idx // cols).astype(np.float32), (idx % cols).astype(np.float32)
            box, kps = out[f"bbox_{s}"][0, idx], out[f"kps_{s}"][0, idx].reshape(-1, 5, 2)
            cx, cy = (c + box[:, 0]) * s, (r + box[:, 1]) * s
            bw, bh = np.exp(box[:, 2]) * s, np.exp(box[:, 3]) * s
            points = (kps + np.stack([c, r], axis=1)[:, None]) * s
            faces.append(np.column_stack([cx - bw / 2, cy - bh / 2, bw, bh, points.reshape(-1, 10), score[idx]]))
        faces = np.concatenate(faces).astype(np.float32)
        if len(faces) <= 1:
            return faces
        # OpenCV suppresses on the boxes truncated to integers; so does this, to keep the very same faces
        keep = cv2.dnn.NMSBoxes(faces[:, :4].astype(np.int32).tolist(), faces[:, 14].tolist(), self.threshold,
                                self.nms_iou, 1.0, self.top_k)
        return faces[np.asarray(keep, np.int64).reshape(-1)]
