"""fflm: precise facial landmarks on photos of any resolution.

`fflm.Landmarker` runs the model; `fflm.Face` is what it returns. Both are imported on first use so that
`import fflm` (and `fflm --version`) stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["Landmarker", "Face", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from fflm.pipeline import Face, Landmarker


def __getattr__(name: str):
    if name in ("Landmarker", "Face"):
        from fflm import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'fflm' has no attribute {name!r}")
