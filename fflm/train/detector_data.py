"""Detector training data: the scene photos (many small faces) and 300-W crops (one large face), held in memory
as encoded bytes, sampled into square canvases with heavy augmentation (scale, zoom-in/out crops, flips, colour,
blur, noise).

300-W faces have landmarks, not face boxes. Their box is derived from five landmark-based keypoints with the
median relation between YuNet's five keypoints and the human (WIDER-style) boxes of the scene photos, so both
sources teach one box style (`KeypointBoxModel`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fflm.annotations import read_annotations
from fflm.geometry import box_iou, face_size


@dataclass
class Photo:
    """One training image: encoded bytes, face boxes [N, 4], ignore regions [M, 4]."""

    name: str
    data: np.ndarray
    boxes: np.ndarray
    ignore: np.ndarray
    pixels: np.ndarray | None = None

    def decode(self) -> np.ndarray:
        """RGB uint8, decoded once and then kept (the whole training set is about 1 GB decoded)."""
        if self.pixels is None:
            self.pixels = np.ascontiguousarray(cv2.imdecode(self.data, cv2.IMREAD_COLOR)[:, :, ::-1])
        return self.pixels


def is_validation(name: str, percent: int = 15) -> bool:
    """The fixed held-out part of the scene photos (by a hash of the file name)."""
    return int(hashlib.sha1(name.encode()).hexdigest(), 16) % 100 < percent


def five_points_68(points: np.ndarray) -> np.ndarray:
    """YuNet's five keypoints from 68 iBUG points: right eye, left eye (subject's), nose tip, mouth corners."""
    return np.stack([points[36:42].mean(0), points[42:48].mean(0), points[30], points[48], points[54]])


class KeypointBoxModel:
    """Face box from five keypoints: centre offset and size as multiples of the eye-to-mouth distance."""

    def __init__(self, params: np.ndarray) -> None:
        self.params = np.asarray(params, dtype=np.float64)  # dx, dy, w, h (in units of the eye-mouth distance)

    @staticmethod
    def _frame(kps: np.ndarray) -> tuple[np.ndarray, float, float]:
        eyes, mouth = kps[:2].mean(0), kps[3:5].mean(0)
        centre = (eyes + mouth) / 2
        d = float(np.linalg.norm(mouth - eyes))
        de = float(np.linalg.norm(kps[1] - kps[0]))
        return centre, d, de

    @classmethod
    def fit(cls, faces: list[tuple[np.ndarray, np.ndarray]]) -> "KeypointBoxModel":
        """Medians over (box, kps) pairs of frontal-ish faces."""
        rows = []
        for box, kps in faces:
            c, d, de = cls._frame(kps)
            if d < 4 or not (0.6 < de / d < 1.6):  # skip profiles and degenerate keypoints
                continue
            s = max(d, 0.5 * de)
            rows.append([((box[0] + box[2]) / 2 - c[0]) / s, ((box[1] + box[3]) / 2 - c[1]) / s,
                         (box[2] - box[0]) / s, (box[3] - box[1]) / s])
        return cls(np.median(np.array(rows), axis=0))

    def box(self, kps: np.ndarray) -> np.ndarray:
        c, d, de = self._frame(kps)
        s = max(d, 0.5 * de)
        dx, dy, w, h = self.params
        cx, cy = c[0] + dx * s, c[1] + dy * s
        return np.array([cx - w * s / 2, cy - h * s / 2, cx + w * s / 2, cy + h * s / 2])


def load_scenes(folder: str | Path) -> tuple[list[Photo], list[Photo], list[tuple[np.ndarray, np.ndarray]]]:
    """(train photos, validation photos, (box, kps) pairs of large human WIDER faces for the keypoint box model).

    YuNet-only faces (no human box) become ignore regions: they are mostly near-misses or unannotated faces.
    """
    folder = Path(folder)
    labels = json.loads((folder / "labels.json").read_text())
    ignores = json.loads((folder / "ignore.json").read_text())
    train, val, pairs = [], [], []
    for name in sorted(labels):
        faces = labels[name]
        boxes = [f["box"] for f in faces if f["source"] == "human"]
        ign = list(ignores.get(name, [])) + [f["box"] for f in faces if f["source"] != "human"]
        for f in faces:
            b = np.array(f["box"])
            if (f["source"] == "human" and f.get("kps") and min(b[2] - b[0], b[3] - b[1]) >= 40 and not f.get("occl")
                    and name.startswith("wider")):  # the face-mask set's boxes sit lower (they cover the mask)
                pairs.append((b, np.array(f["kps"], dtype=np.float64)))
        photo = Photo(name, np.fromfile(str(folder / name), np.uint8), np.array(boxes, np.float64).reshape(-1, 4),
                      np.array(ign, np.float64).reshape(-1, 4))
        (val if is_validation(name) else train).append(photo)
    return train, val, pairs


def load_300w(folder: str | Path, box_model: KeypointBoxModel) -> list[Photo]:
    """300-W style faces (image + .pts, any image format), one each, its box from the landmarks through `box_model`."""
    return [Photo(s.image.name, np.fromfile(str(s.image), np.uint8), box_model.box(five_points_68(s.points))[None],
                  np.zeros((0, 4))) for s in read_annotations(folder, 68)]


def mirror_boxes(boxes: np.ndarray, width: int) -> np.ndarray:
    """Boxes [N, 4] of an image `width` px wide, in its mirror image (pixel centre x -> width - 1 - x)."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.stack([width - 1 - b[:, 2], b[:, 1], width - 1 - b[:, 0], b[:, 3]], axis=1)


