"""Help that reads well at 80 columns, and one name per concept across the commands."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path

import pytest
import typer

from fflm.cli import app
from fflm.cli.app import _one_line_paragraphs

from test_cli import _png, cli

COMMANDS = ["detect", "batch", "eval", "info", "train", "bench"]


def _click():
    return typer.main.get_command(app)


def _visible_long_names(name: str) -> list[str]:
    cmd = _click().commands[name]
    return [o for p in cmd.params if not getattr(p, "hidden", False) for o in (*p.opts, *p.secondary_opts)
            if o.startswith("--")]


@pytest.mark.parametrize("name", COMMANDS)
def test_help_at_80_columns_shows_every_option_name_whole(capsys, monkeypatch, name):
    monkeypatch.setenv("COLUMNS", "80")
    rc, out, err = cli(capsys, name, "--help")
    assert rc == 0, err
    assert "…" not in out and "<bool>" not in out and "<list[" not in out
    assert max(len(line) for line in out.splitlines()) <= 80
    for option in _visible_long_names(name):
        assert f" {option} " in out or f"{option}\n" in out or f" {option}," in out, option


@pytest.mark.parametrize("name", COMMANDS)
def test_help_paragraphs_are_reflowed_not_broken_where_the_source_was(name):
    cmd = _click().commands[name]
    for paragraph in (cmd.help or "").split("\n\n"):
        assert "\n" not in paragraph, paragraph
    for p in cmd.params:
        assert "\n" not in (getattr(p, "help", None) or "")


def test_one_line_paragraphs():
    assert _one_line_paragraphs("First line\n    goes on.\n\n    Second\n    one.") == "First line goes on.\n\nSecond one."


def test_required_arguments_are_marked_and_defaults_shown(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    _, out, _ = cli(capsys, "batch", "--help")
    assert "[required]" in out and "[default: 8]" in out


def test_detect_and_batch_share_their_option_names():
    detect, batch = set(_visible_long_names("detect")), set(_visible_long_names("batch"))
    assert detect <= batch, detect - batch
    for shared in ("--out", "--format", "--overlay", "--threads", "--weights", "--detector", "--detector-model"):
        assert shared in detect
    assert {"--detector", "--detector-model", "--detector-threshold", "--threads"} <= set(_visible_long_names("eval"))
    short = {c: {o for p in _click().commands[c].params for o in p.opts if not o.startswith("--")} for c in ("detect", "batch")}
    assert {"-o", "-f", "-w"} <= short["detect"] & short["batch"]


def test_threads_means_torch_threads_everywhere():
    helps = {c: next(p.help for p in _click().commands[c].params if "--threads" in p.opts) for c in ("detect", "batch", "train")}
    assert all(h.startswith("Torch CPU threads") for h in helps.values()), helps


def test_batch_keeps_its_older_option_names(capsys, weights, tmp_path):
    _png(tmp_path / "in" / "a.png", 32, 32)
    rc, out, err = cli(capsys, "batch", tmp_path / "in", "-w", weights, "--overlay-dir", tmp_path / "ov", "--workers", "1")
    assert rc == 0, err
    assert (tmp_path / "ov" / "a.fflm.jpg").exists()
    rc, _, err = cli(capsys, "batch", tmp_path / "in", "-w", weights, "--overlay-dir", tmp_path / "ov", "--overlay", tmp_path / "x")
    assert rc == 2 and "older name" in err


def test_detect_and_batch_default_to_json_or_the_out_extension(capsys, weights, tmp_path):
    img = _png(tmp_path / "in" / "a.png", 32, 32)
    _, d, _ = cli(capsys, "detect", img, "-w", weights)
    _, b, _ = cli(capsys, "batch", tmp_path / "in", "-w", weights)
    assert json.loads(d)["image"] == str(img) and json.loads(b)[0]["image"] == str(img)
    cli(capsys, "batch", tmp_path / "in", "-w", weights, "-o", tmp_path / "r.jsonl")
    assert json.loads((tmp_path / "r.jsonl").read_text())["image"] == str(img)
    cli(capsys, "batch", tmp_path / "in", "-w", weights, "-o", tmp_path / "r.csv")
    assert (tmp_path / "r.csv").read_text().startswith("image,width,height,face")


def test_eval_takes_the_detector_options_only_with_detector_boxes(capsys, weights, tmp_path):
    from conftest import faces

    data = faces(tmp_path / "val", 2)
    rc, _, err = cli(capsys, "eval", data, "-w", weights, "--detector", "builtin")
    assert rc == 2 and "--boxes detector" in err
    rc, _, err = cli(capsys, "eval", data, "-w", weights, "--boxes", "detector", "--detector", "none")
    assert rc == 2 and "needs a detector" in err


class Built(Exception):
    """Raised in place of building the Landmarker: carries the options a command collected."""


@pytest.mark.parametrize("command", ["detect", "batch", "eval"])
def test_the_commands_collect_their_landmarker_options_into_one_object(capsys, monkeypatch, tmp_path, command):
    from fflm.cli import common

    seen = []

    def build(self, with_detector=True):  # noqa: ANN001
        seen.append((self, with_detector))
        raise Built

    monkeypatch.setattr(common.LandmarkerOptions, "landmarker", build)
    img = _png(tmp_path / "a.png")
    src = {"detect": img, "batch": tmp_path, "eval": tmp_path}[command]
    extra = ["--boxes", "detector"] if command == "eval" else ["--tiles", "3", "--max-faces", "2"]
    rc, _, err = cli(capsys, command, src, "-w", "300w-68-stacks2", "--device", "CPU", "--no-flip", "--precision",
                     "bfloat16", "--detector", "builtin", "--detector-threshold", "0.3", "--threads", "1", *extra)
    assert rc == 1 and "internal error: Built" in err  # raised where the Landmarker would be built
    [(opts, with_detector)] = seen
    assert with_detector
    assert (opts.weights, opts.device, opts.flip, opts.precision, opts.detector, opts.detector_threshold,
            opts.threads) == (Path("300w-68-stacks2"), "cpu", False, "bfloat16", "builtin", 0.3, 1)
    assert not any(isinstance(v, Enum) for v in vars(opts).values())  # plain values, as the library takes them
    if command != "eval":
        assert (opts.tiles, opts.max_faces) == ("3", 2)


def test_the_choice_options_are_the_library_s_names():
    import importlib

    from fflm import choices, inference, outputs
    from fflm.cli import train

    cli_app = importlib.import_module("fflm.cli.app")  # the module, which fflm.cli's `app` object hides
    from fflm.detect import DETECTORS
    from fflm.train.losses import LOSSES

    for enum, names in ((cli_app.Format, outputs.FORMATS), (cli_app.Precision, inference.PRECISIONS),
                        (cli_app.DetectorChoice, DETECTORS), (cli_app.Device, choices.DEVICES),
                        (train.Loss, LOSSES), (train.Variant, choices.VARIANTS)):
        assert tuple(m.value for m in enum) == names


def test_help_defaults_are_the_library_s(capsys, monkeypatch):
    from fflm.choices import DETECT_EVERY, YUNET_THRESHOLD
    from fflm.detect.builtin import BuiltinDetector

    monkeypatch.setenv("COLUMNS", "400")
    assert main_help(capsys, "detect").count(f"{YUNET_THRESHOLD:g} for yunet, {BuiltinDetector().threshold:g} for builtin") == 1
    assert f"[default: {DETECT_EVERY}]" in main_help(capsys, "batch")


def main_help(capsys, command: str) -> str:
    rc, out, err = cli(capsys, command, "--help")
    assert rc == 0, err
    return out
