"""The 300-W `.pts` text format. Files are 1-based (top-left pixel centre (1, 1)); fflm is 0-based,
so reading subtracts 1 and writing adds 1, and a write-read round trip is exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class AnnotationError(ValueError):
    """A malformed annotation file; the message names the file and line."""


def parse_pts(text: str, source: str = "<pts>") -> np.ndarray:
    """Points [N, 2] (0-based) from .pts text, with or without the `version`/`n_points`/braces header."""
    lines = text.splitlines()
    declared = None
    pts: list[tuple[float, float]] = []
    for no, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line in ("{", "}") or line.startswith("version"):
            continue
        if line.startswith("n_points"):
            try:
                declared = int(line.split(":", 1)[1])
            except (IndexError, ValueError):
                raise AnnotationError(f"{source}:{no}: bad n_points line {raw!r}") from None
            continue
        parts = line.split()
        try:
            if len(parts) != 2:
                raise ValueError
            x, y = float(parts[0]), float(parts[1])
        except ValueError:
            raise AnnotationError(f"{source}:{no}: expected 'x y', got {raw!r}") from None
        if not (np.isfinite(x) and np.isfinite(y)):
            raise AnnotationError(f"{source}:{no}: non-finite coordinate {raw!r}")
        pts.append((x - 1.0, y - 1.0))
    if not pts:
        raise AnnotationError(f"{source}: no points")
    if declared is not None and declared != len(pts):
        raise AnnotationError(f"{source}: n_points says {declared} but {len(pts)} points follow")
    return np.asarray(pts, dtype=np.float64)


def read_pts(path: str | Path) -> np.ndarray:
    """Read a .pts file into 0-based points [N, 2]."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise AnnotationError(f"{path}: cannot read ({e})") from None
    return parse_pts(text, str(path))


def format_pts(points: np.ndarray) -> str:
    """.pts text (1-based) for 0-based points [N, 2]; repr-precision floats so reading back is exact."""
    body = "\n".join(f"{float(x) + 1.0!r} {float(y) + 1.0!r}" for x, y in np.asarray(points, dtype=np.float64))
    return f"version: 1\nn_points: {len(points)}\n{{\n{body}\n}}\n"
