"""Where the networks run: `torch` (the default) or `onnxruntime` (fflm.backends.onnx, the `fflm[onnx]` extra)."""

from __future__ import annotations

BACKENDS = ("torch", "onnxruntime")


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message names the extra that brings it (exit code 2)."""


def require(module: str, extra: str, what: str):  # noqa: ANN201
    """`import module`, or MissingExtra naming the extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(f"{what} needs {module.split('.')[0]}, which is not installed: "
                           f"pip install 'fflm[{extra}]'") from None
