"""The names the library accepts where it offers a choice, and the defaults its help shows: one source for the
library and the command line (whose option types are generated from these tuples by `choice`). Nothing here
imports torch or OpenCV, so that `fflm --help` stays fast."""

from __future__ import annotations

import json
import struct
from enum import Enum
from importlib.resources import files

FORMATS = ("json", "jsonl", "csv", "parquet", "pts")  # result formats (fflm.outputs, fflm.parquet)
DEVICES = ("auto", "cpu", "cuda")  # fflm.pipeline.pick_device
PRECISIONS = ("auto", "float32", "bfloat16")  # fflm.inference.compute_dtype
BACKENDS = ("torch", "onnxruntime", "openvino")  # where the networks run (fflm.pipeline.Landmarker, fflm.backends)
ENGINES = ("local", "ray")  # fflm batch --engine (fflm.runner, fflm.distributed)
DETECTORS = ("yunet", "builtin", "none")  # fflm.detect.make_detector (the default first)
ROTATIONS = ("auto", "none", "all")  # fflm.detect.rotations
LOSSES = ("l2", "l1", "wing", "ion")  # fflm.train.losses
VARIANTS = ("regular", "light")  # fflm.model.config.preset

YUNET_THRESHOLD = 0.6  # YuNet's face score threshold, chosen with MIN_FACE on scene photos (docs/detector.md)
MIN_FACE = 20.0  # px (square root of the box area): smaller faces get no landmarks; 68 points on them mean nothing
DETECT_EVERY = 8  # video tracking: frames between detections (fflm.tracking)
BUILTIN_THRESHOLD = 0.5  # the built-in detector's threshold when its file names none


def choice(name: str, values: tuple[str, ...]) -> type[Enum]:
    """A str Enum whose members are `values` (what Typer turns into a choice option)."""
    return Enum(name, [(v, v) for v in values], type=str)


def shipped_detector_threshold() -> float:
    """The face score threshold stored with the shipped detector (its safetensors header is JSON after an 8-byte
    length, read here without torch)."""
    try:
        with (files("fflm") / "assets" / "fflm-detector.safetensors").open("rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            config = json.loads(json.loads(f.read(size))["__metadata__"]["config"])
        return float(config.get("extra", {}).get("threshold", BUILTIN_THRESHOLD))
    except (OSError, ValueError, KeyError, struct.error):
        return BUILTIN_THRESHOLD
