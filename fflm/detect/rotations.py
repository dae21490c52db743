"""Photos turned by 90°, 180° or 270° without an EXIF tag (scanned prints, stripped phone photos): `--rotations`.

`auto` (the default) runs the detector on the photo as it is and, only when that finds no face scoring `SURE` or
more, on the photo turned by each quarter turn and by ±45° (faces rolled far: YuNet's scores fall with the roll),
keeping the orientation whose best face scores highest (a detector also fires on an upside-down face, at a lower
score, taking the mouth for the eyes); `all` always runs them all and merges them (photos with faces at several
orientations); `none` runs only the upright pass. Faces found in a turned photo come
back in the photo's own pixels, with `roll` the turn (or, with keypoints, the roll they give), so the landmark stage
frames them upright (fflm.upright).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

from fflm.choices import ROTATIONS
from fflm.detect.base import Detection
from fflm.detect.decode import nms
from fflm.detect.frame import roll

SURE = 0.9  # auto: a face scoring this in the photo as it is means the photo is upright
TILTS = (45.0, -45.0)  # degrees (clockwise) of the photo's tilted passes, beside the quarter turns


def unturn_points(points: np.ndarray, k: int, width: int, height: int) -> np.ndarray:
    """Points [..., 2] of `np.rot90(image, k)` (pixel centres) in the pixels of `image` (width × height)."""
    p = np.array(points, np.float64, copy=True)
    for j in reversed(range(k % 4)):
        # np.rot90(b) holds b[y, x] at (y, W_b - 1 - x): undo one quarter turn of b, the image turned j times
        w = width if j % 2 == 0 else height
        p = np.stack([w - 1 - p[..., 1], p[..., 0]], axis=-1)
    return p


def unturn(d: Detection, k: int, width: int, height: int) -> Detection:
    """A detection in `np.rot90(image, k)` as one in `image`: box and landmark box as the boxes of their turned
    corners, keypoints turned back, roll from them (else the turn's 90·k degrees, clockwise)."""
    def box(b: np.ndarray | None) -> np.ndarray | None:
        if b is None:
            return None
        # box edges are the pixel centres of an image one pixel larger, shifted by half a pixel
        corners = unturn_points(np.array([[b[0], b[1]], [b[2], b[3]]]) + 0.5, k, width + 1, height + 1) - 0.5
        return np.concatenate([corners.min(0), corners.max(0)])

    kps = None if d.keypoints is None else unturn_points(d.keypoints, k, width, height)
    angle = roll(kps) if kps is not None else (90.0 * k + d.roll + 180) % 360 - 180
    return Detection(box(d.box), d.score, box(d.landmark_box), kps, angle)


def best(dets: list[Detection]) -> float:
    """The highest score among detections (0 for none)."""
    return max((d.score for d in dets), default=0.0)


def _same(a: list[Detection], b: list[Detection]) -> bool:
    """Whether two passes found the same faces (the same boxes, in order): the orientation a result came from."""
    return len(a) == len(b) and all(np.allclose(x.box, y.box, atol=1e-3) for x, y in zip(a, b))


def tilt(image: np.ndarray, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """The photo turned by `degrees` clockwise on a canvas that holds all of it (borders replicated), and the 2×3 map
    from the canvas' pixels back to the photo's."""
    h, w = image.shape[:2]
    a = math.radians(degrees)
    cw = int(math.ceil(w * abs(math.cos(a)) + h * abs(math.sin(a))))
    ch = int(math.ceil(w * abs(math.sin(a)) + h * abs(math.cos(a))))
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), -degrees, 1.0)  # OpenCV's angle is counter-clockwise
    m[:, 2] += [(cw - 1) / 2 - (w - 1) / 2, (ch - 1) / 2 - (h - 1) / 2]
    out = cv2.warpAffine(image, m, (cw, ch), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out, cv2.invertAffineTransform(m)


def untilt(d: Detection, back: np.ndarray, degrees: float, frame=None) -> Detection:
    """A detection of a tilted canvas in the photo's pixels: the box of its box's corners, keypoints mapped back and
    the roll from them (else the tilt), the landmark box from `frame` (fflm.detect.frame) when there are keypoints."""
    x0, y0, x1, y1 = d.box
    corners = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]]) @ back[:, :2].T + back[:, 2]
    box = np.concatenate([corners.min(0), corners.max(0)])
    if d.keypoints is None:
        return Detection(box, d.score, None, None, (degrees + d.roll + 180) % 360 - 180)
    kps = d.keypoints @ back[:, :2].T + back[:, 2]
    return Detection(box, d.score, None if frame is None else frame.landmark_box(kps), kps, roll(kps))


