"""Checks of a command's outputs before any work: none of them is an input, each is of the kind its option
needs (a file or a folder), and each can be written. A run over a photo archive fails here, in a second,
rather than after its last image, and never overwrites a photo with its own overlay or results."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from fflm.cli.app import Format, usage
from fflm.fileio import STDOUT, check_writable, is_stream, real_target


def stdout_if_dash(out: Path | None) -> Path | None:
    """`-o -` means stdout, as no option at all does."""
    return None if out is not None and str(out) == STDOUT else out


class Inputs:
    """The inputs' real paths and inodes, so that an output can be matched against thousands of them at once
    (through symlinks, `..` and hard links)."""

    def __init__(self, paths: Iterable[str | Path]) -> None:
        self.real: dict[Path, str] = {}
        self.inodes: dict[tuple[int, int], str] = {}
        for p in paths:
            if str(p) == STDOUT:
                continue
            self.real[real_target(p)] = str(p)
            try:
                st = os.stat(p)
                self.inodes[(st.st_dev, st.st_ino)] = str(p)
            except OSError:
                pass

    def which(self, path: str | Path) -> str | None:
        """The input that `path` would overwrite, or None."""
        hit = self.real.get(real_target(path))
        if hit is None and not is_stream(path):
            try:
                st = os.stat(path)
                hit = self.inodes.get((st.st_dev, st.st_ino))
            except OSError:
                pass
        return hit

    def refuse(self, option: str, path: str | Path) -> None:
        """Usage error when the output `path` of `option` is one of the inputs."""
        hit = self.which(path)
        if hit is not None:
            same = "" if str(path) == hit else f" (the input {hit})"
            raise usage(f"{option} {path} is one of the inputs{same}: it would be overwritten")


def output_format(fmt: Format | None, out: Path | None) -> str:
    """`--format`, or when it is not given the one `--out`'s extension names (.json, .jsonl, .csv, .parquet), else
    json."""
    if fmt is not None:
        return fmt.value
    suffix = "" if out is None else out.suffix.lower().lstrip(".")
    return suffix if suffix in ("json", "jsonl", "csv", "parquet") else "json"


def check_out(out: Path | None, fmt: str) -> None:
    """`--out` fits `--format`: a folder (or a new name) for pts, a file for parquet (with pyarrow installed),
    anything else but a folder otherwise; and it can be written."""
    if fmt == "pts":
        if out is None:
            raise usage("--format pts writes one file per face: give a folder with --out")
        if out.exists() and not out.is_dir():
            raise usage(f"--format pts writes one file per face into a folder, and {out} is a file")
        check_writable(out, folder=True)
        return
    if fmt == "parquet":
        from fflm.backends import require

        if out is None or str(out) == "-" or is_stream(out):
            raise usage("--format parquet writes a file: give one with --out")
        require("pyarrow", "parquet", "--format parquet")
    if out is not None:
        if out.is_dir():
            raise usage(f"--out {out} is a folder: give a file name for --format {fmt} (a folder is for pts)")
        check_writable(out)


def check_overlay_folder(folder: Path) -> None:
    """An overlay folder is a folder (or a new name) that can be written."""
    if (folder.exists() and not folder.is_dir()) or is_stream(folder):
        raise usage(f"--overlay {folder} is a file: overlays of several images go into a folder")
    check_writable(folder, folder=True)
