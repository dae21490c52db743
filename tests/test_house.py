"""The house: the project speaks only of itself, the README stays a user's page, the model cards keep the Hugging
Face layout, and the version is one number everywhere."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CARDS = [ROOT / "fflm" / "assets" / "MODEL_CARD.md", ROOT / "fflm" / "assets" / "DETECTOR_CARD.md"]
BINARY = (".safetensors", ".png", ".jpg", ".jpeg", ".onnx", ".pt")

# how the project was made is not the project: a work log's words, built so that this file does not match itself
HISTORY = [re.compile(p, re.I) for p in (
    r"\bsessions? \d+", r"\b(this|previous|next|last|that) session\b", r"\bissue #?\d+", "targets " + "of issue",
    re.escape("(" + "was "))]


def tracked() -> list[Path]:
    """The tracked text files (git ls-files), or every file under the tree's own folders outside git."""
    try:
        names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [ROOT / n for n in names if not n.endswith(BINARY) and (ROOT / n).is_file()]


def history_hits(text: str) -> list[tuple[int, str]]:
    return [(i, line.strip()) for i, line in enumerate(text.splitlines(), 1) if any(p.search(line) for p in HISTORY)]


def test_the_tree_does_not_speak_of_how_it_was_made():
    hits = [f"{p.relative_to(ROOT)}:{i}: {line}" for p in tracked() for i, line in history_hits(p.read_text())]
    assert not hits, "work-log words in the tree:\n" + "\n".join(hits)


@pytest.mark.parametrize("line", ["Tried in Sess" "ion 7 (2026-12-01)", "the figures iss" "ue 8 asks for",
                                  "Targets " "of iss" "ue 7: met", "recall 0.861 (" "was 0.771)", "in this sess" "ion"])
def test_the_history_check_catches(line):
    assert history_hits(f"ok\n{line}\n") == [(2, line)]


@pytest.mark.parametrize("line", ["@pytest.fixture(scope=\"session\")", "stop the whole pytest session",
                                  "see issue tracker", "it was 3 %"])
def test_the_history_check_lets_pass(line):
    assert history_hits(line) == []


def test_readme_is_a_short_users_page_with_the_two_commands():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 180
    assert "<!--" not in text
    for command in ('python3 -m venv .venv && .venv/bin/pip install -q torch==2.13.0 -e . && .venv/bin/fflm detect '
                    'fflm/assets/astronaut.png --overlay astronaut.fflm.jpg',
                    'python3 -m venv .venv && .venv/bin/pip install -q torch==2.13.0 -e ".[test,onnx,openvino,ray]" && '
                    '.venv/bin/python -m pytest'):
        assert f"\n{command}\n" in text


def flow_ok(line: str) -> bool:
    """Without PyYAML: every {...} of a line holds only `key: value` pairs (an unquoted comma splits a value)."""
    line = re.sub(r'"[^"]*"', "S", line)
    while True:
        inner = re.search(r"\{[^{}\[\]]*\}|\[[^{}\[\]]*\]", line)
        if not inner:
            return not re.search(r"[{}\[\]]", line)
        if inner[0][0] == "{" and not all(": " in part for part in inner[0][1:-1].split(",")):
            return False
        line = line[:inner.start()] + "V" + line[inner.end():]


def test_relative_links_resolve():
    pages = [ROOT / "README.md", ROOT / "CHANGELOG.md", *CARDS, *sorted((ROOT / "docs").glob("*.md"))]
    broken = [f"{page.relative_to(ROOT)} -> {target}" for page in pages
              for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text())
              if not (page.parent / target).exists()]
    assert not broken, broken


def front_matter(text: str) -> dict:
    """A card's YAML front matter, parsed with PyYAML when installed, else checked line by line for its keys."""
    assert text.startswith("---\n"), "a card starts with its YAML front matter"
    block = text[4:text.index("\n---\n")]
    try:
        import yaml
    except ImportError:
        keys = {}
        for line in block.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if not line.startswith((" ", "-")):
                key, sep, value = line.partition(":")
                assert sep and re.fullmatch(r"[a-z_-]+", key), f"not a YAML key: {line!r}"
                keys[key] = value.strip()
            assert flow_ok(line), f"not a YAML flow collection: {line!r}"
        keys["model-index"] = [float(v) for v in re.findall(r"type: nme, value: ([\d.]+)", block)]
        return keys
    meta = yaml.safe_load(block)
    meta["model-index"] = [m["value"] for entry in meta["model-index"] for res in entry["results"]
                           for m in res["metrics"] if m["type"] == "nme"]
    return meta


@pytest.mark.parametrize("line, ok", [("a: [x, {k: v, n: \"p, q\"}]", True), ("a: {k: v, n: p, q}", False),
                                      ("a: {k: [v}", False)])
def test_flow_check(line, ok):
    assert flow_ok(line) is ok


@pytest.mark.parametrize("card", CARDS, ids=lambda p: p.name)
def test_cards_keep_the_hugging_face_layout(card):
    text = card.read_text()
    assert len(text.splitlines()) <= 100
    meta = front_matter(text)
    assert next(iter(meta)) == "license" and meta["license"] == "other"  # the licence first
    assert meta["library_name"] == "fflm" and meta["datasets"] and meta["model-index"]
    body = text[text.index("\n---\n") + 5:]
    assert "**Licence:" in body.split("\n## ")[0], "the licence opens the card"
    for section in ("Model details", "Intended use and limits", "How to use", "Training data", "Recipe",
                    "Evaluation", "Versions", "Citation"):
        assert f"\n## {section}\n" in body, section
    assert "```bibtex" in body


