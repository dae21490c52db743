"""What detect and batch share: building the Landmarker from options and the face-box source."""

from __future__ import annotations

from pathlib import Path

from fflm.cli.app import Device, DetectorChoice, Precision, message, usage


def make_landmarker(weights: Path | None, device: Device, detector: DetectorChoice | None,
                    detector_model: Path | None = None, tiles: str = "auto", max_faces: int | None = None,
                    min_face_size: float = 0.0, flip: bool = True, detector_threshold: float | None = None,
                    shape_prior: bool = True, precision: Precision = Precision.auto, rotations: str = "auto"):
    """The Landmarker with the chosen detector (None: the Landmarker's default, yunet). A missing or unusable
    detector model raises DetectorModelError (exit 1)."""
    from fflm.pipeline import Landmarker

    from fflm.weights import resolve

    if weights is not None and not resolve(weights).exists():
        raise usage(f"no such weights file: {weights}")
    if detector_threshold is not None and not 0.0 <= detector_threshold <= 1.0:
        raise usage(f"--detector-threshold is a score from 0 to 1, got {detector_threshold:g}")
    try:
        from fflm.pipeline import pick_device

        pick_device(device.value)
    except ValueError as e:
        raise usage(str(e)) from None
    if detector is None:
        return Landmarker(weights, device=device.value, flip=flip, shape_prior=shape_prior, precision=precision.value)
    from fflm.detect import make_detector
    from fflm.detect.builtin import parse_tiles

    try:
        tiles = parse_tiles(tiles)
    except ValueError as e:
        raise usage(str(e)) from None
    if detector == DetectorChoice.none and (detector_model is not None or detector_threshold is not None):
        raise usage("--detector-model and --detector-threshold need --detector builtin or yunet")
    extra = {} if detector_threshold is None else {"threshold": detector_threshold}
    det = make_detector(detector.value, detector_model, tiles=tiles, max_faces=max_faces, min_face_size=min_face_size,
                        rotations=rotations, **extra)
    return Landmarker(weights, device=device.value, detector=det, flip=flip, shape_prior=shape_prior,
                      precision=precision.value)


def boxes_source(boxes: Path | None, detector: DetectorChoice | None) -> dict | None:
    """The boxes file's contents, or None (the detector decides), saying what the detector will do."""
    from fflm.detect.boxes_file import BoxesFileError, load_boxes_file

    if boxes is None:
        if detector == DetectorChoice.none:
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
