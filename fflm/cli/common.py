"""What detect, batch and eval share: the Landmarker's options as one object (and the decorator that gives a
command those options), the face-box source, stop signals and --threads."""

from __future__ import annotations

import functools
import inspect
import typing
from dataclasses import dataclass
from pathlib import Path

from fflm.cli.app import (Backend, BackendOpt, DetectorChoice, DetectorModelOpt, DetectorOpt, DetectorThresholdOpt,
                          Device, DeviceOpt, FastOpt, FlipOpt, MaxFacesOpt, MinFaceOpt, OnnxDirOpt, Precision,
                          PrecisionOpt, Rotations, RotationsOpt, ShapePriorOpt, ThreadsOpt, TilesOpt, WeightsOpt, message,
                          usage)


@dataclass
class LandmarkerOptions:
    """The options from which `detect`, `batch` and `eval` build their Landmarker, as given (enums as their names)."""

    weights: Path | None = None
    device: str = "auto"
    detector: str = "yunet"
    detector_model: Path | None = None
    tiles: str = "auto"
    rotations: str = "auto"
    max_faces: int | None = None
    min_face_size: float | None = None
    flip: bool | None = None
    fast: bool = False
    detector_threshold: float | None = None
    shape_prior: bool = True
    precision: str = "auto"
    threads: int = 0
    backend: str = "torch"
    onnx_dir: Path | None = None

    def landmarker(self, with_detector: bool = True):  # noqa: ANN201
        """The Landmarker, after setting --threads; `with_detector` False: the Landmarker's default detector, unused
        (eval on given boxes). A missing or unusable detector model raises DetectorModelError, ONNX files exported
        from other weights OnnxMismatch (exit 1)."""
        from fflm.pipeline import Landmarker, pick_device
        from fflm.weights import resolve

        if self.weights is not None and not resolve(self.weights).exists():
            raise usage(f"no such weights file: {self.weights}")
        if self.detector_threshold is not None and not 0.0 <= self.detector_threshold <= 1.0:
            raise usage(f"--detector-threshold is a score from 0 to 1, got {self.detector_threshold:g}")
        try:
            pick_device(self.device)
        except ValueError as e:
            raise usage(str(e)) from None
        set_threads(self.threads)
        detector_model = self._backend()
        common = dict(device=self.device, flip=self.flip, shape_prior=self.shape_prior, precision=self.precision,
                      backend=self.backend, onnx_dir=self.onnx_dir, preset="fast" if self.fast else "default")
        if not with_detector:
            return Landmarker(self.weights, **common)
        from fflm.detect import make_detector
        from fflm.detect.builtin import parse_tiles

        try:
            tiles = parse_tiles(self.tiles)
        except ValueError as e:
            raise usage(str(e)) from None
        if self.detector == "none" and (self.detector_model is not None or self.detector_threshold is not None):
            raise usage("--detector-model and --detector-threshold need --detector builtin or yunet")
        extra = {} if self.detector_threshold is None else {"threshold": self.detector_threshold}
        det = make_detector(self.detector, detector_model, tiles=tiles, max_faces=self.max_faces,
                            min_face_size=self.min_face_size, rotations=self.rotations, **extra)
        return Landmarker(self.weights, detector=det, **common)

    def _backend(self) -> Path | None:
        """Usage errors of --backend and --onnx-dir; the detector model to use (an export's copy of YuNet for
        --detector yunet without --detector-model)."""
        if (self.backend != "torch") != (self.onnx_dir is not None):
            raise usage("--backend onnxruntime or openvino and --onnx-dir DIR go together")
        if self.onnx_dir is None:
            return self.detector_model
        if not self.onnx_dir.is_dir():
            raise usage(f"no such folder: {self.onnx_dir}")
        if self.device == "cuda":
            raise usage(f"--backend {self.backend} runs on the CPU (leave --device at auto)")
        from fflm.backends import require

        if self.backend == "onnxruntime":
            if self.precision == "bfloat16":
                raise usage("--backend onnxruntime runs in float32 (leave --precision at auto)")
            require("onnxruntime", "onnx", "--backend onnxruntime")
            self.precision = "float32"
        else:
            require("openvino", "openvino", "--backend openvino")
        self.device = "cpu"
        if self.detector == "yunet" and self.detector_model is None:
            from fflm.backends.onnx import yunet_model

            return yunet_model(self.onnx_dir)
        return self.detector_model