def test_model_index_figures_are_the_recorded_ones():
    """The cards' model-index figures are those of the 300-W val run the tables show (benchmarks/tables.py RUNS)."""
    spec = importlib.util.spec_from_file_location("tables", ROOT / "benchmarks" / "tables.py")
    tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tables)
    val = tables.load("eval-300w-val")["figures"]["rows"]
    shipped = [r["mean"] for r in val if r["setting"].startswith("default") and r["boxes"] == "landmarks"]
    assert front_matter(CARDS[0].read_text())["model-index"] == shipped
    builtin = [r["mean"] for r in val if r["boxes"] == "builtin"]
    assert front_matter(CARDS[1].read_text())["model-index"] == builtin


@pytest.mark.parametrize("card", CARDS, ids=lambda p: p.name)
def test_the_current_weights_are_the_last_version(card):
    """The versions table ends with the sha256 of the file in the tree."""
    import hashlib

    rows = re.findall(r"^\| (\d{4}-\d\d-\d\d) \| (?:`([\w-]+)`[^|]*\| )?`([0-9a-f]{12})`", card.read_text(), re.M)
    last = {}
    for _, name, digest in rows:
        last[name or "fflm-detector"] = digest
    for name, digest in last.items():
        data = (ROOT / "fflm" / "assets" / f"{name}.safetensors").read_bytes()
        assert hashlib.sha256(data).hexdigest()[:12] == digest, name


def test_one_version_everywhere():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert declared == "0.2.0"
    assert importlib.metadata.version("fflm") == declared, "reinstall: pip install -e ."
    out = subprocess.run([sys.executable, "-m", "fflm", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout == f"fflm {declared}\n"
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert changelog.index("## [Unreleased]") < changelog.index(f"## [{declared}] - ")
    released = re.findall(r"^## \[(\d+\.\d+\.\d+)\] - \d{4}-\d\d-\d\d$", changelog, re.M)
    assert released[0] == declared and len(set(released)) == len(released)


def test_changelog_keeps_its_form():
    text = (ROOT / "CHANGELOG.md").read_text()
    for line in text.splitlines():
        if line.startswith("### "):
            assert line[4:] in ("Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"), line
        if line.startswith("  "):
            pytest.fail(f"one line per change: {line!r}")


def test_the_docs_name_modules_and_names_that_exist():
    """Every `fflm/...` path and every dotted `fflm.x.y` name in the user documents resolves in the code."""
    import importlib

    docs = [ROOT / "README.md", ROOT / "CHANGELOG.md", *CARDS, *sorted((ROOT / "docs").glob("*.md"))]
    text = "\n".join(p.read_text() for p in docs)
    missing = [path for path in set(re.findall(r"`((?:fflm|benchmarks)/[\w/.]*\w)`", text)) if not (ROOT / path).exists()]
    for dotted in set(re.findall(r"(?<![\w.])fflm(?:\.[A-Za-z_]\w*)+", text)):
        parts = dotted.split(".")
        for k in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:k]))
                break
            except ImportError:
                continue
        try:
            for attr in parts[k:]:
                obj = getattr(obj, attr)
        except AttributeError:
            missing.append(dotted)
    assert not missing, f"the docs name what the code does not have: {sorted(missing)}"


def fflm_imports(path: Path) -> set[str]:
    """The fflm modules a source file imports, at its top or inside its functions."""
    import ast

    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "fflm":
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.split(".")[0] == "fflm"}
    return names


# the detector's training, until it lives under fflm/train/
def test_layers_import_one_way():
    """Serving code never imports training code, the model never the pipeline's modules, the library never the CLI
    or the benchmarks: see docs/architecture.md."""
    wrong = []
    for path in sorted((ROOT / "fflm").rglob("*.py")):
        name = path.relative_to(ROOT).as_posix()
        imports = fflm_imports(path)

        def forbid(prefixes: tuple[str, ...], why: str) -> None:
            wrong.extend(f"{name} imports {m} ({why})" for m in sorted(imports) if m.startswith(prefixes))

        if not name.startswith(("fflm/train/", "fflm/cli/train.py")):
            forbid(("fflm.train",), "training code")
        if name.startswith("fflm/model/"):
            forbid(("fflm.inference", "fflm.pipeline", "fflm.weights", "fflm.detect", "fflm.crop"), "above the model")
        if not name.startswith("fflm/cli/") and name != "fflm/__main__.py":
            forbid(("fflm.cli",), "the command line")
        if not name.startswith(("fflm/benchmarking/", "fflm/cli/bench.py")):
            forbid(("fflm.benchmarking",), "benchmark code")
    assert not wrong, "\n".join(wrong)


def test_the_layer_check_sees_lazy_imports(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("import fflm.geometry\n\ndef f():\n    from fflm.train.loop import train\n")
    assert fflm_imports(src) == {"fflm.geometry", "fflm.train.loop"}