def _scale_boxes(b: np.ndarray, s: float, dx: float, dy: float) -> np.ndarray:
    """Boxes under x' = (x + 0.5)·s - 0.5 + dx (a resize by s, then a shift), pixel-centre convention."""
    out = (b + 0.5) * s - 0.5
    out[:, 0::2] += dx
    out[:, 1::2] += dy
    return out


class Sampler:
    """Random training canvases of `size`² pixels: (RGB uint8 image, boxes [N, 4], ignore [M, 4])."""

    def __init__(self, scenes: list[Photo], portraits: list[Photo], size: int = 256, portrait_p: float = 0.35,
                 seed: int = 0, rotate: float = 0.0, occlude: float = 0.0) -> None:
        self.scenes, self.portraits, self.size, self.portrait_p = scenes, portraits, size, portrait_p
        self.rotate = rotate  # half of a canvas' tilt in degrees (half of the canvases are tilted); 0: none
        self.occlude = occlude  # the chance of each face to be partly covered (see `occlude`); 0: none
        self.negatives = [p for p in scenes if len(p.boxes) == 0 and len(p.ignore) == 0]
        self.rng = np.random.default_rng(seed)

    def __call__(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = self.rng
        if self.portraits and rng.random() < self.portrait_p:
            img, boxes, ign = self._portrait(self.portraits[rng.integers(len(self.portraits))])
        else:
            img, boxes, ign = self._scene(self.scenes[rng.integers(len(self.scenes))])
        if rng.random() < 0.5:
            img = img[:, ::-1]
            boxes, ign = mirror_boxes(boxes, img.shape[1]), mirror_boxes(ign, img.shape[1])
        if self.rotate and rng.random() < 0.5:
            img, boxes, ign = tilt(img, boxes, ign, rng.uniform(-self.rotate, self.rotate))
        if self.occlude:
            img = occlude(np.ascontiguousarray(img), boxes, rng, self.occlude)
        return photometric(np.ascontiguousarray(img), rng), boxes, ign

    def _place(self, image: np.ndarray, s: float, fx: float, fy: float, fill: np.ndarray | None):
        """Resize `image` by s and put image point (fx, fy) (resized pixels) at a random canvas position near it;
        returns the canvas and the (dx, dy) shift."""
        S, rng = self.size, self.rng
        h, w = image.shape[:2]
        tx, ty = rng.uniform(0, S), rng.uniform(0, S)
        dx, dy = int(round(tx - fx)), int(round(ty - fy))
        canvas = fill if fill is not None else np.full((S, S, 3), rng.integers(0, 256, 3), np.uint8)
        if s >= 1:  # enlarging: warp straight into the canvas, so only the visible part is computed
            m = np.array([[s, 0, 0.5 * s - 0.5 + dx], [0, s, 0.5 * s - 0.5 + dy]])
            cv2.warpAffine(image, m, (S, S), dst=canvas, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_TRANSPARENT)
            return canvas, s, dx, dy
        nw, nh = max(1, int(round(w * s))), max(1, int(round(h * s)))
        s_eff = nw / w
        small = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
        x0, y0 = max(0, dx), max(0, dy)
        x1, y1 = min(S, dx + nw), min(S, dy + nh)
        if x1 > x0 and y1 > y0:
            canvas[y0:y1, x0:x1] = small[y0 - dy : y1 - dy, x0 - dx : x1 - dx]
        return canvas, s_eff, dx, dy

    def _scene(self, p: Photo):
        rng = self.rng
        img = p.decode()
        h, w = img.shape[:2]
        s = float(np.exp(rng.uniform(np.log(0.5), np.log(3.0))))
        if len(p.boxes) and rng.random() < 0.5:  # zoom on a face
            b = p.boxes[rng.integers(len(p.boxes))]
            fx, fy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        else:
            fx, fy = rng.uniform(0, w), rng.uniform(0, h)
        canvas, s_eff, dx, dy = self._place(img, s, (fx + 0.5) * s, (fy + 0.5) * s, None)
        return canvas, _scale_boxes(p.boxes, s_eff, dx, dy), _scale_boxes(p.ignore, s_eff, dx, dy)

    def _portrait(self, p: Photo):
        rng, S = self.rng, self.size
        img = p.decode()
        b = p.boxes[0]
        face = float(face_size(b))
        target = float(np.exp(rng.uniform(np.log(16), np.log(1.3 * S))))
        s = target / face
        fill = None
        if self.negatives and rng.random() < 0.6:  # a face-less photo as background
            bg = self.negatives[rng.integers(len(self.negatives))].decode()
            fill = cv2.resize(bg, (S, S), interpolation=cv2.INTER_AREA)
        cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        canvas, s_eff, dx, dy = self._place(img, s, (cx + 0.5) * s, (cy + 0.5) * s, fill)
        return canvas, _scale_boxes(p.boxes, s_eff, dx, dy), np.zeros((0, 4))


def tilt(img: np.ndarray, boxes: np.ndarray, ignore: np.ndarray, degrees: float):
    """The canvas rotated by `degrees` (counter-clockwise, about its centre) and its boxes moved with it: each box
    keeps its centre on the same content and grows by half of what its corners' axis-aligned hull would (a face
    is rounder than its box; human boxes of tilted faces are drawn around the face, not the rotated box)."""
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), degrees, 1.0)
    fill = tuple(float(v) for v in cv2.mean(img)[:3])
    out = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=fill)
    c, s = abs(m[0, 0]), abs(m[0, 1])

    def move(b: np.ndarray) -> np.ndarray:
        if not len(b):
            return b
        centre = np.concatenate([(b[:, :2] + b[:, 2:]) / 2, np.ones((len(b), 1))], 1) @ m.T
        bw, bh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        hw, hh = (bw + (c * bw + s * bh)) / 4, (bh + (s * bw + c * bh)) / 4
        return np.stack([centre[:, 0] - hw, centre[:, 1] - hh, centre[:, 0] + hw, centre[:, 1] + hh], 1)

    return out, move(boxes), move(ignore)


