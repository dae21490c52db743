"""Boxes and the maps between original, proxy and crop pixels.

Convention everywhere: 0-based pixel centres (OpenCV's): the top-left pixel's centre is (0, 0) and it
covers [-0.5, 0.5]². A box [x0, y0, x1, y1] is a continuous rectangle in the same frame, so the box
covering a whole W×H image is [-0.5, -0.5, W - 0.5, H - 0.5]. A box resampled to an S×S crop maps its
edges onto the crop's edges: crop pixel centre u lies at x0 + (u + 0.5)·(x1 - x0)/S.

Functions accept numpy arrays or torch tensors (points [..., N, 2], boxes [..., 4]) and return the same kind.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np

Array = TypeVar("Array")  # np.ndarray or torch.Tensor


def face_size(boxes: np.ndarray) -> np.ndarray:
    """The size of each face box [..., 4]: √(w·h) in its pixels (0 for an empty box); [...] like the boxes."""
    b = np.asarray(boxes, np.float64)
    return np.sqrt(np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None))


def cell_centres(count: int, stride: int, device=None, dtype=None):  # noqa: ANN001,ANN201
    """Where the `count` cells of a stride-`stride` grid (a heatmap, a detector level) sit in its input's pixels:
    cell j covers pixels j·s … (j+1)·s - 1, so its centre is j·s + (s - 1)/2. A numpy array, or a torch tensor
    when `device` or `dtype` is given."""
    off = (stride - 1) / 2
    if device is None and dtype is None:
        return np.arange(count) * stride + off
    import torch

    return torch.arange(count, device=device, dtype=dtype) * stride + off


def _size_xy(size: int | tuple[int, int]) -> tuple[float, float]:
    if isinstance(size, (tuple, list)):
        return float(size[0]), float(size[1])
    return float(size), float(size)


def box_to_local(points: Array, box: Array, size: int | tuple[int, int]) -> Array:
    """Map points from image pixels to the pixels of an S×S (or (w, h)) resampling of `box`."""
    sw, sh = _size_xy(size)
    x0, y0, x1, y1 = (box[..., None, i] for i in range(4))
    x = (points[..., 0] - x0) * (sw / (x1 - x0)) - 0.5
    y = (points[..., 1] - y0) * (sh / (y1 - y0)) - 0.5
    return _stack_xy(points, x, y)


def local_to_box(points: Array, box: Array, size: int | tuple[int, int]) -> Array:
    """Inverse of `box_to_local`: crop pixels back to image pixels."""
    sw, sh = _size_xy(size)
    x0, y0, x1, y1 = (box[..., None, i] for i in range(4))
    x = x0 + (points[..., 0] + 0.5) * ((x1 - x0) / sw)
    y = y0 + (points[..., 1] + 0.5) * ((y1 - y0) / sh)
    return _stack_xy(points, x, y)


def _stack_xy(like: Array, x: Array, y: Array) -> Array:
    if isinstance(like, np.ndarray):
        return np.stack([x, y], axis=-1)
    import torch

    return torch.stack([x, y], dim=-1)


def square_box(box: Array, scale: float = 1.0) -> Array:
    """The square of side scale·max(w, h) sharing the box's centre."""
    cx = (box[..., 0] + box[..., 2]) / 2
    cy = (box[..., 1] + box[..., 3]) / 2
    w = box[..., 2] - box[..., 0]
    h = box[..., 3] - box[..., 1]
    if isinstance(box, np.ndarray):
        half = np.maximum(w, h) * (scale / 2)
        return np.stack([cx - half, cy - half, cx + half, cy + half], axis=-1)
    import torch

    half = torch.maximum(w, h) * (scale / 2)
    return torch.stack([cx - half, cy - half, cx + half, cy + half], dim=-1)


def points_box(points: np.ndarray) -> np.ndarray:
    """The tight box [x0, y0, x1, y1] of points [..., N, 2] (numpy)."""
    return np.concatenate([points.min(axis=-2), points.max(axis=-2)], axis=-1)


def image_box(width: int, height: int) -> np.ndarray:
    """The box covering a whole W×H image."""
    return np.array([-0.5, -0.5, width - 0.5, height - 0.5], dtype=np.float64)


def clip_box(box: np.ndarray, width: int, height: int) -> np.ndarray:
    """Clip a box (numpy, [..., 4]) to the image."""
    lo = image_box(width, height)
    out = np.array(box, dtype=np.float64, copy=True)
    out[..., 0::2] = out[..., 0::2].clip(lo[0], lo[2])
    out[..., 1::2] = out[..., 1::2].clip(lo[1], lo[3])
    return out


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix between boxes a [A, 4] and b [B, 4]."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix0 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy0 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix1 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = (ix1 - ix0).clip(0) * (iy1 - iy0).clip(0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


def best_overlap(boxes: np.ndarray, box: np.ndarray, min_iou: float = 0.0) -> int | None:
    """Index of the box in `boxes` [K, 4] overlapping `box` most, or None when none overlaps by more than
    `min_iou` (or there are no boxes): which detection is a known face's."""
    if len(boxes) == 0:
        return None
    iou = box_iou(boxes, np.asarray(box)[None])[:, 0]
    best = int(iou.argmax())
    return best if iou[best] > min_iou else None


def affine_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 2×3 affine matrix (OpenCV's warpAffine convention, pixel centres) to points [..., 2]."""
    return points @ matrix[:, :2].T + matrix[:, 2]
