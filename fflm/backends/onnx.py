"""The networks from an ONNX export: a Landmarker whose detector, global and regional networks run from the files
`fflm export --format onnx` wrote (fflm.export) in ONNX Runtime (here) or OpenVINO (fflm.backends.openvino),
the rest of the pipeline unchanged.

The files are refused unless their manifest names the very weights (sha256) and scheme the Landmarker loaded,
and, for the built-in detector, the same detector file.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fflm.backends import require
from fflm.errors import WeightsError
from fflm.export import FORMAT, MANIFEST


class OnnxMismatch(WeightsError):
    """An ONNX folder that is missing, unreadable or made from other weights than the ones in use."""


def read_manifest(onnx_dir: str | Path) -> dict:
    """The manifest of an export folder, checked for its format."""
    path = Path(onnx_dir) / MANIFEST
    if not path.is_file():
        raise OnnxMismatch(f"{onnx_dir}: no {MANIFEST} (write one with 'fflm export --format onnx {onnx_dir}')")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise OnnxMismatch(f"{path}: not readable JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise OnnxMismatch(f"{path}: not an fflm ONNX manifest (format {manifest.get('format')!r})")
    return manifest


def check_manifest(manifest: dict, onnx_dir: str | Path, weights: Path, scheme: dict) -> None:
    """OnnxMismatch unless the export came from `weights` (by sha256) with `scheme`."""
    from fflm.weights import file_sha256

    if manifest.get("scheme") != scheme:
        theirs = manifest.get("scheme", {}).get("name")
        raise OnnxMismatch(f"{onnx_dir} holds networks of the landmark scheme {theirs!r}, not that of {weights.name} "
                           f"({scheme.get('name')!r}): export these weights again")
    sha = manifest.get("weights", {}).get("sha256")
    if sha != file_sha256(weights):
        raise OnnxMismatch(f"{onnx_dir} was exported from other weights ({manifest.get('weights', {}).get('source')}, "
                           f"sha256 {str(sha)[:12]}…) than {weights.name}: export these weights again")


class Sessions:
    """ONNX Runtime sessions of one ONNX file, one per thread count, each made on first use.

    A session's thread count is fixed when it is made, while torch's is set per calling thread (the batch runner
    shares the threads out among its workers): each call takes the session of its thread's count. The threads do
    not spin between runs, so torch's operators, which run between them, get the cores."""

    def __init__(self, path: Path) -> None:
        self.ort = require("onnxruntime", "onnx", "the onnxruntime backend")
        self.path = path
        self._made: dict[int, object] = {}
        self._lock = threading.Lock()

    def get(self, threads: int | None = None):  # noqa: ANN201 (an onnxruntime.InferenceSession)
        """The session for `threads` (default: torch's count in this thread)."""
        n = max(1, threads or torch.get_num_threads())
        with self._lock:
            session = self._made.get(n)
            if session is None:
                options = self.ort.SessionOptions()
                options.intra_op_num_threads = n
                options.inter_op_num_threads = 1
                options.log_severity_level = 3
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                session = self._made[n] = self.ort.InferenceSession(str(self.path), options,
                                                                    providers=["CPUExecutionProvider"])
            return session


Runner = Callable[[np.ndarray], list[np.ndarray]]  # float32 input array -> the network's output arrays


def ort_runner(path: Path, threads: int | None = None) -> Runner:
    """ONNX Runtime running the file at `path` (`threads`: its threads, default torch's in the calling thread)."""
    sessions = Sessions(path)
    name = sessions.get(threads).get_inputs()[0].name
    return lambda a: sessions.get(threads).run(None, {name: a})


class ExportedNet(nn.Module):
    """An exported network run by another runtime in place of a torch network: float32 tensors in, the list of
    outputs out."""

    def __init__(self, run: Runner, stride: int = 1) -> None:
        super().__init__()
        self.run, self.stride = run, stride

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        a = np.ascontiguousarray(x.detach().float().cpu().numpy())
        return [torch.from_numpy(o) for o in self.run(a)]

    def run_normalised(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The detector's map network's entry point (fflm.detect.run.infer)."""
        return self.forward(x)


class _Verifier(ExportedNet):
    """The detector's crop classifier: one [K, 5] output."""

    def __init__(self, run: Runner, config) -> None:  # noqa: ANN001
        super().__init__(run)
        self.config = config

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x)[0]


class _Detector:
    """What fflm.detect.run.infer asks of a detector network: `config`, `run_normalised`, `verifier`."""

    def __init__(self, config, maps: ExportedNet, verifier: _Verifier | None) -> None:  # noqa: ANN001
        self.config, self.run_normalised, self.verifier = config, maps.run_normalised, verifier


def use_exported(landmarker, onnx_dir: str | Path, runner: Callable[[Path], Runner]) -> None:  # noqa: ANN001
    """Swap the Landmarker's networks (and its built-in detector's) for the ONNX files of `onnx_dir`, each run by
    `runner(path)`, after checking that they were exported from its weights."""
    from fflm.detect.builtin import BuiltinDetector
    from fflm.weights import file_sha256

    onnx_dir = Path(onnx_dir)
    manifest = read_manifest(onnx_dir)
    check_manifest(manifest, onnx_dir, landmarker.weights_path, landmarker.scheme.to_dict())

    def net(name: str, cls=ExportedNet, *args) -> nn.Module:  # noqa: ANN001
        path = onnx_dir / name
        if not path.is_file():
            raise OnnxMismatch(f"{path}: missing from the ONNX folder")
        return cls(runner(path), *args)

    model = landmarker.model
    stages = manifest["regional"]["stages"]
    if len(stages) != len(model.stacked_regions):
        raise OnnxMismatch(f"{onnx_dir}: {len(stages)} regional stages, the weights have {len(model.stacked_regions)}")
    model.global_net = net(manifest["global"]["file"], ExportedNet, model.global_net.stride)
    model.stacked_regions = nn.ModuleList(net(s["file"]) for s in stages)
    det = landmarker.detector
    if isinstance(det, BuiltinDetector):
        d = manifest.get("detector", {})
        if d.get("sha256") != file_sha256(det.model_path):
            raise OnnxMismatch(f"{onnx_dir} holds another detector ({d.get('source')}) than {det.model_path.name}: "
                               "export with this --detector-model")
        verifier = None
        if det.model.verifier is not None:
            verifier = net(d["verifier"]["file"], _Verifier, det.model.verifier.config)
        det.model = _Detector(det.model.config, net(d["file"]), verifier)


def use_onnxruntime(landmarker, onnx_dir: str | Path, threads: int | None = None) -> None:  # noqa: ANN001
    """The Landmarker's networks from the ONNX files of `onnx_dir` in ONNX Runtime (float32; `threads`: its
    threads per network, default torch's)."""
    require("onnxruntime", "onnx", "the onnxruntime backend")
    use_exported(landmarker, onnx_dir, lambda path: ort_runner(path, threads))


def yunet_model(onnx_dir: str | Path) -> Path | None:
    """The YuNet model an export folder holds, if any."""
    entry = read_manifest(onnx_dir).get("yunet")
    return None if entry is None else Path(onnx_dir) / entry["file"]
