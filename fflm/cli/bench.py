"""`fflm bench`: speed and memory at every resolution, as tables."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from fflm.cli.app import DeviceOpt, PrecisionOpt, WeightsOpt, app, message, out_console

EXAMPLES = """
Examples:

  fflm bench

  fflm bench --sizes 1024,4096 --frames 0 --json > bench.json

  fflm bench --no-flip --no-dlib                  the faster setting

  fflm bench --record benchmarks/results          keep the figures, dated, for the docs tables
"""


def machine() -> tuple[str, str]:
    """This machine in words and as a file-name slug, e.g. ("2-core AMD EPYC 7B13, no GPU, torch 2.13.0+cpu",
    "amd-epyc-7b13-2cpu")."""
    import os
    import platform
    import re

    import torch

    cpuinfo = Path("/proc/cpuinfo")
    names = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.M) if cpuinfo.exists() else []
    cpu = names[0].strip() if names else (platform.processor() or platform.machine())
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    words = [w for w in re.findall(r"[a-z0-9]+", cpu.lower()) if w not in ("r", "tm", "processor", "cpu", "with")]
    slug = "-".join(words[:3] + [f"{os.cpu_count()}cpu"] + (re.findall(r"[a-z0-9]+", gpu.lower())[-1:] if gpu else []))
    return f"{os.cpu_count()}-core {cpu}, {gpu or 'no GPU'}, torch {torch.__version__}", slug


def record(report: dict, folder: Path, command: str, kind: str = "") -> Path:
    """Write the figures with their command, date (UTC) and machine to folder/<date>-<machine>[-<kind>].json (-2,
    -3, ... when that name is taken) for benchmarks/tables.py; returns the path."""
    from datetime import datetime, timezone

    from fflm.fileio import atomic_write

    words, slug = machine()
    date = datetime.now(timezone.utc).date().isoformat()
    stem = f"{date}-{slug}" + (f"-{kind}" if kind else "")
    path, n = folder / f"{stem}.json", 1
    while path.exists():
        n += 1
        path = folder / f"{stem}-{n}.json"
    atomic_write(path, json.dumps({"command": command, "date": date, "machine": words, "figures": report}, indent=1) + "\n")
    return path


def command_line(ctx: typer.Context) -> str:
    """The `fflm bench` command that was run, with the options that differ from their defaults."""
    import shlex

    parts = ["fflm", "bench"]
    for p in ctx.command.params:
        value = ctx.params.get(p.name)
        if p.name == "record_dir" or value == p.default:
            continue
        if p.is_flag:
            parts.append(p.opts[0] if value else p.secondary_opts[0])
        else:
            parts += [p.opts[0], str(getattr(value, "value", value))]
    return shlex.join(parts)


@app.command(epilog=EXAMPLES)
def bench(
    ctx: typer.Context,
    weights: Path = WeightsOpt,
    device=DeviceOpt,
    sizes: str = typer.Option("512,1024,2048,4096,8192", "--sizes", help="Long sides of the test portraits."),
    repeat: int = typer.Option(5, "--repeat", min=1, help="Timed runs per figure (the median is shown)."),
    frames: int = typer.Option(200, "--frames", min=0, help="1080p frames for the batch test (0: skip)."),
    detector: str = typer.Option("yunet", "--detector", help="Face detector to time: yunet, builtin or none (whole image)."),
    dlib: bool = typer.Option(True, "--dlib/--no-dlib", help="Also time dlib on the same images when it is installed."),
    flip: bool = typer.Option(True, "--flip/--no-flip", help="Time the landmark stage with (the default) or without "
                              "its mirrored test-time pass."),
    precision=PrecisionOpt,
    workdir: Path = typer.Option(None, "--workdir", help="Keep the generated images here (default: a temp folder)."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
    record_dir: Path = typer.Option(None, "--record", file_okay=False, help="Also write the figures, with the "
                                    "command, date and machine, to DIR/<date>-<machine>.json."),
) -> int:
    """Time decoding, detection and landmarks on 512 px to 8K photos, peak memory, and batch throughput."""
    from fflm.benchmarking.speed import print_report, run_bench

    try:
        size_list = tuple(int(s) for s in sizes.split(",") if s.strip())
    except ValueError:
        from fflm.cli.app import usage

        raise usage(f"--sizes takes comma-separated pixel sizes, got {sizes!r}") from None
    if detector not in ("yunet", "builtin", "none"):
        from fflm.cli.app import usage

        raise usage(f"--detector for bench is yunet, builtin or none, got {detector!r}")
    if record_dir is not None:
        record_dir.mkdir(parents=True, exist_ok=True)  # an unusable folder fails now, not after the whole run
    report = run_bench(str(weights) if weights else None, device.value, size_list, repeat, frames, detector, workdir,
                       dlib, flip, precision.value)
    if as_json:
        typer.echo(json.dumps(report, indent=1))
    else:
        print_report(report, out_console())
    if record_dir is not None:
        message(f"recorded {record(report, record_dir, command_line(ctx))}")
    return 0
