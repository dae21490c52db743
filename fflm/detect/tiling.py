"""Proxy and tiled detection for any "small image in, boxes out" function, with boxes mapped to original pixels.

One pass runs on a proxy whose long side is at most `proxy` pixels. Tiled detection adds passes over
overlapping `proxy`×`proxy` tiles of a larger virtual proxy (zoom z ≤ 1 of the photo): each tile is cut from
the 8-bit photo and resized on its own, so memory is bounded by one tile whatever the photo's size. A face
cut by an inner tile border is dropped there: the overlap is chosen wider than the faces a tile is
responsible for, so the neighbouring tile holds it whole; larger faces come from the whole-photo pass.
Everything is then merged by NMS.
"""

from __future__ import annotations

import math
from typing import Callable

import cv2
import numpy as np

from fflm.detect.decode import nms
from fflm.detect.run import unscale_boxes
from fflm.geometry import face_size

#: small image (uint8 RGB) -> (boxes [K, 4] in its pixels, scores [K])
RunFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]

SMALL_FACE = 40.0  # px in the proxy: a face this small suggests more, smaller faces (auto tiling)
MIN_TILE_FACE = 20.0  # px: what tiling aims to make of the smallest face it should find


def proxy_side(width: int, height: int, proxy: int) -> int:
    """Long side of the detector's proxy: `proxy`, but never more than twice the photo (tiny photos)."""
    return int(min(proxy, 2 * max(width, height)))


