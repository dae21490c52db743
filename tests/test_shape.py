"""fflm.shape: the shape model (fit, closest shape, regularisation) and its place in weights and the pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fflm.model import LandmarkNet
from fflm.pipeline import Landmarker
from fflm.shape import ShapeModel, _apply, _similarity, regularise
from fflm.train.shape import with_shape
from fflm.weights import load_model, save_model

from conftest import faces, shape68, tiny_config

JAW = list(range(17))


def _family(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Faces made of the 68-point shape plus two known deformations (wider jaw, higher brows), each under a
    random similarity; returns the shapes and the two deformation fields."""
    rng = np.random.default_rng(seed)
    base = shape68()
    wide = np.zeros_like(base)
    wide[JAW, 0] = base[JAW, 0]
    brows = np.zeros_like(base)
    brows[17:27, 1] = -0.1
    shapes = []
    for _ in range(n):
        s = base + rng.normal(0, 0.1) * wide + rng.normal(0, 0.5) * brows
        a = rng.uniform(50, 200) * np.exp(1j * rng.uniform(-0.5, 0.5))
        shapes.append(_apply((a, complex(*rng.uniform(0, 500, 2))), s))
    return np.array(shapes), np.stack([wide, brows])


def test_similarity_hand_values():
    src = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    dst = np.array([[3.0, 4.0], [3.0, 6.0], [1.0, 4.0]])  # rotated 90°, scaled 2, moved (3, 4)
    a, t = _similarity(src, dst, np.ones(3))
    assert a == pytest.approx(2j) and t == pytest.approx(3 + 4j)
    np.testing.assert_allclose(_apply((a, t), src), dst, atol=1e-12)


def test_fit_finds_the_deformations_and_closest_reproduces_model_shapes():
    shapes, _ = _family()
    model = ShapeModel.fit(shapes, components=2)
    assert model.mean.shape == (68, 2) and model.components.shape == (2, 68, 2)
    assert np.sqrt((model.mean**2).sum() / 68) == pytest.approx(1.0)
    flat = model.components.reshape(2, -1)
    np.testing.assert_allclose(flat @ flat.T, np.eye(2), atol=1e-9)  # orthonormal modes
    assert model.variances[0] >= model.variances[1] > 0
    for s in shapes[:5]:  # every face of the family is a model shape: its closest shape is itself
        np.testing.assert_allclose(model.closest(s, np.ones(68), prior=0.0), s, atol=1e-6 * np.ptp(s))


def test_regularise_pulls_a_stray_jaw_point_back_and_leaves_the_rest():
    shapes, _ = _family()
    model = ShapeModel.fit(shapes, components=2)
    truth = shapes[7]
    side = np.ptp(truth[:, 0])
    bad = truth.copy()
    bad[8] += [0.0, 0.2 * side]  # the chin 20 % of the face too low
    out = regularise(bad, model, JAW, weight=0.5, blend=1.0)
    assert np.linalg.norm(out[8] - truth[8]) < 0.5 * np.linalg.norm(bad[8] - truth[8])
    np.testing.assert_array_equal(out[17:], bad[17:])  # only the given indices move
    half = regularise(bad, model, JAW, weight=0.5, blend=0.5)
    np.testing.assert_allclose(half[JAW], (bad[JAW] + out[JAW]) / 2, atol=1e-9)
    np.testing.assert_array_equal(regularise(bad, model, JAW, blend=0.0), bad)
    np.testing.assert_array_equal(regularise(bad, model, []), bad)


def test_too_few_shapes_is_an_error():
    with pytest.raises(ValueError, match="more than 6 shapes"):
        ShapeModel.fit(np.zeros((6, 68, 2)), components=6)


def test_weights_with_a_shape_model_round_trip_and_the_pipeline_uses_it(tmp_path: Path, tiny_weights: Path):
    data = faces(tmp_path / "train", 8)
    out = tmp_path / "shaped.safetensors"
    assert "4 modes fitted on 8 faces" in with_shape(tiny_weights, data, out, components=4)
    model, meta = load_model(out)  # strict: the shape tensors belong to the configuration
    assert model.config.shape_prior.components == 4 and meta["shape_model"]["components"] == 4
    shape = model.shape_model()
    assert shape is not None and shape.components.shape == (4, 68, 2)
    assert load_model(tiny_weights)[0].shape_model() is None  # older files keep working, without one

    image = np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8)
    box = [[20.0, 20.0, 76.0, 76.0]]
    with_prior = Landmarker(out, device="cpu", detector="none").predict(image, box)[0]
    without = Landmarker(out, device="cpu", detector="none", shape_prior=False).predict(image, box)[0]
    refined = [i for i in range(68) if i not in JAW]
    np.testing.assert_allclose(with_prior.landmarks[refined], without.landmarks[refined], atol=1e-5)
    assert np.abs(with_prior.landmarks[JAW] - without.landmarks[JAW]).max() > 1e-3
    np.testing.assert_allclose(with_prior.landmarks[JAW],
                               regularise(without.landmarks, shape, JAW, 0.5, 0.5, 1e-3)[JAW], atol=1e-4)


def test_an_unfitted_shape_model_is_no_shape_model(tmp_path: Path):
    m = LandmarkNet(tiny_config(shape_prior={"components": 3}))
    assert m.shape_model() is None  # zeros until fitted
    save_model(tmp_path / "w.safetensors", m)
    assert load_model(tmp_path / "w.safetensors")[0].shape_model() is None


def test_eval_measures_with_and_without_the_shape_model(capsys, tmp_path: Path, tiny_weights: Path):
    import json

    from conftest import run_cli

    data = faces(tmp_path / "train", 8)
    shaped = tmp_path / "shaped.safetensors"
    with_shape(tiny_weights, data, shaped, components=4)
    results = {}
    for flag in ("--shape-prior", "--no-shape-prior"):
        rc, out, _ = run_cli(capsys, "eval", data, "-w", shaped, "--json", "--device", "cpu", flag)
        assert rc == 0
        results[flag] = json.loads(out)["groups"]
    assert results["--shape-prior"]["jaw"] != results["--no-shape-prior"]["jaw"]
    assert results["--shape-prior"]["eyes"] == results["--no-shape-prior"]["eyes"]  # refined points untouched
    rc, out, _ = run_cli(capsys, "info", shaped, "--json")
    assert rc == 0 and json.loads(out)["model"]["shape_model"].startswith("4 modes")
