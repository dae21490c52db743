"""The networks in OpenVINO (the `fflm[openvino]` extra): the files of an ONNX export folder (fflm.export) compiled
for the CPU, the rest of the pipeline unchanged (fflm.backends.onnx swaps them in).

OpenVINO fuses each convolution with its activation and runs a network in one call with little per-operator cost,
which is what these small networks pay most for in torch on a CPU (docs/benchmarks.md has the figures).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch

from fflm.backends import require
from fflm.backends.onnx import Runner, use_exported

_core = None
_core_lock = threading.Lock()


def core():  # noqa: ANN201 (an openvino.Core)
    """The process's one OpenVINO Core, made on first use."""
    global _core
    with _core_lock:
        if _core is None:
            _core = require("openvino", "openvino", "the openvino backend").Core()
        return _core


class Compiled:
    """One ONNX file compiled for the CPU, once per thread count (a compiled model's threads are fixed, while
    torch's are set per calling thread: the batch runner shares the cores out among its workers), with an infer
    request per calling thread (a request runs one inference at a time). `precision`: bfloat16 or float32."""

    def __init__(self, path: Path, precision: str) -> None:
        self.model = core().read_model(str(path))
        self.hint = {"bfloat16": "bf16", "float32": "f32"}[precision]
        self._compiled: dict[int, object] = {}
        self._lock = threading.Lock()
        self._requests = threading.local()

    def request(self, threads: int | None = None):  # noqa: ANN201 (an openvino.InferRequest)
        n = max(1, threads or torch.get_num_threads())
        requests = getattr(self._requests, "by_threads", None)
        if requests is None:
            requests = self._requests.by_threads = {}
        if n not in requests:
            with self._lock:
                compiled = self._compiled.get(n)
                if compiled is None:
                    # one stream of n threads, not pinned to cores: the batch runner's workers each have their own
                    compiled = self._compiled[n] = core().compile_model(self.model, "CPU", {
                        "INFERENCE_PRECISION_HINT": self.hint, "INFERENCE_NUM_THREADS": n, "NUM_STREAMS": 1,
                        "PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": False})
            requests[n] = compiled.create_infer_request()
        return requests[n]


def ov_runner(path: Path, precision: str, threads: int | None = None) -> Runner:
    """OpenVINO running the file at `path` in `precision` (`threads`: its threads, default torch's in the calling
    thread). Outputs are copied out of the request, whose buffers the next inference overwrites."""
    compiled = Compiled(path, precision)
    compiled.request(threads)  # compiled now: a file OpenVINO cannot read fails here, not on the first face
    return lambda a: [np.array(o) for o in compiled.request(threads).infer({0: a}).values()]


def use_openvino(landmarker, onnx_dir: str | Path, precision: str, threads: int | None = None) -> None:  # noqa: ANN001
    """The Landmarker's networks from the ONNX files of `onnx_dir` in OpenVINO, in `precision` (bfloat16 or
    float32; `threads`: its threads per network, default torch's)."""
    require("openvino", "openvino", "the openvino backend")
    use_exported(landmarker, onnx_dir, lambda path: ov_runner(path, precision, threads))
