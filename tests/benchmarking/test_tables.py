"""benchmarks/tables.py: the docs' figure tables are what the results files make them, and `fflm bench --record`
writes a results file the tables read."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest

from fflm.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tables():
    spec = importlib.util.spec_from_file_location("tables", ROOT / "benchmarks" / "tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_docs_table_is_what_the_results_make_it(tables):
    stale = [str(p.relative_to(ROOT)) for p, text in tables.documents().items() if p.read_text() != text]
    assert not stale, f"run python benchmarks/tables.py: tables differ from benchmarks/results in {stale}"


def test_every_table_is_shown_and_names_its_run(tables):
    text = "".join(p.read_text() for p in tables.documents())
    used = set(re.findall(r"<!-- table:([a-z0-9-]+) -->", text)) | set(tables.README_TABLES)
    assert used == set(tables.TABLES)
    for stem in tables.RUNS.values():
        run = json.loads((tables.RESULTS / f"{stem}.json").read_text())
        assert run["command"] and run["machine"] and stem.startswith(run["date"]), stem


def test_a_planted_figure_is_caught(tables, monkeypatch, tmp_path):
    """A results file that says something else than the docs makes the check fail."""
    for f in tables.RESULTS.glob("*.json"):
        shutil.copy(f, tmp_path)
    run = json.loads((tables.RESULTS / f"{tables.RUNS['bench']}.json").read_text())
    first = run["figures"]["images"][0]
    shown = f"| {first['total_ms']:,.0f} |"
    first["total_ms"] += 1
    (tmp_path / "planted.json").write_text(json.dumps(run))
    monkeypatch.setattr(tables, "RESULTS", tmp_path)
    monkeypatch.setitem(tables.RUNS, "bench", "planted")
    planted = tables.bench().splitlines()[2]  # the first row
    assert f"| {first['total_ms']:,.0f} |" in planted and shown not in planted
    assert tables.main(["--check"]) == 1


def test_markdown_table_and_its_source_line(tables):
    run = {"command": "fflm bench", "date": "2026-12-01", "machine": "m"}
    assert tables.markdown(["a", "b"], [["x", "1"]], "lr", run) == (
        "| a | b |\n|---|---:|\n| x | 1 |\n\nSource: `fflm bench`, 2026-12-01; m.\n")


def test_bench_record_writes_a_dated_file_the_tables_read(tables, tmp_path, monkeypatch, capsys):
    import fflm.benchmarking.speed

    report = json.loads((tables.RESULTS / f"{tables.RUNS['bench']}.json").read_text())["figures"]
    monkeypatch.setattr(fflm.benchmarking.speed, "run_bench", lambda *a, **k: report)
    for _ in range(2):
        assert main(["bench", "--sizes", "512", "--no-dlib", "--json", "--record", str(tmp_path)]) == 0
    assert "recorded" in capsys.readouterr().err
    date = datetime.now(timezone.utc).date().isoformat()
    first, second = sorted(tmp_path.glob("*.json"), key=lambda p: len(p.name))
    assert re.fullmatch(rf"{date}-[a-z0-9-]+cpu(-[a-z0-9]+)?\.json", first.name)
    assert second.name == first.name.replace(".json", "-2.json")  # a second run the same day keeps the first
    run = json.loads(first.read_text())
    assert run["command"] == "fflm bench --sizes 512 --no-dlib --json" and run["date"] == date
    assert run["figures"] == report and "-core" in run["machine"]
    expected = tables.bench().split("\n\nSource:")[0]
    monkeypatch.setattr(tables, "RESULTS", tmp_path)
    monkeypatch.setitem(tables.RUNS, "bench", first.stem)
    assert tables.bench().split("\n\nSource:")[0] == expected


def test_bench_record_into_a_file_is_a_usage_error_before_any_run(tmp_path, monkeypatch, capsys):
    import fflm.benchmarking.speed

    monkeypatch.setattr(fflm.benchmarking.speed, "run_bench", lambda *a, **k: pytest.fail("ran the benchmark"))
    (tmp_path / "f.json").write_text("{}")
    assert main(["bench", "--record", str(tmp_path / "f.json")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "is a file" in err
