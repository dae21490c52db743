"""`fflm bench`: speed and memory at every resolution, as tables."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from fflm.cli.app import DeviceOpt, PrecisionOpt, WeightsOpt, app, out_console

EXAMPLES = """
Examples:

  fflm bench

  fflm bench --sizes 1024,4096 --frames 0 --json > bench.json

  fflm bench --no-flip --no-dlib                  the faster setting
"""


@app.command(epilog=EXAMPLES)
def bench(
    weights: Path = WeightsOpt,
    device=DeviceOpt,
    sizes: str = typer.Option("512,1024,2048,4096,8192", "--sizes", help="Long sides of the test portraits."),
    repeat: int = typer.Option(5, "--repeat", min=1, help="Timed runs per figure (the median is shown)."),
    frames: int = typer.Option(200, "--frames", min=0, help="1080p frames for the batch test (0: skip)."),
    detector: str = typer.Option("builtin", "--detector", help="Face detector to time: builtin or none (whole image)."),
    dlib: bool = typer.Option(True, "--dlib/--no-dlib", help="Also time dlib on the same images when it is installed."),
    flip: bool = typer.Option(True, "--flip/--no-flip", help="Time the landmark stage with (the default) or without "
                              "its mirrored test-time pass."),
    precision=PrecisionOpt,
    workdir: Path = typer.Option(None, "--workdir", help="Keep the generated images here (default: a temp folder)."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
) -> int:
    """Time decoding, detection and landmarks on 512 px to 8K photos, peak memory, and batch throughput."""
    from fflm.bench import print_report, run_bench

    try:
        size_list = tuple(int(s) for s in sizes.split(",") if s.strip())
    except ValueError:
        from fflm.cli.app import usage

        raise usage(f"--sizes takes comma-separated pixel sizes, got {sizes!r}") from None
    if detector not in ("builtin", "none"):
        from fflm.cli.app import usage

        raise usage(f"--detector for bench is builtin or none, got {detector!r}")
    report = run_bench(str(weights) if weights else None, device.value, size_list, repeat, frames, detector, workdir,
                       dlib, flip, precision.value)
    if as_json:
        typer.echo(json.dumps(report, indent=1))
    else:
        print_report(report, out_console())
    return 0
