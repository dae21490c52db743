"""User-supplied face boxes: a JSON object mapping an image's file name to its boxes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fflm.errors import BoxesFileError


def load_boxes_file(path: str | Path) -> dict[str, list[list[float]]]:
    """`{"photo.jpg": [[x0, y0, x1, y1], ...], ...}` (original pixels), keyed by basename."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise BoxesFileError(f"cannot read boxes file {path}: {e.strerror or e}") from None
    if not text.strip():
        raise BoxesFileError(f"boxes file {path} is empty")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise BoxesFileError(f"boxes file {path}: invalid JSON at line {e.lineno}: {e.msg}") from None
    if not isinstance(data, dict):
        raise BoxesFileError(f"boxes file {path}: expected an object mapping file names to box lists")
    out = {}
    for name, boxes in data.items():
        try:
            arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) if boxes else np.zeros((0, 4))
            if isinstance(boxes, list) and boxes and not all(isinstance(b, list) and len(b) == 4 for b in boxes):
                raise ValueError
            if not np.isfinite(arr).all() or (arr[:, 2] <= arr[:, 0]).any() or (arr[:, 3] <= arr[:, 1]).any():
                raise ValueError
        except (ValueError, TypeError):
            raise BoxesFileError(f"boxes file {path}: entry {name!r} must be a list of [x0, y0, x1, y1] with x1 > x0, y1 > y0") from None
        out[Path(name).name] = arr.tolist()
    return out
