"""Detection straight from a file, decoding only as much as the detector needs.

JPEG's DCT scaling decodes at 1/2, 1/4 or 1/8 size for a fraction of the full decode's time and memory
(OpenCV's IMREAD_REDUCED_*; EXIF orientation is applied as in `read_image`). The proxy pass uses the
smallest reduction that still covers the proxy; a tiled pass, when needed, decodes again at the reduction
its zoom allows. Boxes come back in the upright full-resolution photo's pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fflm.detect.run import unscale_boxes
from fflm.detect.tiling import RunFn, merge, run_proxy, run_tiles, tile_plan
from fflm.imageio import image_size, read_image


def reduction_for(long_side: int, needed: float) -> int:
    """The largest of 8, 4, 2, 1 that keeps the decoded long side at least `needed` pixels."""
    for k in (8, 4, 2):
        if long_side / k >= needed:
            return k
    return 1


def decode_reduced(path: str | Path, width: int, height: int, needed: float) -> tuple[np.ndarray, float, float]:
    """The photo decoded at a reduction keeping `needed` px on the long side, and its x, y scale factors."""
    k = reduction_for(max(width, height), needed)
    image = read_image(path, k)
    return image, image.shape[1] / width, image.shape[0] / height


def detect_file(run: RunFn, path: str | Path, proxy: int = 640, tiles: str | int = "auto", min_face: float = 0.0,
                iou: float = 0.4, coarse: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Boxes [K, 4] in the full-resolution upright photo's pixels and scores, best first."""
    width, height = image_size(path)
    small, sx, sy = decode_reduced(path, width, height, proxy)
    boxes, scores = run_proxy(run, small, proxy, coarse)
    boxes = unscale_boxes(boxes, sx, sy)
    z = tile_plan(boxes, width, height, proxy, tiles, min_face)
    if z is None:
        return boxes, scores
    del small
    big, bx, by = decode_reduced(path, width, height, z * max(width, height))
    tb, ts = run_tiles(run, big, z / bx, proxy)
    return merge([(boxes, scores), (unscale_boxes(tb, bx, by), ts)], iou)
