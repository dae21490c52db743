"""Detector weights files: the layout of fflm.weights under the detector's own format tag."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file

from fflm.choices import BUILTIN_THRESHOLD
from fflm.detect.model import DetectorConfig, FaceNet
from fflm.errors import DetectorModelError
from fflm.weights import DEFAULT_DETECTOR, DETECTOR_FORMAT as FORMAT, file_summary, raw_header, resolve, save


def save_detector(path: str | Path, model: FaceNet, metadata: dict | None = None) -> None:
    """Write tensors (fp32), configuration and metadata atomically."""
    save(path, model, FORMAT, metadata, floats_only=True)


def load_detector(path: str | Path | None = None) -> tuple[FaceNet, dict]:
    """The network a detector file describes (a path or a shipped name; None: the shipped detector), in eval mode,
    and its metadata."""
    path = resolve(path, "detector")
    header = raw_header(path, DetectorModelError, "detector model")
    if header.get("format") != FORMAT:
        raise DetectorModelError(f"{path}: not an fflm detector file (format {header.get('format')!r})")
    try:
        model = FaceNet(DetectorConfig.from_json(header["config"]))
        state = load_file(str(path), device="cpu")
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or any(not k.endswith("num_batches_tracked") for k in missing):
            raise RuntimeError(f"missing {missing[:3]}, unexpected {unexpected[:3]}")
    except (SafetensorError, OSError, ValueError, KeyError, TypeError, RuntimeError) as e:
        raise DetectorModelError(f"{path}: not a usable detector model ({str(e).splitlines()[0]})") from None
    return model.eval(), json.loads(header.get("metadata", "{}"))


def describe_detector(path: str | Path) -> dict:
    """A summary of a detector file for `fflm info`: file, network, decoding defaults and training metadata."""
    model, metadata = load_detector(path)
    c, extra = model.config, model.config.extra
    return {
        "file": file_summary(resolve(path, "detector")),
        "detector": {
            "parameters": sum(p.numel() for p in model.parameters()),  # both stages
            "widths": list(c.widths), "fpn": c.fpn, "strides": list(c.strides), "proxy": c.proxy,
            "threshold": extra.get("threshold", BUILTIN_THRESHOLD),
            "landmark_box": extra.get("landmark_box", "not measured (frames from the box itself)"),
            "verifier": (f"crop classifier, {sum(p.numel() for p in model.verifier.parameters())} parameters: "
                         + json.dumps(c.verifier, sort_keys=True)) if model.verifier is not None else "none",
        },
        "training": metadata,
    }


__all__ = ["DetectorModelError", "DEFAULT_DETECTOR", "FORMAT", "save_detector", "load_detector", "describe_detector"]