class RotatingDetector:
    """A detector that also looks at the photo turned by quarter turns (`mode`: auto, all or none)."""

    def __init__(self, detector, mode: str = "auto", iou: float = 0.3) -> None:
        self.inner, self.mode, self.iou = detector, mode, iou
        self.name = detector.name

    def __getattr__(self, name: str):  # the wrapped detector's own settings (threshold, tiles, ...)
        return getattr(self.inner, name)

    def detect(self, image: np.ndarray) -> list[Detection]:
        found = self.inner.detect(image)
        if self.mode == "none" or (self.mode == "auto" and best(found) >= SURE):
            return found
        if self.mode == "auto":
            return self.orient(image, found)
        every = found + [d for ds in self.turned(image) for d in ds]
        if not every:
            return []
        keep = nms(np.stack([d.box for d in every]), np.array([d.score for d in every]), self.iou)
        return [every[i] for i in keep]

    def orient(self, image: np.ndarray, found: list[Detection]) -> list[Detection]:
        """auto, when no face of the photo as it is (`found`) is sure: the faces of the orientation whose best face
        scores highest, the photo as it is on a tie. With a detector that has a `glance` (one pass at half the
        proxy side, a quarter of the cost), the orientations are compared by their glances and only the winner
        gets a full pass; when no turned glance finds a face, `found` is kept without a glance at the photo as it is."""
        glance = getattr(self.inner, "glance", None)
        if glance is None:
            return max([found] + self.turned(image), key=best)
        looks = self.turned(image, glance)
        k = max(range(len(looks)), key=lambda i: best(looks[i]))
        if not looks[k] or best(glance(image)) >= best(looks[k]):
            return found
        return self.turned(image, only=k)[0] or found

    def turned(self, image: np.ndarray, detect: Callable[[np.ndarray], list[Detection]] | None = None,
               only: int | None = None) -> list[list[Detection]]:
        """The faces of the photo turned by each quarter turn (90°, 180°, 270°) and tilted by each of TILTS, in the
        photo's own pixels: one list per orientation, found by `detect` (default: the detector's own). `only`: just
        the orientation of that index in this order."""
        detect = detect or self.inner.detect
        h, w = image.shape[:2]
        out = []
        for i in range(3 + len(TILTS)) if only is None else [only]:
            if i < 3:
                out.append([unturn(d, i + 1, w, h) for d in detect(np.ascontiguousarray(np.rot90(image, i + 1)))])
            else:
                canvas, back = tilt(image, TILTS[i - 3])
                out.append([untilt(d, back, TILTS[i - 3], getattr(self.inner, "frame", None)) for d in detect(canvas)])
        return out

    def second_look(self, image: np.ndarray, found: list[Detection]) -> list[Detection] | None:
        """auto: the faces of the best-scoring orientation other than the one `found` came from (the photo as it is
        included), for a caller whose points say the faces found are none: an upside-down face scores as high as
        an upright one, and a detector unsure of the upright face may score a turned copy of the photo higher;
        None when no other orientation has a face."""
        if self.mode != "auto":
            return None
        others = [o for o in [self.inner.detect(image), *self.turned(image)] if not _same(o, found)]
        other = max(others, key=best, default=[])
        return other or None
