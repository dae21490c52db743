"""`fflm info`: what a weights file holds, read from its safetensors header."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from fflm.cli.app import app, out_console, usage


@app.command(epilog="Examples:\n\n  fflm info\n\n  fflm info runs/my-run/best.safetensors --json\n\n  fflm info detector")
def info(
    weights: Path = typer.Argument(None, metavar="[WEIGHTS]", help="Weights file, or a shipped one by name: "
                                   "300w-68 (the default), 300w-68-stacks2, detector.",
                                   show_default=False),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> int:
    """Show a weights file's model configuration, landmark scheme, training metadata and checksum (landmark
    weights or a detector file)."""
    from fflm.weights import describe, resolve

    path = resolve(weights)
    if weights is not None and not path.exists():
        raise usage(f"no such weights file: {weights}")
    if path.is_dir():
        raise usage(f"{weights} is a folder: give a weights file (.safetensors)")
    d = describe(path)
    if as_json:
        typer.echo(json.dumps(d, indent=1))
        return 0
    from rich.table import Table

    t = Table(title=f"fflm weights: {path}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    for section, values in d.items():
        if isinstance(values, dict):
            t.add_row(f"[underline]{section}[/]", "")
            for k, v in values.items():
                t.add_row(f"  {k}", v if isinstance(v, str) else json.dumps(v))
        else:
            t.add_row(section, str(values))
    out_console().print(t)  # the table is the command's output: stdout
    return 0
