"""The networks in ONNX Runtime: a Landmarker whose detector, global and regional networks run from the files
`fflm export --format onnx` wrote (fflm.export), the rest of the pipeline unchanged.

The files are refused unless their manifest names the very weights (sha256) and scheme the Landmarker loaded,
and, for the built-in detector, the same detector file.
"""

from __future__ import annotations

import json
import threading
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


class OrtNet(nn.Module):
    """An ONNX file run by ONNX Runtime in place of a torch network: float32 tensors in, the list of outputs out.
    `threads`: ONNX Runtime's threads (default: torch's in the calling thread, as the network it replaces)."""

    def __init__(self, path: Path, threads: int | None = None, stride: int = 1) -> None:
        super().__init__()
        if not path.is_file():
            raise OnnxMismatch(f"{path}: missing from the ONNX folder")
        self.sessions = Sessions(path)
        self.threads = threads
        self.input = self.sessions.get(threads).get_inputs()[0].name
        self.stride = stride

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        a = np.ascontiguousarray(x.detach().float().cpu().numpy())
        return [torch.from_numpy(o) for o in self.sessions.get(self.threads).run(None, {self.input: a})]

    def run_normalised(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The detector's map network's entry point (fflm.detect.run.infer)."""
        return self.forward(x)


class _OrtVerifier(OrtNet):
    """The detector's crop classifier: one [K, 5] output."""

    def __init__(self, path: Path, threads: int | None, config) -> None:  # noqa: ANN001
        super().__init__(path, threads)
        self.config = config

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x)[0]


class _OrtDetector:
    """What fflm.detect.run.infer asks of a detector network: `config`, `run_normalised`, `verifier`."""

    def __init__(self, config, maps: OrtNet, verifier: _OrtVerifier | None) -> None:  # noqa: ANN001
        self.config, self.run_normalised, self.verifier = config, maps.run_normalised, verifier


def use_onnxruntime(landmarker, onnx_dir: str | Path, threads: int | None = None) -> None:  # noqa: ANN001
    """Swap the Landmarker's networks (and its built-in detector's) for the ONNX files of `onnx_dir`, after checking
    that they were exported from its weights. `threads`: ONNX Runtime's threads per network (default torch's)."""
    from fflm.detect.builtin import BuiltinDetector
    from fflm.weights import file_sha256

    require("onnxruntime", "onnx", "the onnxruntime backend")
    onnx_dir = Path(onnx_dir)
    manifest = read_manifest(onnx_dir)
    check_manifest(manifest, onnx_dir, landmarker.weights_path, landmarker.scheme.to_dict())
    model = landmarker.model
    stacked = model.stacked_regions
    stages = manifest["regional"]["stages"]
    if len(stages) != len(stacked):
        raise OnnxMismatch(f"{onnx_dir}: {len(stages)} regional stages, the weights have {len(stacked)}")
    model.global_net = OrtNet(onnx_dir / manifest["global"]["file"], threads, model.global_net.stride)
    model.stacked_regions = nn.ModuleList(OrtNet(onnx_dir / s["file"], threads) for s in stages)
    det = landmarker.detector
    if isinstance(det, BuiltinDetector):
        d = manifest.get("detector", {})
        if d.get("sha256") != file_sha256(det.model_path):
            raise OnnxMismatch(f"{onnx_dir} holds another detector ({d.get('source')}) than {det.model_path.name}: "
                               "export with this --detector-model")
        verifier = None
        if det.model.verifier is not None:
            verifier = _OrtVerifier(onnx_dir / d["verifier"]["file"], threads, det.model.verifier.config)
        det.model = _OrtDetector(det.model.config, OrtNet(onnx_dir / d["file"], threads), verifier)


def yunet_model(onnx_dir: str | Path) -> Path | None:
    """The YuNet model an export folder holds, if any."""
    entry = read_manifest(onnx_dir).get("yunet")
    return None if entry is None else Path(onnx_dir) / entry["file"]
