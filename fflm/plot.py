"""Small line plots as PNG, drawn with OpenCV (no plotting library among fflm's dependencies)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from fflm.fileio import atomic_write

COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]


def line_plot(path: str | Path, x: list[float], series: dict[str, list[float]], xlabel: str, ylabel: str, title: str,
              size: tuple[int, int] = (800, 500)) -> None:
    """Draw the series against x with axes, ticks and a legend; written atomically as PNG."""
    w, h = size
    left, right, top, bottom = 70, 20, 40, 50
    img = np.full((h, w, 3), 255, np.uint8)
    xs = np.asarray(x, float)
    ys = [np.asarray(v, float) for v in series.values()]
    finite = np.concatenate([v[np.isfinite(v)] for v in ys]) if ys else np.zeros(1)
    x0, x1 = (float(xs.min()), float(xs.max())) if len(xs) else (0.0, 1.0)
    y0, y1 = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if x1 <= x0:
        x1 = x0 + 1
    if y1 <= y0:
        y1 = y0 + 1
    pad = 0.05 * (y1 - y0)
    y0, y1 = y0 - pad, y1 + pad

    def to_px(px: np.ndarray, py: np.ndarray) -> np.ndarray:
        u = left + (px - x0) / (x1 - x0) * (w - left - right)
        v = h - bottom - (py - y0) / (y1 - y0) * (h - top - bottom)
        return np.stack([u, v], -1)

    cv2.rectangle(img, (left, top), (w - right, h - bottom), (0, 0, 0), 1)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for t in np.linspace(0, 1, 6):
        xv, yv = x0 + t * (x1 - x0), y0 + t * (y1 - y0)
        u, _ = to_px(np.array(xv), np.array(y0))
        _, v = to_px(np.array(x0), np.array(yv))
        cv2.putText(img, f"{xv:.3g}", (int(u) - 12, h - bottom + 18), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(img, f"{yv:.3g}", (5, int(v) + 4), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.line(img, (left, int(v)), (w - right, int(v)), (225, 225, 225), 1)
    for i, (name, v) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)][::-1]
        ok = np.isfinite(v)
        pts = to_px(xs[ok], np.asarray(v, float)[ok]).round().astype(np.int32)
        if len(pts) > 1:
            cv2.polylines(img, [pts], False, colour, 2, cv2.LINE_AA)
        elif len(pts) == 1:
            cv2.circle(img, tuple(int(c) for c in pts[0]), 3, colour, -1)
        cv2.putText(img, name, (left + 10, top + 18 + 18 * i), font, 0.5, colour, 1, cv2.LINE_AA)
    cv2.putText(img, title, (left, 25), font, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, xlabel, (w // 2 - 20, h - 10), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    if ylabel:
        cv2.putText(img, ylabel, (5, top - 10), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    atomic_write(path, cv2.imencode(".png", img)[1].tobytes())
