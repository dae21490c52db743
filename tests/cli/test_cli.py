"""The fflm command line: every command, output format and bad input, mostly in-process through
`fflm.cli.main` (exit code returned; data on stdout, messages on stderr), plus a few real subprocesses.

Conventions checked throughout: exit code 2 = usage error, 1 = failure, 0 = ok; an error is one stderr line
starting with "fflm"; never a traceback."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from fflm import __version__
from fflm.cli import main
from fflm.imageio import read_image
from fflm.model import HourglassConfig, LandmarkNet
from fflm.outputs import csv_header, read_csv
from fflm.pts import read_pts
from fflm.weights import FORMAT

from conftest import shape68, tiny_config

N = 68


# --- fixtures and helpers ------------------------------------------------------------------------------------


def _rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _png(path: Path, h: int = 40, w: int = 50, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), _rgb(h, w, seed))
    return path


def _truncated_jpeg(path: Path) -> Path:
    ok, buf = cv2.imencode(".jpg", _rgb(64, 64, 9))
    data = buf.tobytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.fixture
def img(tmp_path) -> Path:
    """A 50×40 PNG."""
    return _png(tmp_path / "in" / "face.png")


@pytest.fixture
def folder(tmp_path) -> Path:
    """Three small images (PNG, JPEG, PNG) and a truncated JPEG that sorts between them."""
    d = tmp_path / "photos"
    _png(d / "a.png", 40, 50, 1)
    assert cv2.imwrite(str(d / "b.jpg"), _rgb(30, 44, 2))
    _truncated_jpeg(d / "bb_broken.jpg")
    _png(d / "c.png", 36, 36, 3)
    return d


def _argv(args) -> list[str]:
    """detect and batch run with `--detector none` (the whole image is the face) unless told otherwise: the
    tests use the tiny landmark model only, not a face detector's model file."""
    argv = [str(a) for a in args]
    if argv[:1] in (["detect"], ["batch"]) and "--detector" not in argv:
        argv += ["--detector", "none"]
    return argv


