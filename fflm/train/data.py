"""The training dataset: face frames from landmarks, augmentation, batching (annotations come from
fflm.annotations)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from fflm.annotations import Sample
from fflm.errors import UsageError
from fflm.geometry import affine_points, points_box
from fflm.imageio import read_image
from fflm.scheme import LandmarkScheme


PROBABILITIES = ("flip", "blur", "noise", "jpeg")  # the Augment fields that are probabilities


@dataclass
class Augment:
    """Random augmentation of one training face; all zero gives the plain face frame."""

    scale: float = 0.10  # std of log frame scale
    shift: float = 0.05  # std of frame centre shift, in frame sides
    rotate: float = 12.0  # std of rotation, degrees (clipped at 2.5 std)
    flip: float = 0.5
    colour: float = 0.25  # brightness/contrast/saturation jitter
    blur: float = 0.15  # probability of a Gaussian blur
    noise: float = 0.15  # probability of Gaussian noise
    jpeg: float = 0.15  # probability of JPEG re-encoding

    @classmethod
    def none(cls) -> "Augment":
        return cls(0, 0, 0, 0, 0, 0, 0, 0)

    @classmethod
    def parse(cls, text: str) -> "Augment":
        """The defaults with `name=value` pairs (comma-separated) replaced, e.g. "rotate=6,blur=0"; "none": no
        augmentation. ValueError names what is wrong."""
        if text.strip() == "none":
            return cls.none()
        names = [f.name for f in fields(cls)]
        values = {}
        for pair in filter(None, (p.strip() for p in text.split(","))):
            name, _, value = pair.partition("=")
            name = name.strip()
            if name not in names:
                raise UsageError(f"unknown augmentation {name!r} (one of {', '.join(names)}, or none)")
            try:
                values[name] = float(value)  # "" (no "=") and words fail here
            except ValueError:
                values[name] = math.nan
            if not values[name] >= 0:  # also NaN
                raise UsageError(f"augmentation {name} needs a number >= 0, got {value.strip()!r}")
            if name in PROBABILITIES and values[name] > 1:
                raise UsageError(f"augmentation {name} is a probability (0..1), got {values[name]:g}")
        return replace(cls(), **values)


def frame_transform(points: np.ndarray, resolution: int, frame_scale: float, rng: np.random.Generator | None,
                    aug: Augment) -> tuple[np.ndarray, bool]:
    """The 2×3 affine from source pixels to the R×R training frame, and whether it mirrors.

    The frame is the square of side frame_scale·max(landmark box side) around the box centre, randomly
    scaled, shifted, rotated and mirrored. Pixel-centre exact: the frame's edges land on [-0.5, R - 0.5].
    """
    box = points_box(points)
    centre = (box[:2] + box[2:]) / 2
    side = frame_scale * max(box[2] - box[0], box[3] - box[1], 1.0)
    angle, flip = 0.0, False
    if rng is not None:
        side *= math.exp(float(np.clip(rng.normal(0, aug.scale), -2.5 * aug.scale, 2.5 * aug.scale))) if aug.scale else 1.0
        centre = centre + rng.normal(0, aug.shift, 2) * side if aug.shift else centre
        angle = float(np.clip(rng.normal(0, aug.rotate), -2.5 * aug.rotate, 2.5 * aug.rotate)) if aug.rotate else 0.0
        flip = bool(rng.random() < aug.flip)
    s = resolution / side
    a = math.radians(angle)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]) * s
    mid = resolution / 2 - 0.5
    m = np.zeros((2, 3))
    m[:, :2] = rot
    m[:, 2] = mid - rot @ centre
    if flip:
        m[0] = -m[0]
        m[0, 2] += 2 * mid
    return m, flip


def warp_frame(image: np.ndarray, matrix: np.ndarray, resolution: int) -> np.ndarray:
    """Resample the source image into the R×R frame (area pre-shrink when it shrinks by 2× or more)."""
    scale = math.sqrt(abs(np.linalg.det(matrix[:, :2])))
    f = int(1 / scale) if scale < 0.5 else 1
    if f > 1:  # cv2.warpAffine has no area mode: shrink by an integer factor first, then map exactly
        h, w = image.shape[:2]
        image = cv2.resize(image[: h - h % f, : w - w % f], (w // f, h // f), interpolation=cv2.INTER_AREA)
        pre = np.array([[f, 0, (f - 1) / 2], [0, f, (f - 1) / 2]], dtype=np.float64)  # reduced px -> source px
        matrix = matrix[:, :2] @ pre[:, :2], matrix[:, :2] @ pre[:, 2] + matrix[:, 2]
        matrix = np.concatenate([matrix[0], matrix[1][:, None]], axis=1)
    return cv2.warpAffine(image, matrix, (resolution, resolution), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def photometric(image: np.ndarray, rng: np.random.Generator, aug: Augment) -> np.ndarray:
    """Colour, blur, noise and JPEG augmentation (geometry untouched)."""
    img = image.astype(np.float32)
    if aug.colour:
        c = aug.colour
        grey = img.mean(axis=2, keepdims=True)
        img = grey + (img - grey) * (1 + rng.uniform(-c, c))  # saturation
        img = (img - img.mean()) * (1 + rng.uniform(-c, c)) + img.mean() * (1 + rng.uniform(-c, c))
    if rng.random() < aug.blur:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 2.0))
    if rng.random() < aug.noise:
        img = img + rng.normal(0, rng.uniform(2, 10), img.shape).astype(np.float32)
    out = np.clip(img, 0, 255).astype(np.uint8)
    if rng.random() < aug.jpeg:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 90))])
        if ok:
            out = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return out


class LandmarkDataset(Dataset):
    """Training faces as R×R frames: (image uint8 [3, R, R], points float32 [N, 2] in frame pixels, per-point loss
    weights float32 [N])."""

    def __init__(self, samples: list[Sample], scheme: LandmarkScheme, resolution: int = 256, frame_scale: float = 1.5,
                 augment: Augment | None = None, seed: int = 0, preload: bool = True) -> None:
        self.samples = samples
        self.perm = np.array(scheme.flip_permutation())
        self.resolution = resolution
        self.frame_scale = frame_scale
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.cache = [read_image(s.image) for s in samples] if preload else None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        sample = self.samples[i]
        image = self.cache[i] if self.cache is not None else read_image(sample.image)
        rng = np.random.default_rng((self.seed, self.epoch, i)) if self.augment else None
        aug = self.augment or Augment.none()
        m, flip = frame_transform(sample.points, self.resolution, self.frame_scale, rng, aug)
        frame = warp_frame(image, m, self.resolution)
        pts = affine_points(sample.points, m)
        weights = np.ones(len(pts)) if sample.weights is None else sample.weights
        if flip:
            pts, weights = pts[self.perm], weights[self.perm]
        if rng is not None:
            frame = photometric(frame, rng, aug)
        return (torch.from_numpy(np.ascontiguousarray(frame.transpose(2, 0, 1))), torch.from_numpy(pts.astype(np.float32)),
                torch.from_numpy(weights.astype(np.float32)))


class SourceBatches(Sampler):
    """Batches of indices into a ConcatDataset of sources, each batch from one source (so its frames share one
    resolution), every source's faces drawn `repeat` times an epoch, in an order fixed by (seed, epoch)."""

    def __init__(self, sizes: list[int], repeats: list[float], batch_size: int, seed: int) -> None:
        self.sizes, self.repeats, self.batch_size, self.seed = sizes, repeats, batch_size, seed
        self.epoch = 0

    def _batches(self) -> list[list[int]]:
        rng = np.random.default_rng((self.seed, self.epoch))
        batches, start = [], 0
        for size, repeat in zip(self.sizes, self.repeats):
            whole, part = divmod(repeat, 1.0)
            draws = [rng.permutation(size) for _ in range(int(whole))]
            if part:
                draws.append(rng.permutation(size)[: round(part * size)])
            order = np.concatenate(draws) + start if draws else np.zeros(0, dtype=int)
            # a source smaller than a batch still trains; otherwise its ragged last batch is dropped
            cut = len(order) - len(order) % self.batch_size if len(order) >= self.batch_size else len(order)
            batches += [order[i : i + self.batch_size].tolist() for i in range(0, cut, self.batch_size)]
            start += size
        return [batches[i] for i in rng.permutation(len(batches))]

    def __iter__(self):
        return iter(self._batches())

    def sources(self) -> list[int]:
        """The source of each batch of this epoch, in the order iteration yields them."""
        ends = np.cumsum(self.sizes)
        return [int(np.searchsorted(ends, batch[0], side="right")) for batch in self._batches()]

    def __len__(self) -> int:
        return len(self._batches())