def occlude(img: np.ndarray, boxes: np.ndarray, rng: np.random.Generator, p: float) -> np.ndarray:
    """Each face, with chance `p`, partly covered by a flat-coloured band over 20-50 % of its box from one side
    (most often the bottom, as a mask or a hand would): the face stays labelled, so the detector learns to find
    faces from what is left of them (occluded and masked faces are most of its misses). Draws in place."""
    h, w = img.shape[:2]
    for b in boxes:
        if rng.random() >= p:
            continue
        x0, y0, x1, y1 = (float(v) for v in b)
        f = rng.uniform(0.2, 0.5)
        side = rng.choice(4, p=[0.55, 0.15, 0.15, 0.15])  # bottom, top, left, right
        if side == 0:
            y0 = y1 - f * (y1 - y0)
        elif side == 1:
            y1 = y0 + f * (y1 - y0)
        elif side == 2:
            x1 = x0 + f * (x1 - x0)
        else:
            x0 = x1 - f * (x1 - x0)
        c0, r0 = max(0, int(np.ceil(x0))), max(0, int(np.ceil(y0)))
        c1, r1 = min(w - 1, int(np.floor(x1))), min(h - 1, int(np.floor(y1)))
        if c1 >= c0 and r1 >= r0:
            cv2.rectangle(img, (c0, r0), (c1, r1), tuple(int(v) for v in rng.integers(0, 256, 3)), cv2.FILLED)
    return img


