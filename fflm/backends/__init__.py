"""Where the networks run: `torch` (the default), or from an ONNX export in `onnxruntime` (fflm.backends.onnx, the
`fflm[onnx]` extra) or `openvino` (fflm.backends.openvino, the `fflm[openvino]` extra)."""

from __future__ import annotations

from fflm.choices import BACKENDS
from fflm.errors import MissingExtra

__all__ = ["BACKENDS", "MissingExtra", "require"]


def require(module: str, extra: str, what: str):  # noqa: ANN201
    """`import module`, or MissingExtra naming the extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(f"{what} needs {module.split('.')[0]}, which is not installed: "
                           f"pip install 'fflm[{extra}]'") from None