def cli(capsys, *args) -> tuple[int, str, str]:
    """Run fflm in-process; returns (exit code, stdout, stderr). Never a traceback."""
    rc = main(_argv(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out and "Traceback" not in err
    return rc, out, err


def one_error(err: str, *, every_line_fflm: bool = True) -> str:
    """The single error line of stderr (every stderr line starts with "fflm" unless a progress bar ran)."""
    lines = err.splitlines()
    errors = [line for line in lines if "error" in line.lower()]
    assert len(errors) == 1, err
    assert errors[0].startswith("fflm"), err
    if every_line_fflm:
        assert all(line.startswith("fflm") for line in lines), err
    return errors[0]


def messages_ok(err: str) -> None:
    assert "error" not in err.lower(), err
    assert all(line.startswith("fflm") for line in err.splitlines()), err


# --- version and help ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(capsys, flag):
    rc, out, err = cli(capsys, flag)
    assert (rc, out, err) == (0, f"fflm {__version__}\n", "")


def test_help(capsys):
    rc, out, _ = cli(capsys, "-h")
    assert rc == 0
    for word in ("detect", "batch", "info", "Usage"):
        assert word in out


@pytest.mark.parametrize("command", ["detect", "batch", "info"])
def test_command_help(capsys, command):
    rc, out, _ = cli(capsys, command, "--help")
    assert rc == 0 and "Usage" in out and "Examples" in out


def test_no_command_is_a_usage_error(capsys):
    rc, out, _ = cli(capsys)
    assert rc == 2 and "Usage" in out


# --- detect --------------------------------------------------------------------------------------------------


def test_detect_json(capsys, img, weights):
    rc, out, err = cli(capsys, "detect", img, "--weights", weights)
    assert rc == 0
    messages_ok(err)
    assert "whole image" in err  # says what happens without boxes
    d = json.loads(out)
    assert set(d) == {"image", "width", "height", "faces"}
    assert (d["image"], d["width"], d["height"]) == (str(img), 50, 40)
    [face] = d["faces"]
    assert face["box"] == [-0.5, -0.5, 49.5, 39.5]
    assert face["score"] == 1.0
    assert np.asarray(face["landmarks"]).shape == (N, 2)
    assert len(face["landmark_scores"]) == N and all(0 <= s <= 1 for s in face["landmark_scores"])


def test_flip_option_reaches_the_model(capsys, img, weights, monkeypatch, tmp_path):
    """Flip is on by default; --no-flip on detect and batch builds a Landmarker with flip=False, and it changes
    the points."""
    from fflm.pipeline import Landmarker

    made = []
    init = Landmarker.__init__
    monkeypatch.setattr(Landmarker, "__init__", lambda self, *a, **k: init(self, *a, **k) or made.append(self.flip))
    rc, plain, _ = cli(capsys, "detect", img, "--weights", weights, "--no-flip")
    rc2, flipped, _ = cli(capsys, "detect", img, "--weights", weights)
    assert rc == rc2 == 0 and made == [False, True]
    a, b = (np.asarray(json.loads(o)["faces"][0]["landmarks"]) for o in (plain, flipped))
    assert np.abs(a - b).max() > 1e-3
    assert cli(capsys, "batch", str(Path(img).parent), "--weights", weights, "--no-flip")[0] == 0
    assert made[-1] is False


@pytest.mark.parametrize("command", ["detect", "batch", "eval"])
def test_precision_option_reaches_the_model(capsys, img, weights, monkeypatch, command):
    """--precision reaches the Landmarker (auto by default); a value outside auto/float32/bfloat16 is a usage error."""
    from fflm.pipeline import Landmarker
    from fflm.pts import format_pts

    made = []
    init = Landmarker.__init__
    monkeypatch.setattr(Landmarker, "__init__", lambda self, *a, **k: made.append(k.get("precision")) or init(self, *a, **k))
    target = img if command == "detect" else str(Path(img).parent)
    if command == "eval":  # eval needs annotations: one .pts beside the image
        Path(img).with_suffix(".pts").write_text(format_pts(shape68() * 30 + [25, 20]))
    for extra, want in (([], "auto"), (["--precision", "bfloat16"], "bfloat16"), (["--precision", "FLOAT32"], "float32")):
        rc, _, err = cli(capsys, command, target, "--weights", weights, *extra)
        assert rc == 0, (extra, err)
        assert made[-1] == want
    rc, _, err = cli(capsys, command, target, "--weights", weights, "--precision", "half")
    assert rc == 2 and "--precision" in err


def test_detect_csv(capsys, img, weights):
    rc, out, err = cli(capsys, "detect", img, "-w", weights, "--format", "csv")
    assert rc == 0
    messages_ok(err)
    assert out.splitlines()[0].split(",") == csv_header(N)
    [row] = read_csv(out)
    assert row["image"] == str(img) and row["face"] == 0 and row["box"] == [-0.5, -0.5, 49.5, 39.5]
    _, js, _ = cli(capsys, "detect", img, "-w", weights)
    np.testing.assert_allclose(row["landmarks"], json.loads(js)["faces"][0]["landmarks"], atol=1e-3)


def test_detect_jsonl(capsys, img, weights):
    rc, out, _ = cli(capsys, "detect", img, "-w", weights, "-f", "jsonl")
    assert rc == 0
    [line] = out.splitlines()
    assert json.loads(line)["image"] == str(img)


def test_detect_pts(capsys, img, weights, tmp_path):
    rc, out, err = cli(capsys, "detect", img, "-w", weights, "--format", "pts", "--out", tmp_path / "pts")
    assert rc == 0 and out == ""
    messages_ok(err)
    assert os.listdir(tmp_path / "pts") == ["face_0.pts"]
    _, js, _ = cli(capsys, "detect", img, "-w", weights)
    landmarks = np.asarray(json.loads(js)["faces"][0]["landmarks"])
    pts_path = tmp_path / "pts" / "face_0.pts"
    np.testing.assert_allclose(read_pts(pts_path), landmarks, atol=5e-4 + 1e-9)  # read_pts is 0-based
    first = [float(v) for v in pts_path.read_text().splitlines()[3].split()]
    np.testing.assert_allclose(first, landmarks[0] + 1.0, atol=5e-4 + 1e-9)  # the file is 1-based


def test_detect_out_file(capsys, img, weights, tmp_path):
    target = tmp_path / "results" / "out.json"
    rc, out, _ = cli(capsys, "detect", img, "-w", weights, "--out", target)
    assert rc == 0 and out == ""
    d = json.loads(target.read_text())
    assert d["image"] == str(img) and len(d["faces"]) == 1
    assert os.listdir(target.parent) == ["out.json"]  # no temporary file left


def test_detect_overlay(capsys, img, weights, tmp_path):
    target = tmp_path / "overlay.png"
    rc, out, _ = cli(capsys, "detect", img, "-w", weights, "--overlay", target)
    assert rc == 0 and json.loads(out)["image"] == str(img)
    drawn = read_image(target)
    assert drawn.shape == (40, 50, 3)
    assert (drawn != read_image(img)).any()


def test_detect_boxes(capsys, img, weights, tmp_path):
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"face.png": [[1, 2, 20, 22], [25.5, 5, 48, 30]]}))
    rc, out, err = cli(capsys, "detect", img, "-w", weights, "--boxes", boxes)
    assert rc == 0
    assert err == ""  # boxes given: no note about whole images
    faces = json.loads(out)["faces"]
    assert [f["box"] for f in faces] == [[1, 2, 20, 22], [25.5, 5, 48, 30]]


