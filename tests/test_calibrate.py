"""The mirror offset: stored in the configuration, added by the pipeline, measured on training faces."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fflm.evaluate import evaluate
from fflm.pipeline import Landmarker
from fflm.train.calibrate import calibrate, main, mirror_offset
from fflm.train.data import read_annotations
from fflm.weights import describe, load_model, save_model

from conftest import faces


def with_offset(src: Path, dst: Path, offset: float) -> Path:
    model, meta = load_model(src)
    model.config.mirror_offset = offset
    save_model(dst, model, meta)
    return dst


def test_the_pipeline_adds_the_offset_to_x_only(tmp_path: Path, tiny_weights: Path):
    image = np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8)
    box = [[20.0, 20.0, 76.0, 76.0]]
    plain = Landmarker(tiny_weights, device="cpu", detector="none").predict(image, box)[0]
    moved = Landmarker(with_offset(tiny_weights, tmp_path / "o.safetensors", 1.25), device="cpu",
                       detector="none").predict(image, box)[0]
    np.testing.assert_allclose(moved.landmarks - plain.landmarks, np.tile([1.25, 0.0], (68, 1)), atol=1e-9)
    np.testing.assert_allclose(moved.global_landmarks - plain.global_landmarks, np.tile([1.25, 0.0], (68, 1)), atol=1e-9)
    assert describe(tmp_path / "o.safetensors")["model"]["mirror_offset"].startswith("+1.250 px")
    assert load_model(tiny_weights)[0].config.mirror_offset == 0.0  # files without one: no offset


def test_calibration_removes_the_mean_horizontal_residual(tmp_path: Path, tiny_weights: Path, capsys):
    data = faces(tmp_path / "train", 6)
    samples = read_annotations(data, 68)
    before = evaluate(Landmarker(tiny_weights, device="cpu", detector="none"), samples).residual
    # the file's own offset is set aside when measuring: a miscalibrated file measures the same
    offset, n = mirror_offset(with_offset(tiny_weights, tmp_path / "wrong.safetensors", 3.0), data)
    assert n == 6 and abs(offset - before[0]) < 1e-6
    main([str(tmp_path / "wrong.safetensors"), "--data", str(data), "--out", str(tmp_path / "cal.safetensors")])
    assert "mirror offset" in json.loads(capsys.readouterr().out)["note"]
    model, meta = load_model(tmp_path / "cal.safetensors")
    assert model.config.mirror_offset == round(before[0], 4) and meta["mirror_offset"]["faces"] == 6
    after = evaluate(Landmarker(tmp_path / "cal.safetensors", device="cpu", detector="none"), samples).residual
    assert abs(after[0]) < 1e-4 and abs(after[1] - before[1]) < 1e-9
    assert "faces of" in calibrate(tiny_weights, data, tmp_path / "again.safetensors")
