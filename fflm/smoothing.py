"""Temporal smoothing of tracked landmarks: the One-Euro filter (Casiez, Roussel and Vogel, CHI 2012).

An exponential low-pass whose cut-off frequency rises with the signal's speed: a face that holds still gets
strong smoothing (jitter removed), a face that moves gets little (little lag). Speeds are measured in face
sizes per second (the caller passes the face's size in pixels), so one set of parameters serves faces of
any size in any video resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fflm.errors import UsageError


@dataclass(frozen=True)
class OneEuroParams:
    """`min_cutoff` (Hz): the cut-off of a still face, lower = smoother; `beta` (per face size/s): how fast the
    cut-off rises with speed, higher = less lag; `d_cutoff` (Hz): the cut-off of the speed estimate itself.
    The defaults were chosen on made clips of known motion (docs/video.md)."""

    min_cutoff: float = 2.0
    beta: float = 16.0
    d_cutoff: float = 2.0

    def __post_init__(self) -> None:
        if not (self.min_cutoff > 0 and self.d_cutoff > 0 and self.beta >= 0):
            raise UsageError("One-Euro parameters need min_cutoff > 0, d_cutoff > 0 and beta >= 0")


def smoothing_factor(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    """The exponential filter's weight of a new sample, 1 / (1 + τ/dt) with τ = 1 / (2π·cutoff)."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff, dtype=np.float64))
    return 1.0 / (1.0 + tau / dt)


class OneEuro:
    """One-Euro filter over an array of 2-D points [..., 2]: each point has its own cut-off, driven by its own
    2-D speed (so the filter does not depend on the image's axes). Call it with each new sample and its time
    in seconds; it returns the filtered points."""

    def __init__(self, params: OneEuroParams | None = None) -> None:
        self.params = params or OneEuroParams()
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t = 0.0

    def __call__(self, x: np.ndarray, t: float, scale: float = 1.0) -> np.ndarray:
        """Filter sample `x` taken at `t` seconds; `scale` is the size (pixels) that speeds are measured in."""
        x = np.asarray(x, dtype=np.float64)
        if self._x is None or self._x.shape != x.shape or t <= self._t:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return x.copy()
        p, dt = self.params, t - self._t
        dx = (x - self._x) / dt
        self._dx = self._dx + smoothing_factor(p.d_cutoff, dt) * (dx - self._dx)
        speed = np.linalg.norm(self._dx, axis=-1, keepdims=True) / max(scale, 1e-9)
        a = smoothing_factor(p.min_cutoff + p.beta * speed, dt)
        self._x = self._x + a * (x - self._x)
        self._t = t
        return self._x.copy()