def test_detect_several_images(capsys, img, weights, tmp_path):
    other = _png(tmp_path / "other.png", 30, 20, 4)
    rc, out, _ = cli(capsys, "detect", img, other, "-w", weights)
    assert rc == 0
    d = json.loads(out)
    assert [(r["image"], r["width"], r["height"]) for r in d] == [(str(img), 50, 40), (str(other), 20, 30)]


def test_detect_several_images_overlay_folder(capsys, img, weights, tmp_path):
    other = _png(tmp_path / "other.png", 30, 20, 4)
    rc, _, _ = cli(capsys, "detect", img, other, "-w", weights, "--overlay", tmp_path / "ov")
    assert rc == 0
    assert sorted(os.listdir(tmp_path / "ov")) == ["face.fflm.jpg", "other.fflm.jpg"]
    assert read_image(tmp_path / "ov" / "other.fflm.jpg").shape == (30, 20, 3)


def test_detect_one_bad_image_among_good(capsys, img, weights, tmp_path):
    bad = _truncated_jpeg(tmp_path / "bad.jpg")
    rc, out, err = cli(capsys, "detect", img, bad, "-w", weights)
    assert rc == 1
    assert "bad.jpg" in one_error(err)
    d = json.loads(out)
    assert [r["image"] for r in d] == [str(img), str(bad)]  # every input, the failed one with its error
    assert "faces" in d[0] and "faces" not in d[1] and "bad.jpg" in d[1]["error"]


def _grey16(path: Path) -> Path:
    assert cv2.imwrite(str(path), (np.arange(40 * 50, dtype=np.uint16).reshape(40, 50) * 31))
    return path


def _rgb16(path: Path) -> Path:
    assert cv2.imwrite(str(path), _rgb(40, 50).astype(np.uint16) * 257)
    return path


def _grey(path: Path) -> Path:
    assert cv2.imwrite(str(path), _rgb(40, 50)[:, :, 0])
    return path


def _rgba(path: Path) -> Path:
    rgba = np.concatenate([_rgb(40, 50), np.full((40, 50, 1), 100, np.uint8)], axis=2)
    Image.fromarray(rgba, "RGBA").save(path)
    return path


@pytest.mark.parametrize("make", [_grey16, _rgb16, _grey, _rgba], ids=["grey16", "rgb16", "grey", "rgba"])
def test_detect_unusual_pngs(capsys, weights, tmp_path, make):
    path = make(tmp_path / "x.png")
    rc, out, err = cli(capsys, "detect", path, "-w", weights)
    assert rc == 0
    messages_ok(err)
    d = json.loads(out)
    assert (d["width"], d["height"]) == (50, 40) and len(d["faces"]) == 1
    assert np.isfinite(d["faces"][0]["landmarks"]).all()


# --- batch ---------------------------------------------------------------------------------------------------


def _batch_images(fmt: str, out: str) -> list[str]:
    if fmt == "csv":
        return [r["image"] for r in read_csv(out)]
    if fmt == "json":
        return [r["image"] for r in json.loads(out)]
    return [json.loads(line)["image"] for line in out.splitlines()]


