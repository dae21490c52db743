"""Results as Parquet (pyarrow, in the `fflm[ray]` and `fflm[parquet]` extras): the columns of fflm's CSV
(`fflm.outputs.csv_header`: one row per face, a row with a null `face` for an image without one) with their
types, plus `error`: a file that could not be read is one row with its error, where CSV leaves it out.
Numbers are kept at full precision; rows are written in row groups as results come, the file renamed into
place when it is closed."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fflm.backends import require
from fflm.outputs import ImageResult, csv_header

ROW_GROUP = 4096


def schema(num_points: int):  # noqa: ANN201 - a pyarrow.Schema
    """The Parquet columns for `num_points` landmarks."""
    pa = require("pyarrow", "parquet", "--format parquet")
    types = {"image": pa.string(), "width": pa.int32(), "height": pa.int32(), "face": pa.int32(),
             "track": pa.int32()}
    return pa.schema([(name, types.get(name, pa.float64())) for name in csv_header(num_points)]
                     + [("error", pa.string())])


def rows(r: ImageResult, num_points: int) -> list[dict]:
    """The Parquet rows of one result (dicts by column)."""
    base = {"image": r.label, "width": r.width, "height": r.height, "time_ms": r.time_ms}
    if r.error is not None:
        return [{**base, "width": None, "height": None, "error": r.error}]
    if not r.faces:
        return [base]
    out = []
    for k, f in enumerate(r.faces):
        row = {**base, "face": k, "score": float(f.score), "track": getattr(f, "track", None)}
        row.update(zip(("box_x0", "box_y0", "box_x1", "box_y1"), map(float, f.box)))
        pts = np.asarray(f.landmarks, np.float64)
        row.update({f"x_{i}": float(x) for i, x in enumerate(pts[:, 0])})
        row.update({f"y_{i}": float(y) for i, y in enumerate(pts[:, 1])})
        row.update({f"score_{i}": float(s) for i, s in enumerate(f.landmark_scores)})
        out.append(row)
    return out


class ParquetWriter:
    """`add(result)` per image, `close()` at the end, like fflm.outputs.ResultWriter; `out` is a file name."""

    def __init__(self, out: str | Path, num_points: int) -> None:
        self.pq = require("pyarrow.parquet", "parquet", "--format parquet")
        self.pa = require("pyarrow", "parquet", "--format parquet")
        self.out, self.num_points, self.count = Path(out), num_points, 0
        self.schema = schema(num_points)
        self.tmp = self.out.with_name(f".{self.out.name}.{os.getpid()}.part")
        self.writer = self.pq.ParquetWriter(str(self.tmp), self.schema)
        self.pending: list[dict] = []

    def add(self, r: ImageResult) -> None:
        self.count += 1
        self.pending += rows(r, self.num_points)
        if len(self.pending) >= ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        if self.pending:
            self.writer.write_table(self.pa.Table.from_pylist(self.pending, schema=self.schema))
            self.pending = []

    def close(self, incomplete: str | None = None) -> None:
        """Write what is left and move the file into place (an interrupted run keeps the images it finished)."""
        self._flush()
        self.writer.close()
        self.tmp.replace(self.out)


def read_parquet(path: str | Path) -> list[dict]:
    """The rows of a results file as dicts (for tests and tools)."""
    pq = require("pyarrow.parquet", "parquet", "reading Parquet")
    return pq.read_table(str(path)).to_pylist()


def result_writer(fmt: str, out: str | Path | None, num_points: int, single: bool = False):  # noqa: ANN201
    """The writer for `fmt`: ParquetWriter for parquet (a file name is needed), else fflm.outputs.ResultWriter."""
    from fflm.fileio import STDOUT
    from fflm.outputs import ResultWriter

    if fmt != "parquet":
        return ResultWriter(fmt, out, num_points, single)
    if out is None or str(out) == STDOUT:
        raise ValueError("--format parquet writes a file: give one with --out")
    return ParquetWriter(out, num_points)
