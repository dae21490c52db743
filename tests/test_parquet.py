"""`--format parquet` (pyarrow, the fflm[parquet] extra): the CSV's columns with their types, a row per face, and
the failed files that CSV leaves out."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from fflm.outputs import csv_header, read_csv

from conftest import one_error, run_cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "imgs"
    d.mkdir()
    shutil.copyfile(ROOT / "fflm" / "assets" / "astronaut.png", d / "a.png")
    (d / "b.jpg").write_bytes(b"not an image")
    return d


def test_parquet_holds_the_csv_columns_and_the_failed_file(folder, tmp_path, capsys):
    pq = pytest.importorskip("pyarrow.parquet")
    from fflm.parquet import read_parquet

    rc, _, _ = run_cli(capsys, "batch", folder, "-o", tmp_path / "r.csv", "--threads", "1")
    rc2, _, _ = run_cli(capsys, "batch", folder, "-o", tmp_path / "r.parquet", "--threads", "1")
    assert rc == rc2 == 1  # the unreadable file
    table = pq.read_table(str(tmp_path / "r.parquet"))
    assert table.column_names == csv_header(68) + ["error"]
    assert str(table.schema.field("face").type) == "int32" and str(table.schema.field("x_0").type) == "double"
    rows, csv_rows = read_parquet(tmp_path / "r.parquet"), read_csv((tmp_path / "r.csv").read_text())
    assert [r["image"] for r in rows] == [str(folder / "a.png"), str(folder / "b.jpg")]
    face, failed = rows
    assert failed["error"].startswith("cannot decode") and failed["face"] is None and failed["width"] is None
    (ref,) = csv_rows
    assert (face["width"], face["height"], face["face"], face["error"]) == (512, 512, 0, None)
    got = np.array([[face[f"x_{i}"], face[f"y_{i}"]] for i in range(68)])
    assert np.abs(got - np.array(ref["landmarks"])).max() <= 0.0005 + 1e-9  # the CSV rounds to 0.001


def test_an_image_without_a_face_is_one_row_with_a_null_face(tmp_path, capsys):
    pytest.importorskip("pyarrow")
    from fflm.parquet import read_parquet

    d = tmp_path / "blank"
    d.mkdir()
    cv2.imwrite(str(d / "grey.png"), np.full((64, 64, 3), 128, np.uint8))
    rc, _, _ = run_cli(capsys, "batch", d, "-o", tmp_path / "r.parquet")
    (row,) = read_parquet(tmp_path / "r.parquet")
    assert rc == 0 and row["face"] is None and row["width"] == 64 and row["error"] is None and row["x_0"] is None


def test_parquet_needs_a_file(folder, capsys):
    pytest.importorskip("pyarrow")
    rc, _, err = run_cli(capsys, "batch", folder, "--format", "parquet")
    assert rc == 2 and "give one with --out" in one_error(err)


def test_without_pyarrow_one_line_names_the_extra(folder, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    rc, _, err = run_cli(capsys, "batch", folder, "-o", tmp_path / "r.parquet")
    assert rc == 2 and "pip install 'fflm[parquet]'" in one_error(err)
    assert not (tmp_path / "r.parquet").exists()