@pytest.mark.parametrize("fmt", ["csv", "json", "jsonl"])
def test_batch_folder_with_a_corrupt_file(capsys, folder, weights, fmt):
    rc, out, err = cli(capsys, "batch", folder, "-w", weights, "--format", fmt)
    assert rc == 1
    skipped = [line for line in err.splitlines() if "bb_broken.jpg" in line]
    assert len(skipped) == 1 and skipped[0].startswith("fflm"), err
    assert "4 images" in err and "1 failed" in err
    if fmt == "csv":  # a CSV row is a face: the failed image is on stderr only
        assert _batch_images(fmt, out) == [str(folder / n) for n in ("a.png", "b.jpg", "c.png")]
        assert "bb_broken" not in out
    else:  # JSON and JSON Lines hold every input, in order, the failed one with "error"
        assert _batch_images(fmt, out) == [str(folder / n) for n in ("a.png", "b.jpg", "bb_broken.jpg", "c.png")]
        rows = json.loads(out) if fmt == "json" else [json.loads(line) for line in out.splitlines()]
        assert "error" in rows[2] and all("error" not in r for r in rows[:2] + rows[3:])


def test_batch_json_content(capsys, folder, weights):
    (folder / "bb_broken.jpg").unlink()
    rc, out, _ = cli(capsys, "batch", folder, "-w", weights, "-f", "json")
    assert rc == 0
    d = json.loads(out)
    assert [(r["width"], r["height"]) for r in d] == [(50, 40), (44, 30), (36, 36)]
    assert all(len(r["faces"]) == 1 and len(r["faces"][0]["landmarks"]) == N for r in d)


def test_batch_video(capsys, tiny_video, weights):
    video = tiny_video
    rc, out, err = cli(capsys, "batch", video, "-w", weights, "--format", "jsonl")
    assert rc == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["image"], r["frame"]) for r in rows] == [(str(video), k) for k in range(5)]
    assert all((r["width"], r["height"]) == (64, 48) and len(r["faces"]) == 1 for r in rows)
    assert "5 images" in err
    rc, out, _ = cli(capsys, "batch", video, "-w", weights, "--format", "csv")
    assert rc == 0
    assert [r["image"] for r in read_csv(out)] == [f"{video}#{k}" for k in range(5)]


def test_batch_video_pts_and_overlays(capsys, tiny_video, weights, tmp_path):
    video = tiny_video
    rc, _, _ = cli(capsys, "batch", video, "-w", weights, "-f", "pts", "-o", tmp_path / "pts",
                   "--overlay-dir", tmp_path / "ov")
    assert rc == 0
    assert sorted(os.listdir(tmp_path / "pts")) == [f"clip_f{k:06d}_0.pts" for k in range(5)]
    assert sorted(os.listdir(tmp_path / "ov")) == [f"clip_f{k:06d}.fflm.jpg" for k in range(5)]


def test_batch_recursive(capsys, tmp_path, weights):
    root = tmp_path / "root"
    _png(root / "top.png")
    _png(root / "sub" / "inner.png", 20, 30)
    rc, out, _ = cli(capsys, "batch", root, "-w", weights, "-f", "jsonl")
    assert rc == 0 and _batch_images("jsonl", out) == [str(root / "top.png")]
    rc, out, _ = cli(capsys, "batch", root, "-w", weights, "-f", "jsonl", "--recursive")
    assert rc == 0
    assert _batch_images("jsonl", out) == [str(root / "sub" / "inner.png"), str(root / "top.png")]


def test_batch_overlay_dir(capsys, folder, weights, tmp_path):
    (folder / "bb_broken.jpg").unlink()
    rc, _, _ = cli(capsys, "batch", folder, "-w", weights, "--overlay-dir", tmp_path / "ov")
    assert rc == 0
    assert sorted(os.listdir(tmp_path / "ov")) == ["a.fflm.jpg", "b.fflm.jpg", "c.fflm.jpg"]
    assert read_image(tmp_path / "ov" / "b.fflm.jpg").shape == (30, 44, 3)


def test_batch_out_file_and_pts(capsys, folder, weights, tmp_path):
    rc, out, err = cli(capsys, "batch", folder, "-w", weights, "--out", tmp_path / "r.csv", "-b", "2", "-j", "1")
    assert rc == 1 and out == ""
    assert "wrote" in err
    assert [r["image"] for r in read_csv((tmp_path / "r.csv").read_text())] == [
        str(folder / n) for n in ("a.png", "b.jpg", "c.png")]
    rc, out, _ = cli(capsys, "batch", folder, "-w", weights, "-f", "pts", "-o", tmp_path / "pts")
    assert rc == 1 and out == ""
    assert sorted(os.listdir(tmp_path / "pts")) == ["a_0.pts", "b_0.pts", "c_0.pts"]


