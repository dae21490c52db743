"""The 300-W `.pts` text format. Files are 1-based (top-left pixel centre (1, 1)); fflm is 0-based,
so reading subtracts 1 and writing adds 1, and a write-read round trip is exact."""

from __future__ import annotations

from decimal import Context, Decimal
from pathlib import Path

import numpy as np

from fflm.errors import AnnotationError

# The ±1 between 1-based files and 0-based points is done in decimal with ample precision: in binary
# floating point x + 1 - 1 != x for many x (0.1 becomes 0.10000000000000009).
_EXACT = Context(prec=800)


def _plus_one(x: float) -> str:
    d = _EXACT.add(Decimal(repr(float(x))), 1)
    return format(d, "f") if abs(d) < Decimal("1e16") else str(d)


def _minus_one(text: str) -> float:
    v = float(_EXACT.subtract(Decimal(text), 1))
    if not np.isfinite(v):
        raise ValueError
    return v


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
            x, y = _minus_one(parts[0]), _minus_one(parts[1])
        except (ValueError, ArithmeticError):
            raise AnnotationError(f"{source}:{no}: expected 'x y', got {raw!r}") from None
        pts.append((x, y))
    if not pts:
        raise AnnotationError(f"{source}: no points")
    if declared is not None and declared != len(pts):
        raise AnnotationError(f"{source}: n_points says {declared} but {len(pts)} points follow")
    return np.asarray(pts, dtype=np.float64)


def point_line(text: str, k: int) -> int:
    """The 1-based line number of point k (0-based) in .pts text that parse_pts accepted."""
    seen = -1
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line and line not in ("{", "}") and not line.startswith(("version", "n_points")):
            seen += 1
            if seen == k:
                return no
    raise IndexError(k)


def read_pts(path: str | Path) -> np.ndarray:
    """Read a .pts file into 0-based points [N, 2]."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise AnnotationError(f"{path}: cannot read ({e})") from None
    return parse_pts(text, str(path))


def format_pts(points: np.ndarray) -> str:
    """.pts text (1-based) for 0-based points [N, 2], exact: reading it back gives the same floats."""
    body = "\n".join(f"{_plus_one(x)} {_plus_one(y)}" for x, y in np.asarray(points, dtype=np.float64))
    return f"version: 1\nn_points: {len(points)}\n{{\n{body}\n}}\n"
