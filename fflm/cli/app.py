"""The Typer application object and the options several commands share."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import typer
from rich.console import Console
from typer.core import TyperCommand

from fflm.choices import (BACKENDS, DETECTORS, DEVICES, FORMATS, MIN_FACE, PRECISIONS, ROTATIONS, YUNET_THRESHOLD, choice,
                          shipped_detector_threshold)


def _one_line_paragraphs(text: str | None) -> str | None:
    """Help text whose paragraphs are each one line, so the terminal wraps them, not the source's line breaks."""
    if not text:
        return text
    return "\n\n".join(re.sub(r"\s*\n\s*", " ", p.strip()) for p in inspect.cleandoc(text).split("\n\n"))


class Command(TyperCommand):
    """fflm's commands: help paragraphs reflowed to the terminal, and flags shown without a `<bool>` type."""

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002,ANN003
        kwargs["help"] = _one_line_paragraphs(kwargs.get("help"))
        super().__init__(*args, **kwargs)

    def get_params(self, ctx):  # noqa: ANN001,ANN201
        params = super().get_params(ctx)
        for p in params:
            if getattr(p, "is_flag", False) and p.metavar is None:
                p.metavar = ""
            if p.param_type_name == "argument":  # its name (IMAGE..., SOURCE) says it; no `<list[Path]>`
                p.display_type_rich = lambda ctx: None
            if getattr(p, "help", None):
                p.help = _one_line_paragraphs(p.help)
        return params


class App(typer.Typer):
    """The Typer application whose commands are `Command`s."""

    def command(self, *args, cls=None, **kwargs):  # noqa: ANN001,ANN002,ANN003,ANN201
        return super().command(*args, cls=cls or Command, **kwargs)


app = App(
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


Format = choice("Format", FORMATS)
Device = choice("Device", DEVICES)
Precision = choice("Precision", PRECISIONS)
DetectorChoice = choice("DetectorChoice", DETECTORS)
Rotations = choice("Rotations", ROTATIONS)
Backend = choice("Backend", BACKENDS)


WeightsOpt = typer.Option(None, "--weights", "-w", metavar="FILE", dir_okay=False,
                          help="Landmark weights (.safetensors), or a shipped model by name: 300w-68 (the "
                          "default, 68 points) or 300w-68-stacks2 (heavier, more accurate).")
DeviceOpt = typer.Option(Device.auto, "--device", metavar="DEVICE", case_sensitive=False,
                         help="auto, cpu or cuda; auto = CUDA when available, else CPU.")
PrecisionOpt = typer.Option(Precision.auto, "--precision", metavar="TYPE", case_sensitive=False,
                            help="Landmark networks' arithmetic: auto, float32 or bfloat16; auto = bfloat16 where "
                            "the CPU (AVX512-BF16, AMX) or GPU computes it natively, else float32.")
BoxesOpt = typer.Option(None, "--boxes", metavar="FILE", dir_okay=False,
                        help="JSON object: image file name -> list of face boxes (x0, y0, x1, y1).")
DetectorOpt = typer.Option(DetectorChoice.yunet, "--detector", metavar="NAME", case_sensitive=False,
                           help="Face detector: yunet (YuNet, shipped), builtin (fflm's own; better for small faces "
                                "in very big photos with --tiles), "
                                "none = the whole image is the face.")
DetectorModelOpt = typer.Option(None, "--detector-model", metavar="FILE", dir_okay=False,
                                help="Detector model file: another YuNet .onnx for yunet, or another fflm "
                                "detector .safetensors for builtin.")
TilesOpt = typer.Option("auto", "--tiles", metavar="N", help="Tiled detection for big photos: auto (when the photo "
                        "is much larger than the detector's 640 px proxy and faces may be small), off, or N tiles "
                        "along the long side.")
MaxFacesOpt = typer.Option(None, "--max-faces", min=1, metavar="N", help="Keep at most N faces per image (best "
                           "scores first).")
DetectorThresholdOpt = typer.Option(None, "--detector-threshold", metavar="X",
                                    help="Face score threshold from 0 to 1 (default: the detector's own, "
                                    f"{YUNET_THRESHOLD:g} for yunet, {shipped_detector_threshold():g} for builtin); "
                                    "lower finds more faces, with more false ones.")
RotationsOpt = typer.Option(Rotations.auto, "--rotations", metavar="MODE", case_sensitive=False,
                            help="Photos turned by 90°, 180° or 270° without an EXIF tag: auto (look at the turned "
                            "photo when no face is sure), all (every quarter turn, merged) or none.")
FlipOpt = typer.Option(None, "--flip/--no-flip", show_default=False, help="Also run both stages on the mirrored "
                       "face and its mirrored crops and average (test-time augmentation): more accurate; --no-flip "
                       "makes the landmark stage ~25 % faster. Default: on, off with --fast.")
FastOpt = typer.Option(False, "--fast", help="The fast preset: lighter weights (a 192 px proxy and 96 px crops, "
                       "distilled from the default file) without the mirrored passes; less accurate (see the "
                       "model card).")
MinFaceOpt = typer.Option(None, "--min-face-size", min=0.0, metavar="PX", show_default=False,
                          help=f"Ignore faces smaller than PX pixels (square root of the box area, original pixels; "
                          f"default {MIN_FACE:g}); a size given also steers --tiles auto.")
OutOpt = typer.Option(None, "--out", "-o", metavar="PATH", help="Output file (a folder for --format pts); "
                      "default or -: stdout.")
FormatOpt = typer.Option(None, "--format", "-f", metavar="FORMAT", case_sensitive=False, show_default=False,
                         help="json, jsonl, csv, parquet (a file; the fflm[parquet] extra) or pts (one 300-W file per "
                         "face); default: by --out's extension (.jsonl, .csv, .parquet), else json.")
BackendOpt = typer.Option(Backend.torch, "--backend", metavar="NAME", case_sensitive=False,
                          help="Where the networks run: torch, onnxruntime (float32 on the CPU; the fflm[onnx] "
                          "extra) or openvino (the CPU, --precision as for torch; the fflm[openvino] extra); the "
                          "last two need --onnx-dir.")
OnnxDirOpt = typer.Option(None, "--onnx-dir", metavar="DIR", file_okay=False, help="For --backend onnxruntime or "
                          "openvino: the folder 'fflm export --format onnx' wrote from the same --weights.")
ThreadsOpt = typer.Option(0, "--threads", min=0, metavar="N", help="Torch CPU threads (0: torch's default).")
ShapePriorOpt = typer.Option(True, "--shape-prior/--no-shape-prior", help="Use the weights' shape model (when they "
                             "have one) on the points no region refines, as detect does.")


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
