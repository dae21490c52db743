"""fflm: precise facial landmarks on photos of any resolution.

`fflm.Landmarker` runs the model; `fflm.Face` is what it returns. Both are imported on first use so that
`import fflm` (and `fflm --version`) stays fast.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

try:
    __version__ = version("fflm")  # the one source is pyproject.toml, through the installed package's metadata
except PackageNotFoundError:  # pragma: no cover - a source tree used without installing it
    __version__ = "0+unknown"
__all__ = ["Landmarker", "Face", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from fflm.pipeline import Face, Landmarker


def __getattr__(name: str):
    if name in ("Landmarker", "Face"):
        from fflm import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'fflm' has no attribute {name!r}")
