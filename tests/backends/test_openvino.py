"""The openvino backend (the fflm[openvino] extra) on the files of `fflm export --format onnx`: torch's landmarks in
float32 and, within bfloat16's rounding, in bfloat16; one compiled network serving several threads; one clear line
without the extra."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from fflm.pipeline import Landmarker

from conftest import SHARED, detect_landmarks, one_error, run_cli

ROOT = Path(__file__).resolve().parents[2]
ASTRONAUT = ROOT / "fflm" / "assets" / "astronaut.png"


@pytest.fixture(autouse=True)
def openvino_installed():
    pytest.importorskip("openvino")


def photos() -> list[Path]:
    images = [ASTRONAUT]
    if (SHARED / "data" / "300w" / "val").is_dir():
        images += sorted((SHARED / "data" / "300w" / "val").glob("*.jpg"))[:2]
    return images


def test_openvino_in_float32_gives_the_landmarks_of_torch(onnx_dir):
    ref = Landmarker(device="cpu", precision="float32").predict_batch(photos())
    ov = Landmarker(backend="openvino", onnx_dir=onnx_dir, precision="float32")
    assert ov.precision == "float32"
    for a, b in zip(ref, ov.predict_batch(photos())):
        assert len(a) == len(b) >= 1
        for fa, fb in zip(a, b):
            assert np.abs(fa.box - fb.box).max() < 0.01  # the detector runs in OpenVINO too
            assert np.abs(fa.landmarks - fb.landmarks).max() < 0.05
            assert np.abs(fa.landmark_scores - fb.landmark_scores).max() < 1e-3


def test_openvino_in_bfloat16_stays_within_its_rounding(onnx_dir):
    ref = Landmarker(device="cpu", precision="float32").predict(ASTRONAUT)
    ov = Landmarker(backend="openvino", onnx_dir=onnx_dir, precision="bfloat16")
    assert ov.precision == "bfloat16" and ov.dtype.is_floating_point and str(ov.dtype) == "torch.float32"
    [a], [b] = ref, ov.predict(ASTRONAUT)
    d = np.linalg.norm(a.landmarks - b.landmarks, axis=1)
    assert d.mean() < 0.3 and d.max() < 1.5  # torch's own bfloat16 moves them 0.02 px on average


def test_one_compiled_network_serves_threads_at_once(onnx_dir):
    ov = Landmarker(backend="openvino", onnx_dir=onnx_dir, precision="float32")
    one = [f.landmarks for f in ov.predict(ASTRONAUT)]
    with ThreadPoolExecutor(3) as pool:  # a request shared between threads would raise "busy" or mix results
        runs = list(pool.map(lambda _: [f.landmarks for f in ov.predict(ASTRONAUT)], range(6)))
    for got in runs:
        np.testing.assert_allclose(got, one, atol=1e-4)


def test_cli_detect_with_openvino_matches_torch(onnx_dir, capsys):
    ref = detect_landmarks(capsys, ASTRONAUT, "--threads", "1", "--precision", "float32")
    got = detect_landmarks(capsys, ASTRONAUT, "--backend", "openvino", "--onnx-dir", onnx_dir, "--precision", "float32")
    assert np.abs(ref - got).max() < 0.05


def test_an_export_of_other_weights_is_refused_by_name(onnx_dir, weights, capsys):
    rc, _, err = run_cli(capsys, "detect", ASTRONAUT, "--weights", weights, "--backend", "openvino",
                         "--onnx-dir", onnx_dir)
    line = one_error(err)
    assert rc == 1 and "exported from other weights" in line and "tiny" in line


def test_the_backend_without_its_folder_is_a_usage_error(capsys):
    rc, _, err = run_cli(capsys, "detect", ASTRONAUT, "--backend", "openvino")
    assert rc == 2 and "go together" in one_error(err)


def test_without_the_extra_one_line_names_it(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import fails as when not installed
    rc, _, err = run_cli(capsys, "detect", ASTRONAUT, "--backend", "openvino", "--onnx-dir", tmp_path)
    assert rc == 2 and "pip install 'fflm[openvino]'" in one_error(err)