#: each LandmarkerOptions field as a command-line option: its type and its typer.Option
OPTIONS = {
    "weights": (Path, WeightsOpt), "device": (Device, DeviceOpt), "detector": (DetectorChoice, DetectorOpt),
    "detector_model": (Path, DetectorModelOpt), "tiles": (str, TilesOpt), "rotations": (Rotations, RotationsOpt), "max_faces": (int, MaxFacesOpt),
    "min_face_size": (float, MinFaceOpt), "flip": (bool, FlipOpt), "fast": (bool, FastOpt), "detector_threshold": (float, DetectorThresholdOpt),
    "shape_prior": (bool, ShapePriorOpt), "precision": (Precision, PrecisionOpt), "threads": (int, ThreadsOpt),
    "backend": (Backend, BackendOpt), "onnx_dir": (Path, OnnxDirOpt),
}
#: what detect and batch take
DETECTION = ("weights", "device", "detector", "detector_model", "tiles", "rotations", "max_faces", "min_face_size", "flip", "fast",
             "detector_threshold", "precision", "backend", "onnx_dir", "threads")


def landmarker_options(*names: str):  # noqa: ANN201
    """Decorator: the command takes the options `names` (keys of OPTIONS) where its parameter `opts` stands, and
    is called with them as one LandmarkerOptions in `opts`."""
    def decorate(fn):  # noqa: ANN001,ANN202
        hints = typing.get_type_hints(fn)
        params = []
        for p in inspect.signature(fn).parameters.values():
            if p.name == "opts":
                params += [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=OPTIONS[n][1],
                                             annotation=OPTIONS[n][0]) for n in names]
            else:
                params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints.get(p.name, p.annotation)))

        @functools.wraps(fn)
        def command(**kwargs):  # noqa: ANN003,ANN202
            given = {n: kwargs.pop(n) for n in names}
            return fn(**kwargs, opts=LandmarkerOptions(**{n: getattr(v, "value", v) for n, v in given.items()}))

        command.__signature__ = inspect.Signature(params, return_annotation=hints.get("return", inspect.Signature.empty))
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return decorate


def boxes_source(boxes: Path | None, detector: str | None) -> dict | None:
    """The boxes file's contents, or None (the detector decides), saying what the detector will do."""
    from fflm.detect.boxes_file import BoxesFileError, load_boxes_file

    if boxes is None:
        if detector == "none":
            message("fflm: no face boxes given: each whole image is treated as one face (use --boxes for face boxes)")
        return None
    if not boxes.exists():
        raise usage(f"no such boxes file: {boxes}")
    try:
        return load_boxes_file(boxes)
    except BoxesFileError as e:
        raise usage(str(e)) from None


class Stopped(Exception):
    """The run was stopped by SIGINT or SIGTERM (raised in the main thread, between two results)."""


class StopSignals:
    """`with StopSignals() as stop:` SIGINT and SIGTERM raise Stopped once, so the command can keep what finished,
    close its outputs and say so; later signals are ignored until the block ends (closing is not cut short).
    `stop.name` is the signal's name (None: not stopped), `stop.code` the exit code, 128 + its number."""

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self) -> None:
        self.name: str | None = None
        self.code = 0
        self.old: dict = {}

    def __enter__(self) -> "StopSignals":
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            self.old = {s: signal.signal(getattr(signal, s), self._stop) for s in self.SIGNALS}
        return self

    def _stop(self, signum: int, frame) -> None:  # noqa: ANN001
        import signal

        if self.name is None:
            self.name, self.code = signal.Signals(signum).name, 128 + signum
            raise Stopped(self.name)

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        import signal

        for s, handler in self.old.items():
            signal.signal(getattr(signal, s), handler)


def set_threads(threads: int) -> None:
    """`--threads N`: torch's CPU threads for this run (0: torch's default)."""
    if threads:
        import torch

        torch.set_num_threads(threads)