def test_batch_boxes(capsys, folder, weights, tmp_path):
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"a.png": [[0, 0, 20, 20], [22, 5, 45, 35]], "c.png": []}))
    rc, out, _ = cli(capsys, "batch", folder, "-w", weights, "-f", "json", "--boxes", boxes)
    assert rc == 1  # the broken file
    d = {Path(r["image"]).name: r for r in json.loads(out)}
    assert [f["box"] for f in d["a.png"]["faces"]] == [[0, 0, 20, 20], [22, 5, 45, 35]]
    assert d["c.png"]["faces"] == []
    assert d["b.jpg"]["faces"][0]["box"] == [-0.5, -0.5, 43.5, 29.5]  # not in the file: whole image


def test_batch_recursive_pts_same_names(capsys, tmp_path, weights):
    """Same-named images in different sub-folders keep their sub-folders in the output, not overwrite."""
    root = tmp_path / "shoot"
    _png(root / "day1" / "img001.png", seed=1)
    _png(root / "day2" / "img001.png", seed=2)
    rc, _, _ = cli(capsys, "batch", root, "-w", weights, "-r", "-f", "pts", "-o", tmp_path / "pts")
    assert rc == 0
    assert sorted(p.relative_to(tmp_path / "pts").as_posix() for p in (tmp_path / "pts").rglob("*.pts")) == [
        "day1/img001_0.pts", "day2/img001_0.pts"]


def test_detect_same_stems_with_pts_is_a_usage_error(capsys, tmp_path, weights):
    _png(tmp_path / "d1" / "a.png", seed=1)
    _png(tmp_path / "d2" / "a.png", seed=2)
    rc, _, err = cli(capsys, "detect", tmp_path / "d1" / "a.png", tmp_path / "d2" / "a.png", "-w", weights,
                     "-f", "pts", "-o", tmp_path / "pts")
    assert rc == 2 and "collide" in err and not (tmp_path / "pts").exists()


# --- info ----------------------------------------------------------------------------------------------------


def test_info_table(capsys, weights):
    rc, out, _ = cli(capsys, "info", weights)
    assert rc == 0
    for word in ("ibug68", "proxy_size", "sha256", "tiny test model", "regular"):
        assert word in out


