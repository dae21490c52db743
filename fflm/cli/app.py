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


class Format(str, Enum):
    json = "json"
    jsonl = "jsonl"
    csv = "csv"
    pts = "pts"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class DetectorChoice(str, Enum):
    none = "none"


WeightsOpt = typer.Option(None, "--weights", "-w", help="Landmark weights (.safetensors); default: the shipped 68-point model.",
                          dir_okay=False)
DeviceOpt = typer.Option(Device.auto, "--device", help="auto = CUDA when available, else CPU.", case_sensitive=False)
BoxesOpt = typer.Option(None, "--boxes", help="JSON object: image file name -> list of face boxes (x0, y0, x1, y1).",
                        dir_okay=False)
DetectorOpt = typer.Option(DetectorChoice.none, "--detector", help="Face detector: none = the whole image is the face.",
                           case_sensitive=False)


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
