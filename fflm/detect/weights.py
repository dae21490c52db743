"""Detector weights files: safetensors with the network configuration and metadata as JSON in the header
(the same layout as fflm.weights uses for landmark models, with its own format tag)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from fflm.detect.model import DetectorConfig, FaceNet
from fflm.fileio import atomic_write

FORMAT = "fflm-detector/1"
DEFAULT_NAME = "fflm-detector.safetensors"


class DetectorModelError(Exception):
    """A missing, corrupt or mismatched detector model file."""


def _default() -> Path:
    here = Path(__file__).resolve().parents[2] / "weights" / DEFAULT_NAME
    installed = Path(sys.prefix) / "share" / "fflm" / "weights" / DEFAULT_NAME
    return here if here.exists() or not installed.exists() else installed


DEFAULT_DETECTOR = _default()


def save_detector(path: str | Path, model: FaceNet, metadata: dict | None = None) -> None:
    """Write tensors (fp32), configuration and metadata atomically."""
    path = Path(path)
    state = {k: v.detach().contiguous().cpu().float() for k, v in model.state_dict().items()
             if v.dtype.is_floating_point}
    header = {"format": FORMAT, "config": model.config.to_json(), "metadata": json.dumps(metadata or {}, sort_keys=True)}
    atomic_write(path, save(state, metadata=header))


def load_detector(path: str | Path | None = None) -> tuple[FaceNet, dict]:
    """The network a detector file describes, in eval mode, and its metadata."""
    from safetensors import safe_open

    path = Path(path or DEFAULT_DETECTOR)
    if not path.is_file():
        raise DetectorModelError(f"detector model not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        if header.get("format") != FORMAT:
            raise DetectorModelError(f"{path}: not an fflm detector file (format {header.get('format')!r})")
        model = FaceNet(DetectorConfig.from_json(header["config"]))
        state = load_file(str(path), device="cpu")
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or any(not k.endswith("num_batches_tracked") for k in missing):
            raise RuntimeError(f"missing {missing[:3]}, unexpected {unexpected[:3]}")
    except DetectorModelError:
        raise
    except (SafetensorError, OSError, ValueError, KeyError, TypeError, RuntimeError) as e:
        raise DetectorModelError(f"{path}: not a usable detector model ({str(e).splitlines()[0]})") from None
    return model.eval(), json.loads(header.get("metadata", "{}"))


def describe_detector(path: str | Path) -> dict:
    """A summary of a detector file for `fflm info`: file, network, decoding defaults and training metadata."""
    from fflm.weights import file_sha256

    path = Path(path)
    model, metadata = load_detector(path)
    c, extra = model.config, model.config.extra
    return {
        "file": {"path": str(path), "bytes": path.stat().st_size, "sha256": file_sha256(path)},
        "detector": {
            "parameters": sum(p.numel() for p in model.parameters()),  # both stages
            "widths": list(c.widths), "fpn": c.fpn, "strides": list(c.strides), "proxy": c.proxy,
            "threshold": extra.get("threshold", 0.5),
            "landmark_box": extra.get("landmark_box", "not measured (frames from the box itself)"),
            "verifier": (f"crop classifier, {sum(p.numel() for p in model.verifier.parameters())} parameters: "
                         + json.dumps(c.verifier, sort_keys=True)) if model.verifier is not None else "none",
        },
        "training": metadata,
    }


__all__ = ["DetectorModelError", "DEFAULT_DETECTOR", "save_detector", "load_detector", "describe_detector", "torch"]
