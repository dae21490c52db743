"""The data the benchmark scripts read (they are scripts, not part of the package, and are not timed here)."""

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SHARED, needs_shared

from fflm.benchmarking.peers import DlibLandmarker, dlib_available
from fflm.annotations import Sample

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dlib_heldout_marks_its_76_faces_by_stem(tmp_path):
    bench = _script("landmarks_300w")
    samples = [Sample(tmp_path / "helen_test_2980607773_1.jpg", None), Sample(tmp_path / "helen_test_1_1.jpg", None),
               Sample(tmp_path / "lfpw_test_image_0003.png", None)]
    assert bench.dlib_heldout(samples).tolist() == [True, False, True]


@needs_shared
def test_dlib_heldout_faces_are_40_helen_and_36_lfpw_test_faces_of_val():
    bench = _script("landmarks_300w")
    val = SHARED / "data" / "300w" / "val"
    stems = {p.stem for p in val.glob("*.pts")}
    samples = [Sample(val / f"{s}.jpg", None) for s in sorted(stems)]
    held = [s.image.stem for s, h in zip(samples, bench.dlib_heldout(samples)) if h]
    assert len(held) == 76 and len(stems) == 554
    assert sum(s.startswith("helen_test_") for s in held) == 40
    assert sum(s.startswith("lfpw_test_") for s in held) == 36


def test_mirrored_moves_a_drawn_dot_with_its_renumbered_point():
    image = np.zeros((5, 4, 3), np.uint8)
    image[1, 0] = 255  # a dot at point 0, (x, y) = (0, 1)
    points = np.array([[0.0, 1.0], [3.0, 2.0]])
    flipped_image, flipped = _script("train_dlib_300w").mirrored(image, points, [1, 0])
    assert flipped.tolist() == [[0.0, 2.0], [3.0, 1.0]]  # point 1 is now the mirror of point 0, at x = 4 - 1 - 0
    x, y = flipped[1].astype(int)
    assert flipped_image[y, x].tolist() == [255, 255, 255] and flipped_image.sum() == 3 * 255


def test_training_faces_takes_each_face_and_its_mirror_with_the_detection_that_overlaps_it(tmp_path):
    bench = _script("train_dlib_300w")
    image = np.zeros((20, 20, 3), np.uint8)
    image[:, :5] = 200  # left-right asymmetric, so the mirror is told apart
    cv2.imwrite(str(tmp_path / "a.png"), image)
    big = Sample(tmp_path / "a.png", np.array([[1.0, 1.0], [18.0, 17.0]]))
    small = Sample(tmp_path / "a.png", np.array([[1.0, 1.0], [3.0, 3.0]]))  # overlaps no detection by IoU > 0.3
    seen = []

    def detect(img):
        seen.append(img[0, 0, 0])
        return np.array([[30.0, 30.0, 40.0, 40.0], [0.0, 0.0, 19.0, 19.0]])

    faces, missed = bench.training_faces([big, small], detect, [1, 0])
    assert missed == 2 and len(faces) == 2 and seen == [200, 0, 200, 0]
    (img0, box0, pts0), (img1, box1, pts1) = faces
    assert img0[0, 0, 0] == 200 and img1[0, 0, 0] == 0 and img1[0, 19, 0] == 200
    assert box0.tolist() == box1.tolist() == [0.0, 0.0, 19.0, 19.0]
    assert pts0.tolist() == big.points.tolist() and pts1.tolist() == [[1.0, 17.0], [18.0, 1.0]]


@pytest.mark.skipif(not dlib_available(), reason="dlib-bin / face-recognition-models not installed")
def test_dlib_landmarker_loads_a_retrained_shape_predictor(tmp_path):
    import dlib

    rng = np.random.default_rng(0)
    images, objects = [], []
    for _ in range(4):
        img = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
        pts = [dlib.point(int(x), int(y)) for x, y in rng.integers(10, 30, (3, 2))]
        images.append(img)
        objects.append([dlib.full_object_detection(dlib.rectangle(5, 5, 35, 35), pts)])
    options = dlib.shape_predictor_training_options()
    options.cascade_depth, options.num_trees_per_cascade_level, options.oversampling_amount = 1, 2, 1
    dlib.train_shape_predictor(images, objects, options).save(str(tmp_path / "tiny.dat"))
    points = DlibLandmarker(model=tmp_path / "tiny.dat").landmarks(images[0], np.array([5, 5, 35, 35]))
    assert points.shape == (3, 2)  # the retrained 3-point model, not dlib's 68-point one


def test_resolution_resize_keeps_a_dot_on_its_scaled_point():
    """benchmarks/resolution.py: the truth follows the INTER_AREA resize through the pixel-centre map."""
    bench = _script("resolution")
    img = np.zeros((900, 900, 3), np.uint8)
    img[600:603, 300:303] = 255  # a 3×3 dot centred on pixel (301, 601)
    small, pts = bench.resized(img, np.array([[301.0, 601.0]]), "300")
    assert small.shape == (300, 300, 3)
    np.testing.assert_allclose(pts, [[(301.5 / 3) - 0.5, (601.5 / 3) - 0.5]])
    ys, xs = np.nonzero(small[..., 0])
    w = small[ys, xs, 0].astype(float)
    np.testing.assert_allclose([(xs * w).sum() / w.sum(), (ys * w).sum() / w.sum()], pts[0], atol=1e-6)
    same, same_pts = bench.resized(img, pts, "native")
    assert same is img and same_pts is pts