def resize_by(image: np.ndarray, z: float) -> tuple[np.ndarray, float, float]:
    """Resize by factor z (area filter when shrinking), returning the exact x and y factors used.

    A large reduction first shrinks by an integer factor k (OpenCV's fast exact block-average path, about 3×
    cheaper than a fractional INTER_AREA on a 4K photo), dropping the last < k rows and columns so the map stays
    x' = (x + 0.5)/k - 0.5, then finishes with a fractional area resize of the small image.
    """
    h, w = image.shape[:2]
    nw, nh = max(1, int(round(w * z))), max(1, int(round(h * z)))
    if (nw, nh) == (w, h):
        return image, 1.0, 1.0
    if z >= 1:
        return cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR), nw / w, nh / h
    k = int(1 / z)
    if k >= 2 and w // k >= nw and h // k >= nh:
        small = cv2.resize(image[: h - h % k, : w - w % k], (w // k, h // k), interpolation=cv2.INTER_AREA)
        if small.shape[:2] == (nh, nw):
            return small, 1 / k, 1 / k
        return cv2.resize(small, (nw, nh), interpolation=cv2.INTER_AREA), nw / (w // k) / k, nh / (h // k) / k
    return cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA), nw / w, nh / h


def run_proxy(run: RunFn, image: np.ndarray, proxy: int, coarse: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """One pass over the whole photo at the proxy size; boxes in the photo's pixels. With `coarse`, a second pass
    at half the proxy (a quarter of the cost) catches faces larger than the network saw in training (its
    256 px canvases held faces up to ~330 px: a close-up filling a 640 px proxy is beyond that)."""
    h, w = image.shape[:2]
    side = proxy_side(w, h, proxy)
    small, sx, sy = resize_by(image, side / max(w, h))
    boxes, scores = run(small)
    boxes = unscale_boxes(boxes, sx, sy)
    if not coarse or side < 320:
        return boxes, scores
    half, hx, hy = resize_by(small, 0.5)
    cb, cs = run(half)
    return merge([(boxes, scores), (unscale_boxes(unscale_boxes(cb, hx, hy), sx, sy), cs)])


def tile_zoom(width: int, height: int, proxy: int, tiles: int | None, min_face: float = 0.0) -> float:
    """Zoom of the tiled virtual proxy. `tiles` N: N tiles along the long side; None (auto): large enough that
    a face of `min_face` px (if given) or of 1/128 of the long side (60 px in an 8K photo) reaches MIN_TILE_FACE px, at least 2 tiles."""
    long = max(width, height)
    overlap = proxy // 4
    if tiles is None:
        face = min_face if min_face > 0 else long / 128
        side = max(2 * proxy - overlap, long * MIN_TILE_FACE / face)
    else:
        side = tiles * (proxy - overlap) + overlap
    return min(1.0, side / long)


def tile_windows(width: int, height: int, z: float, proxy: int) -> list[tuple[int, int, int, int]]:
    """Integer windows [x0, y0, x1, y1) of the photo, each `proxy` px wide at zoom z, overlapping by a quarter."""
    t = proxy / z  # tile side in photo pixels
    step = 0.75 * t

    def starts(n: int) -> list[int]:
        if n <= t:
            return [0]
        k = math.ceil((n - t) / step) + 1
        return [int(round(i * (n - t) / (k - 1))) for i in range(k)]

    side = int(math.ceil(t))
    return [(x, y, min(width, x + side), min(height, y + side)) for y in starts(height) for x in starts(width)]


def run_tiles(run: RunFn, image: np.ndarray, z: float, proxy: int) -> tuple[np.ndarray, np.ndarray]:
    """Passes over the tiles (one at a time), dropping faces cut by inner tile borders; photo pixels."""
    h, w = image.shape[:2]
    parts = []
    for x0, y0, x1, y1 in tile_windows(w, h, z, proxy):
        tile, sx, sy = resize_by(image[y0:y1, x0:x1], z)
        boxes, scores = run(tile)
        if len(boxes):
            th, tw = tile.shape[:2]
            margin = 2.0
            cut = ((boxes[:, 0] < -0.5 + margin) & (x0 > 0)) | ((boxes[:, 1] < -0.5 + margin) & (y0 > 0)) | \
                  ((boxes[:, 2] > tw - 0.5 - margin) & (x1 < w)) | ((boxes[:, 3] > th - 0.5 - margin) & (y1 < h))
            parts.append((unscale_boxes(boxes[~cut], sx, sy, x0, y0), scores[~cut]))
    return concat(parts)


def tile_plan(boxes: np.ndarray, width: int, height: int, proxy: int, tiles: str | int,
              min_face: float = 0.0) -> float | None:
    """The zoom of the tiled pass, or None when it is not needed: `off`; `auto` when the photo is under twice the
    proxy or the proxy pass found only faces of SMALL_FACE px or more (in the proxy); or when the tiles would not
    see the photo at least 1.2× finer than the proxy did."""
    if tiles in ("off", 0, 1):
        return None
    z_proxy = proxy_side(width, height, proxy) / max(width, height)
    if tiles == "auto":
        sizes = face_size(boxes[:, :4]) * z_proxy
        if max(width, height) < 2 * proxy or (len(sizes) and sizes.min() >= SMALL_FACE):
            return None
        z = tile_zoom(width, height, proxy, None, min_face)
    else:
        z = tile_zoom(width, height, proxy, int(tiles), min_face)
    return z if z > z_proxy * 1.2 else None


def concat(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The rows (boxes, perhaps with keypoints) and scores of several passes, one after the other."""
    parts = [(np.asarray(b, np.float64), np.asarray(s, np.float64).reshape(-1)) for b, s in parts if len(b)]
    if not parts:
        return np.zeros((0, 4)), np.zeros(0)
    return np.concatenate([b for b, _ in parts]), np.concatenate([s for _, s in parts])


def merge(parts: list[tuple[np.ndarray, np.ndarray]], iou: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    """Boxes and scores of several passes (same pixels) merged by NMS, best first."""
    boxes, scores = concat(parts)
    keep = nms(boxes, scores, iou)
    return boxes[keep], scores[keep]


def detect_tiled(run: RunFn, image: np.ndarray, proxy: int = 640, tiles: str | int = "auto", min_face: float = 0.0,
                 iou: float = 0.4, coarse: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Boxes [K, 4] (photo pixels) and scores, best first: the proxy pass (and its coarse pass), plus the tiled
    pass when `tile_plan` asks for it, merged."""
    h, w = image.shape[:2]
    boxes, scores = run_proxy(run, image, proxy, coarse)
    z = tile_plan(boxes, w, h, proxy, tiles, min_face)
    if z is None:
        return boxes, scores
    return merge([(boxes, scores), run_tiles(run, image, z, proxy)], iou)
