"""fflm.quality (the landmark-quality map) and fflm.detect.metrics.roc_auc: hand-computed values, and the shipped
weights' quality on a face against a crop with no face."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fflm.detect.metrics import roc_auc
from fflm.quality import fit_logistic, load_map, quality
from fflm.weights import asset

SAMPLE = asset("astronaut.png")


def test_quality_is_the_logistic_of_the_mean_confidence():
    q = quality(np.array([[0.3, 0.5], [0.4, 0.4], [0.0, 0.0]]), centre=0.4, width=0.1)
    np.testing.assert_allclose(q, [0.5, 0.5, 1 / (1 + np.exp(4.0))])
    centre, width = load_map()
    assert 0 < centre < 1 and width > 0


def test_fit_logistic_puts_the_centre_between_mirrored_sets():
    pos, neg = np.array([0.5, 0.6, 0.7, 0.35]), np.array([0.1, 0.2, 0.3, 0.45])  # mirror images about 0.4
    centre, width = fit_logistic(pos, neg)
    assert centre == pytest.approx(0.4, abs=1e-6) and width > 0
    assert quality(np.array([[0.7]]), centre, width)[0] > 0.5 > quality(np.array([[0.1]]), centre, width)[0]


def test_roc_auc_by_hand():
    assert roc_auc([3, 4], [1, 2]) == 1.0
    assert roc_auc([1, 2], [3, 4]) == 0.0
    assert roc_auc([1, 3], [2, 2]) == 0.5  # 3 > 2 twice, 1 < 2 twice
    assert roc_auc([2], [2, 1]) == 0.75  # one tie (half), one win
    assert np.isnan(roc_auc([], [1]))


def test_quality_is_high_on_the_face_and_low_on_a_crop_without_one(capsys, tmp_path):
    from fflm.cli import main
    from fflm.imageio import read_image
    from fflm.pipeline import Landmarker

    lm = Landmarker(device="cpu")
    image = read_image(SAMPLE)
    [face] = lm.predict(image)
    flat = np.full((300, 300, 3), 128, np.uint8)
    [blank] = lm.predict(flat, [[50.0, 50.0, 250.0, 250.0]])
    assert face.quality > 0.9 > 0.1 > blank.quality
    assert main(["detect", str(SAMPLE), "--format", "csv"]) == 0
    header, row = capsys.readouterr().out.splitlines()[:2]
    cols = dict(zip(header.split(","), row.split(",")))
    assert list(cols)[4:6] == ["score", "quality"] and float(cols["quality"]) == pytest.approx(face.quality, abs=1e-3)
    assert main(["detect", str(SAMPLE)]) == 0
    [d] = json.loads(capsys.readouterr().out)["faces"]
    assert d["quality"] == pytest.approx(face.quality, abs=1e-3)