def test_info_on_a_detector_file(capsys, tmp_path):
    from fflm.detect.model import DetectorConfig, FaceNet
    from fflm.detect.weights import save_detector

    path = tmp_path / "det.safetensors"
    net = FaceNet(DetectorConfig(widths=(4, 4, 8, 8, 8), fpn=8, extra={"threshold": 0.6, "landmark_box": [0.8, 0.0, 0.1]}))
    save_detector(path, net, {"epoch": 3})
    rc, out, _ = cli(capsys, "info", path, "--json")
    d = json.loads(out)
    assert rc == 0 and d["training"] == {"epoch": 3}
    assert d["detector"]["parameters"] == sum(p.numel() for p in net.parameters())
    assert (d["detector"]["threshold"], d["detector"]["landmark_box"]) == (0.6, [0.8, 0.0, 0.1])
    assert d["file"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert d["detector"]["verifier"] == "none"
    two = FaceNet(DetectorConfig(widths=(4, 4, 8, 8, 8), fpn=8, verifier={"crop": 16, "widths": [4, 8], "alpha": 0.6}))
    save_detector(path, two, {})
    d2 = json.loads(cli(capsys, "info", path, "--json")[1])["detector"]
    assert d2["parameters"] == sum(p.numel() for p in two.parameters())
    assert d2["verifier"].startswith(f"crop classifier, {sum(p.numel() for p in two.verifier.parameters())} parameters")
    assert '"alpha": 0.6' in d2["verifier"]
    path.write_bytes(path.read_bytes()[:100])  # truncated: one line, exit 1
    rc, _, err = cli(capsys, "info", path)
    assert rc == 1 and len(err.strip().splitlines()) == 1


def test_info_json(capsys, weights):
    rc, out, _ = cli(capsys, "info", weights, "--json")
    assert rc == 0
    d = json.loads(out)
    assert {"file", "model", "scheme", "training"} <= set(d)
    assert d["file"]["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert d["file"]["bytes"] == weights.stat().st_size
    assert d["model"]["proxy_size"] == 64 and d["model"]["crop_size"] == 32
    assert d["model"]["parameters"] == sum(p.numel() for p in LandmarkNet(tiny_config()).parameters())
    assert d["scheme"]["name"] == "ibug68" and d["scheme"]["points"] == N
    assert d["training"] == {"note": "tiny test model"}


# --- bad inputs ----------------------------------------------------------------------------------------------


def test_missing_image(capsys, weights, tmp_path):
    rc, out, err = cli(capsys, "detect", tmp_path / "nope.png", "-w", weights)
    assert rc == 2 and out == ""
    assert "nope.png" in one_error(err)


def test_missing_batch_source(capsys, weights, tmp_path):
    rc, _, err = cli(capsys, "batch", tmp_path / "nowhere", "-w", weights)
    assert rc == 2 and "nowhere" in one_error(err)


def test_folder_without_images(capsys, weights, tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "readme.txt").write_text("no pictures here")
    rc, out, err = cli(capsys, "batch", tmp_path / "empty", "-w", weights)
    assert rc == 1 and out == ""
    assert "no images" in one_error(err)


def test_detect_on_a_folder_is_a_usage_error(capsys, weights, folder):
    rc, _, err = cli(capsys, "detect", folder, "-w", weights)
    assert rc == 2 and "batch" in one_error(err)


def test_batch_on_an_image_is_a_usage_error(capsys, weights, img):
    rc, _, err = cli(capsys, "batch", img, "-w", weights)
    assert rc == 2 and "detect" in one_error(err)


def test_truncated_image(capsys, weights, tmp_path):
    bad = _truncated_jpeg(tmp_path / "cut.jpg")
    rc, out, err = cli(capsys, "detect", bad, "-w", weights)
    assert rc == 1 and "cut.jpg" in json.loads(out)["error"]
    assert "cut.jpg" in one_error(err)


def test_non_image_with_image_extension(capsys, weights, tmp_path):
    fake = tmp_path / "fake.png"
    fake.write_text("plain text, not a PNG")
    rc, out, err = cli(capsys, "detect", fake, "-w", weights)
    assert rc == 1 and "not an image" in json.loads(out)["error"]
    assert "fake.png" in one_error(err)


def test_text_file_is_not_an_image(capsys, weights, tmp_path):
    doc = tmp_path / "notes.txt"
    doc.write_text("hello")
    rc, out, err = cli(capsys, "detect", doc, "-w", weights)
    assert rc == 1 and json.loads(out) == {"image": str(doc), "error": f"cannot decode {doc}: not an image, or a damaged one"}
    assert "notes.txt: not an image" in one_error(err)


def test_video_that_cannot_be_opened(capsys, weights, tmp_path):
    bad = tmp_path / "broken.avi"
    bad.write_text("not a video")
    rc, out, err = cli(capsys, "batch", bad, "-w", weights)
    assert rc == 1 and out == ""
    assert "broken.avi" in one_error(err, every_line_fflm=False)


@pytest.mark.parametrize("content, words", [
    ("", "empty"),
    ("   \n", "empty"),
    ('{"face.png": [[1, 2, 3, 4]', "invalid JSON"),
    ('[[1, 2, 3, 4]]', "expected an object"),
    ('{"face.png": [[1, 2, 3]]}', "face.png"),
    ('{"face.png": "everywhere"}', "face.png"),
    ('{"face.png": [[10, 2, 5, 4]]}', "x1 > x0"),
])
def test_bad_boxes_file(capsys, img, weights, tmp_path, content, words):
    boxes = tmp_path / "boxes.json"
    boxes.write_text(content)
    rc, out, err = cli(capsys, "detect", img, "-w", weights, "--boxes", boxes)
    assert rc == 2 and out == ""
    assert words in one_error(err)


def test_missing_boxes_file(capsys, img, weights, tmp_path):
    rc, _, err = cli(capsys, "detect", img, "-w", weights, "--boxes", tmp_path / "none.json")
    assert rc == 2 and "none.json" in one_error(err)


def test_box_outside_the_image(capsys, img, weights, tmp_path):
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"face.png": [[-100, -100, -50, -50]]}))
    rc, out, err = cli(capsys, "detect", img, "-w", weights, "--boxes", boxes)
    assert rc == 1 and "outside" in json.loads(out)["error"]
    assert "outside" in one_error(err)


