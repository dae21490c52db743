"""What detect and batch share: building the Landmarker from options and the face-box source."""

from __future__ import annotations

from pathlib import Path

from fflm.cli.app import Device, DetectorChoice, message, usage


def make_landmarker(weights: Path | None, device: Device, detector: DetectorChoice | None):
    from fflm.pipeline import Landmarker

    if weights is not None and not weights.exists():
        raise usage(f"no such weights file: {weights}")
    try:
        from fflm.pipeline import pick_device

        pick_device(device.value)
    except ValueError as e:
        raise usage(str(e)) from None
    return Landmarker(weights, device=device.value)


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
