"""`fflm export`: the networks in a portable format."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from fflm.cli.app import DetectorChoice, DetectorModelOpt, DetectorOpt, WeightsOpt, app, message, usage

EXAMPLES = """
Examples:

  fflm export --format onnx model-onnx/

  fflm detect photo.jpg --backend onnxruntime --onnx-dir model-onnx/

  fflm export --format onnx onnx/ --detector yunet --detector-model face_detection_yunet_2023mar.onnx
"""


class ExportFormat(str, Enum):
    onnx = "onnx"


@app.command(epilog=EXAMPLES)
def export(
    out_dir: Path = typer.Argument(..., metavar="OUT_DIR", file_okay=False, show_default=False,
                                   help="Folder for the files (made if missing; files of an earlier export replaced)."),
    fmt: ExportFormat = typer.Option(..., "--format", "-f", metavar="FORMAT", case_sensitive=False, show_default=False,
                                     help="onnx: ONNX files (opset 18, dynamic batch) and fflm-onnx.json."),
    weights: Path = WeightsOpt,
    detector=DetectorOpt,
    detector_model: Path = DetectorModelOpt,
) -> int:
    """Write the detector, the global network and the stacked regional networks as ONNX, with a manifest of the
    scheme, the weights' sha256 and the constants of the steps around the networks (see docs/scale.md).

    The built-in detector is always exported (from --detector-model with --detector builtin); with --detector yunet
    (the default) the YuNet file (--detector-model, or the shipped one) is copied beside it, for --backend onnxruntime --detector yunet."""
    from fflm.export import export_onnx

    from fflm.weights import resolve

    if weights is not None and not resolve(weights).is_file():  # a file, or a shipped file's name
        raise usage(f"no such weights file: {weights}")
    if detector_model is not None and not detector_model.is_file():
        raise usage(f"no such file: {detector_model}")
    if detector == DetectorChoice.none and detector_model is not None:
        raise usage("--detector-model needs --detector builtin or yunet")
    if detector == DetectorChoice.yunet and detector_model is None:
        from fflm.detect.yunet import default_model

        detector_model = default_model()  # the shipped YuNet
    yunet = detector_model if detector == DetectorChoice.yunet else None
    builtin = detector_model if detector == DetectorChoice.builtin else None
    manifest = export_onnx(out_dir, weights, builtin, yunet)
    message(f"fflm: wrote {', '.join(sorted(p.name for p in manifest.parent.glob('*.onnx')))} and {manifest.name} "
            f"to {out_dir}")
    return 0