def test_box_partly_outside_warns(capsys, img, weights, tmp_path):
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"face.png": [[-10, -10, 30, 30]]}))
    rc, out, err = cli(capsys, "detect", img, "-w", weights, "--boxes", boxes)
    assert rc == 0
    [line] = err.splitlines()
    assert line.startswith("fflm: warning:") and "clipped" in line
    assert json.loads(out)["faces"][0]["box"] == [-0.5, -0.5, 30.0, 30.0]


def test_missing_weights(capsys, img, tmp_path):
    rc, out, err = cli(capsys, "detect", img, "--weights", tmp_path / "gone.safetensors")
    assert rc == 2 and out == ""
    assert "gone.safetensors" in one_error(err)


def test_info_missing_weights(capsys, tmp_path):
    rc, _, err = cli(capsys, "info", tmp_path / "gone.safetensors")
    assert rc == 2 and "gone.safetensors" in one_error(err)


def test_corrupt_weights(capsys, img, weights, tmp_path):
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(weights.read_bytes()[:1000])
    rc, out, err = cli(capsys, "detect", img, "-w", bad)
    assert rc == 1 and out == ""
    assert "cut.safetensors" in one_error(err)
    rc, _, err = cli(capsys, "info", bad)
    assert rc == 1 and "cut.safetensors" in one_error(err)


def test_text_file_as_weights(capsys, img, tmp_path):
    bad = tmp_path / "notes.safetensors"
    bad.write_text("hello")
    rc, _, err = cli(capsys, "detect", img, "-w", bad)
    assert rc == 1 and "notes.safetensors" in one_error(err)


def test_foreign_safetensors(capsys, img, tmp_path):
    other = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(3)}, str(other))
    rc, _, err = cli(capsys, "detect", img, "-w", other)
    assert rc == 1 and "not an fflm" in one_error(err)


def test_weights_with_mismatched_tensors(capsys, img, weights, tmp_path):
    """The header describes a wider global network than the tensors it holds."""
    wider = tiny_config(global_net=HourglassConfig(width=16, depth=2, stem_stride=4))
    bad = tmp_path / "mismatch.safetensors"
    header = {"format": FORMAT, "config": wider.to_json(), "metadata": "{}"}
    save_file(load_file(str(weights)), str(bad), metadata=header)
    rc, out, err = cli(capsys, "detect", img, "-w", bad)
    assert rc == 1 and out == ""
    assert "do not match" in one_error(err)


@pytest.mark.parametrize("command", ["detect", "batch"])
def test_pts_without_out(capsys, weights, folder, img, command):
    src = img if command == "detect" else folder
    rc, out, err = cli(capsys, command, src, "-w", weights, "--format", "pts")
    assert rc == 2 and out == ""
    assert "--out" in one_error(err)


@pytest.mark.parametrize("args", [["detect", "IMG", "--bogus"], ["detect", "IMG", "--format", "xml"],
                                  ["batch", "DIR", "--batch-size", "0"], ["frobnicate"], ["detect"]])
def test_usage_errors(capsys, img, folder, weights, args):
    args = [{"IMG": img, "DIR": folder}.get(a, a) for a in args]
    rc, out, err = cli(capsys, *args, "-w", weights)
    assert rc == 2 and out == ""
    one_error(err)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
@pytest.mark.parametrize("command", ["detect", "batch"])
def test_cuda_without_gpu(capsys, img, folder, weights, command):
    src = img if command == "detect" else folder
    rc, out, err = cli(capsys, command, src, "-w", weights, "--device", "cuda")
    assert rc == 2 and out == ""
    assert "cuda" in one_error(err).lower()


# --- real processes ------------------------------------------------------------------------------------------


def _run(*args, cwd=None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "FFLM_DEBUG"}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run([sys.executable, "-m", "fflm", *_argv(args)], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=120)
    assert "Traceback" not in proc.stdout + proc.stderr
    return proc


