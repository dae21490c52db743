"""The Typer application object and the options several commands share."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer
from rich.console import Console

app = typer.Typer(
    name="fflm",
    help="Precise facial landmarks on photos of any resolution, from web images to 12K studio frames.",
    rich_markup_mode="rich",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

#: messages, progress and tables go to stderr; stdout carries only data
err = Console(stderr=True, highlight=False)


def out_console() -> Console:
    """The console for tables that are a command's output (stdout): a terminal's own width, else 160 columns
    so that a table piped to a file is not cut to Rich's default 80."""
    import sys

    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


class Format(str, Enum):
    json = "json"
    jsonl = "jsonl"
    csv = "csv"
    pts = "pts"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Precision(str, Enum):
    auto = "auto"
    float32 = "float32"
    bfloat16 = "bfloat16"


class DetectorChoice(str, Enum):
    builtin = "builtin"
    yunet = "yunet"
    none = "none"


WeightsOpt = typer.Option(None, "--weights", "-w", help="Landmark weights (.safetensors); default: the shipped 68-point model.",
                          dir_okay=False)
DeviceOpt = typer.Option(Device.auto, "--device", help="auto = CUDA when available, else CPU.", case_sensitive=False)
PrecisionOpt = typer.Option(Precision.auto, "--precision", help="Landmark networks' arithmetic: auto = bfloat16 where "
                            "the CPU (AVX512-BF16, AMX) or GPU computes it natively, else float32.", case_sensitive=False)
BoxesOpt = typer.Option(None, "--boxes", help="JSON object: image file name -> list of face boxes (x0, y0, x1, y1).",
                        dir_okay=False)
DetectorOpt = typer.Option(DetectorChoice.builtin, "--detector",
                           help="Face detector: builtin (fflm's own), yunet (needs --detector-model FILE.onnx), "
                                "none = the whole image is the face.", case_sensitive=False)
DetectorModelOpt = typer.Option(None, "--detector-model", help="Detector model file: a YuNet .onnx for --detector yunet, "
                                "or another fflm detector .safetensors for builtin.", dir_okay=False)
TilesOpt = typer.Option("auto", "--tiles", help="Tiled detection for big photos: auto (when the photo is much larger "
                        "than the detector's 640 px proxy and faces may be small), off, or N tiles along the long side.")
MaxFacesOpt = typer.Option(None, "--max-faces", min=1, help="Keep at most N faces per image (best scores first).")
DetectorThresholdOpt = typer.Option(None, "--detector-threshold", min=0.0, max=1.0,
                                    help="Face score threshold (default: the detector's own, 0.55 for builtin, 0.6 "
                                    "for yunet); lower finds more faces, with more false ones.")
FlipOpt = typer.Option(True, "--flip/--no-flip", help="Also run both stages on the mirrored face and its mirrored "
                       "crops and average (test-time augmentation): more accurate; --no-flip makes the landmark stage ~25 % faster.")
MinFaceOpt = typer.Option(0.0, "--min-face-size", min=0.0, help="Ignore faces smaller than PX pixels (square root of the "
                          "box area, original pixels); also steers --tiles auto.")


def usage(message: str) -> Exception:
    """A usage error (exit code 2)."""
    from fflm.cli.clickcompat import exceptions, get_current_context

    return exceptions.UsageError(message, ctx=get_current_context(silent=True))


def existing(paths: list[Path]) -> None:
    """Usage error for the first missing path."""
    for p in paths:
        if not p.exists():
            raise usage(f"no such file or directory: {p}")


def message(text: str) -> None:
    err.print(text, markup=False, soft_wrap=True)