def photometric(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Colour (brightness, contrast, saturation, grey), blur and noise jitter on uint8 RGB, with OpenCV's
    saturating uint8 arithmetic (several times faster than float numpy on these small canvases)."""
    if rng.random() < 0.8:
        a = rng.uniform(0.6, 1.4) * rng.uniform(0.6, 1.4)
        mean = float(np.mean(cv2.mean(img)[:3]))
        img = cv2.convertScaleAbs(img, alpha=a, beta=rng.uniform(-30, 30) + mean * (1 - a) * rng.uniform(0, 1))
    r = rng.random()
    if r < 0.1 or r < 0.5:
        grey = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
        t = 0.0 if r < 0.1 else rng.uniform(0.4, 1.5)
        img = cv2.addWeighted(img, t, grey, 1 - t, 0)
    if rng.random() < 0.25:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 2.0))
    if rng.random() < 0.2:
        noise = rng.normal(0, rng.uniform(2, 10), img.shape).astype(np.int16)
        img = np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    return img


def scene_splits(folder: str | Path) -> tuple[list[Photo], list[Photo]]:
    """(choice split, report split) of the scene photos no shipped detector was trained on: WIDER FACE val, face-mask,
    COCO and skimage photos (YuNet was trained on WIDER FACE train). The report split is the part held out from the
    built-in detector's training (fflm.train.detector_data.is_validation); thresholds are chosen on the other part."""
    folder = Path(folder)
    sources = json.loads((folder / "sources.json").read_text())
    train, val, _ = load_scenes(folder)

    def unseen(p: Photo) -> bool:
        return sources[p.name].get("split") != "train"

    return [p for p in train if unseen(p)], [p for p in val if unseen(p)]


def background_boxes(photo: Photo, rng: np.random.Generator, count: int, min_side: float = 30.0) -> np.ndarray:
    """Up to `count` random squares [K, 4] of a photo that overlap none of its faces or ignore regions (IoU <= 0.05,
    and no face centre inside): crops with no face in them."""
    h, w = photo.decode().shape[:2]
    known = np.concatenate([photo.boxes, photo.ignore]).reshape(-1, 4)
    out = []
    for _ in range(20 * count):
        if len(out) == count or min(h, w) / 1.5 <= min_side:
            break
        s = rng.uniform(min_side, min(h, w) / 1.5)
        x, y = rng.uniform(-0.5, w - 0.5 - s), rng.uniform(-0.5, h - 0.5 - s)
        b = np.array([x, y, x + s, y + s])
        if len(known):
            c = (known[:, :2] + known[:, 2:]) / 2
            inside = ((c >= b[:2]) & (c <= b[2:])).all(1).any()
            if inside or box_iou(b[None], known).max() > 0.05:
                continue
        out.append(b)
    return np.array(out).reshape(-1, 4)
