"""`fflm bench` end to end on tiny sizes (figures are checked for shape and sense, never for speed), and
the peer adapter it uses."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fflm.benchmarking.peers import dlib_available
from fflm.benchmarking.speed import make_portrait
from fflm.cli import main
from fflm.weights import asset


needs_dlib = pytest.mark.skipif(not dlib_available(), reason="dlib-bin / face-recognition-models not installed")


@pytest.fixture(scope="module")
def report(weights, tmp_path_factory) -> dict:
    """One small bench run, shared: two sizes, three frames, whole-image faces, dlib when installed."""
    import subprocess
    import sys

    work = tmp_path_factory.mktemp("bench")
    out = subprocess.run([sys.executable, "-m", "fflm", "bench", "--weights", str(weights), "--device", "cpu",
                          "--sizes", "300,640", "--repeat", "1", "--frames", "3", "--detector", "none",
                          "--workdir", str(work), "--json"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.slow
def test_bench_rows_per_size(report):
    rows = report["images"]
    assert [max(r["width"], r["height"]) for r in rows] == [300, 640]
    for r in rows:
        assert r["faces"] == 1  # detector none: the whole image is one face
        assert r["height"] == round(r["width"] * 0.75)
        for k in ("decode_ms", "detector_ms", "landmarks_ms_per_face", "one_pass_ms_per_face", "total_ms", "peak_rss_mb"):
            assert np.isfinite(r[k]) and r[k] > 0, k
        assert r["total_over_decode"] == pytest.approx(r["total_ms"] / r["decode_ms"])
        assert r["decoded_mb"] == pytest.approx(r["width"] * r["height"] * 3 / 2**20)
        assert r["cuda_peak_mb"] is None


@pytest.mark.slow
def test_bench_machine_and_batch(report):
    m = report["machine"]
    assert m["device"] == "cpu" and m["torch"] == torch.__version__ and m["detector"] == "none" and m["flip"] is True
    assert m["precision"] == report["images"][0]["precision"] in ("float32", "bfloat16")  # auto, resolved
    assert m["threads"] == report["images"][0]["threads"] >= 1  # the measuring processes' own setting
    b = report["batch"]
    assert b["images"] == 3
    assert b["loop_img_s"] > 0 and b["batch_img_s"] > 0
    assert b["speedup"] == pytest.approx(b["batch_img_s"] / b["loop_img_s"])
    assert b["cli_images"] == 3 and 0 < b["cli_loop_img_s"] < b["batch_img_s"]  # a process per frame is slower


@pytest.mark.parametrize("flip, precision", [(True, "float32"), (False, "bfloat16")])
def test_bench_measurements_use_the_flip_and_precision_settings(weights, tmp_path, monkeypatch, flip, precision):
    from fflm.benchmarking import speed as bench
    from fflm.pipeline import Landmarker

    made = []
    init = Landmarker.__init__
    monkeypatch.setattr(Landmarker, "__init__", lambda self, *a, **k: made.append((k["flip"], k["precision"]))
                        or init(self, *a, **k))
    path = make_portrait(128, tmp_path / "p.jpg")
    row = bench.measure_one(path, str(weights), "cpu", 1, "none", flip, precision)
    bench.measure_batch(tmp_path, str(weights), "cpu", "none", flip, precision, rounds=1)
    assert made == [(flip, precision)] * 2 and row["precision"] == precision


@needs_dlib
@pytest.mark.slow
def test_bench_dlib_rows_on_the_same_images(report):
    assert [(r["width"], r["height"]) for r in report["dlib"]] == [(r["width"], r["height"]) for r in report["images"]]
    for r in report["dlib"]:
        assert r["total_ms"] > 0 and r["faces"] >= 0


def test_bench_table_output(weights, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # Rich would fold the wide table to the captured stream's 80 columns
    assert main(["bench", "--weights", str(weights), "--device", "cpu", "--sizes", "256", "--repeat", "1",
                 "--frames", "0", "--detector", "none", "--no-dlib", "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "fflm bench: cpu" in out and "256×192" in out and "dlib" not in out


@pytest.mark.parametrize("args", [["--sizes", "big"], ["--detector", "dlib"], ["--repeat", "0"]])
def test_bench_usage_errors(args, capsys):
    assert main(["bench", "--frames", "0", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fflm")


def test_make_portrait_size_and_content(tmp_path):
    import cv2

    p = make_portrait(400, tmp_path / "p.jpg")
    img = cv2.imread(str(p))
    assert img.shape == (300, 400, 3)
    assert img.std() > 20  # a real picture, not a blank canvas


def test_bench_portraits_hold_one_face(tmp_path):
    """The timed portraits hold the sample's one face and nothing the detector takes for another (a mirrored
    border held half a mirrored face: two faces, and ms per face no longer comparable between sizes)."""
    from fflm.detect.builtin import BuiltinDetector
    from fflm.imageio import read_image

    det = BuiltinDetector()
    for side in (512, 1024):
        assert len(det.detect(read_image(make_portrait(side, tmp_path / f"p{side}.jpg")))) == 1


@needs_dlib
def test_dlib_adapter_finds_the_sample_face():
    from fflm.benchmarking.peers import DlibLandmarker
    from fflm.imageio import read_image

    img = read_image(asset("astronaut.png"))
    dl = DlibLandmarker(upsample=0)
    boxes = dl.detect(img)
    assert len(boxes) >= 1
    pts = dl.landmarks(img, boxes[0])
    assert pts.shape == (68, 2)
    x0, y0, x1, y1 = boxes[0]
    assert (pts[:, 0] > x0 - 20).all() and (pts[:, 0] < x1 + 20).all()