def test_process_version():
    proc = _run("--version")
    assert proc.returncode == 0 and proc.stdout == f"fflm {__version__}\n"


def test_process_detect_csv(img, weights):
    proc = _run("detect", img.name, "--weights", weights, "--format", "csv", cwd=img.parent)
    assert proc.returncode == 0, proc.stderr
    [row] = read_csv(proc.stdout)
    assert row["image"] == "face.png" and row["box"] == [-0.5, -0.5, 49.5, 39.5] and len(row["landmarks"]) == N
    messages_ok(proc.stderr)


def test_process_bad_image(weights, tmp_path):
    bad = _truncated_jpeg(tmp_path / "cut.jpg")
    proc = _run("detect", bad, "--weights", weights)
    assert proc.returncode == 1 and "error" in json.loads(proc.stdout)
    assert "cut.jpg" in one_error(proc.stderr)


# --- errors: fflm's own by kind, a bug as a bug ----------------------------------------------------------------


RAISED = {  # what the library raises: the exit code and the line the user sees
    "usage": (2, "fflm: error: --tiles must be auto"),
    "failure": (1, "fflm: error: weights file not found: gone.safetensors"),
    "oserror": (1, "fflm: error: [Errno 28] No space left on device"),
    "bug": (1, "fflm: internal error: ValueError: a library bug (FFLM_DEBUG=1 shows the traceback)"),
    "keyerror": (1, "fflm: internal error: KeyError: 'x' (FFLM_DEBUG=1 shows the traceback)"),
}


@pytest.mark.parametrize("error", RAISED)
def test_errors_map_to_their_exit_code_and_a_bug_says_so(capsys, monkeypatch, img, weights, error):
    import errno

    from fflm.detect.builtin import parse_tiles
    from fflm.errors import WeightsError

    def fail(*a, **k):  # noqa: ANN002,ANN003
        if error == "usage":
            parse_tiles("many")
        if error == "failure":
            raise WeightsError("weights file not found: gone.safetensors")
        if error == "oserror":
            raise OSError(errno.ENOSPC, "No space left on device")
        if error == "bug":
            raise ValueError("a library bug")
        raise KeyError("x")

    monkeypatch.delenv("FFLM_DEBUG", raising=False)
    monkeypatch.setattr("fflm.cli.common.LandmarkerOptions.landmarker", fail)
    rc, out, err = cli(capsys, "detect", img, "-w", weights)
    code, line = RAISED[error]
    assert (rc, out) == (code, "") and one_error(err).startswith(line)


def test_every_fflm_error_is_an_fflm_error_and_keeps_its_builtin():
    from fflm import errors

    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, Exception)
               and not issubclass(c, Warning)]
    assert {c.__name__ for c in classes} >= {"ImageError", "WeightsError", "AnnotationError", "TrainError",
                                             "BoxesFileError", "DetectorModelError", "OutputError", "UsageError"}
    assert all(issubclass(c, errors.FflmError) for c in classes)
    assert issubclass(errors.AnnotationError, ValueError) and issubclass(errors.OutputError, OSError)
    # exit 2 is a usage error's alone (a missing extra is one: the user asked for what is not installed)
    assert all(issubclass(c, errors.UsageError) for c in classes if c.exit_code == 2)
    assert [c.__name__ for c in classes if c.exit_code == 2 and c.__bases__[0] is errors.FflmError] == ["UsageError"]
    from fflm.imageio import ImageError
    from fflm.train.loop import TrainError

    assert ImageError is errors.ImageError and TrainError is errors.TrainError


def test_clipped_box_warnings_are_shown_by_category_whatever_their_text(capsys, monkeypatch, img, weights):
    import warnings as w

    from fflm.errors import BoxWarning

    def warn_twice(self, image, boxes=None, label=""):  # noqa: ANN001
        w.warn("no words a message filter would know", BoxWarning)
        w.warn("no words a message filter would know", BoxWarning)
        return [Detection(np.array([0.0, 0.0, 20.0, 20.0]), 1.0)]

    from fflm.detect.base import Detection
    from fflm.pipeline import Landmarker

    monkeypatch.setattr(Landmarker, "detections", warn_twice)
    rc, _, err = cli(capsys, "detect", img, "-w", weights, "--detector", "none")
    assert rc == 0 and err.count("fflm: warning: no words a message filter would know") == 2
