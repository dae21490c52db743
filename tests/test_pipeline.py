"""fflm.pipeline.Landmarker and fflm.runner on the tiny random model: shapes, boxes, batching, devices, and
the pixel-coordinate convention checked end to end with stubbed network stages."""

from __future__ import annotations

import warnings
from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch

from fflm import runner
from fflm.detect.base import Detection
from fflm.geometry import square_box
from fflm.model.network import StageOutput
from fflm.pipeline import BoxWarning, Face, Landmarker, pick_device
from fflm.imageio import read_image
from fflm.weights import asset


N = 68
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.fixture(scope="module")
def lm(weights) -> Landmarker:
    """Shared by the tests that only call predict: they never modify it (float32: built before the per-test
    fixtures, it does not see conftest's float32_by_default)."""
    return Landmarker(weights, device="cpu", detector="none", precision="float32")


def staged(lm: Landmarker, image: np.ndarray, boxes) -> list[tuple[Face, np.ndarray]]:  # noqa: ANN001
    """`lm.staged_landmarks` on one image with given boxes: each face with its global stage's points."""
    return lm.staged_landmarks([image], [lm.detections(image, boxes)])[0]


def _image(h: int = 80, w: int = 100, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _check_face(face: Face) -> None:
    assert isinstance(face, Face)
    assert face.landmarks.shape == (N, 2) and face.landmarks.dtype == np.float64
    assert np.isfinite(face.landmarks).all()
    assert face.landmark_scores.shape == (N,)
    assert ((face.landmark_scores >= 0) & (face.landmark_scores <= 1)).all()


def test_predict_array_whole_image(lm):
    faces = lm.predict(_image(80, 100))
    assert len(faces) == 1
    [face] = faces
    _check_face(face)
    np.testing.assert_array_equal(face.box, [-0.5, -0.5, 99.5, 79.5])
    assert face.score == 1.0
    assert lm.scheme.num_points == N


def test_predict_path_equals_array(lm, tmp_path):
    img = _image(60, 90, seed=3)
    path = tmp_path / "face.png"
    assert cv2.imwrite(str(path), np.ascontiguousarray(img[:, :, ::-1]))
    [from_path] = lm.predict(path)
    [from_str] = lm.predict(str(path))
    [from_array] = lm.predict(img)
    np.testing.assert_array_equal(from_path.box, [-0.5, -0.5, 89.5, 59.5])
    np.testing.assert_allclose(from_path.landmarks, from_array.landmarks, atol=1e-5)
    np.testing.assert_allclose(from_str.landmarks, from_array.landmarks, atol=1e-5)


def test_landmarks_lie_in_the_face_frame(lm):
    """Soft-argmax points lie in the proxy, so final points stay near the face frame (1.5× the box)."""
    [face] = lm.predict(_image(80, 100))
    lo, hi = face.landmarks.min(axis=0), face.landmarks.max(axis=0)
    assert (lo > -40).all() and hi[0] < 140 and hi[1] < 120


def test_given_boxes_one_face_per_box(lm):
    img = _image(120, 200)
    boxes = [[100.0, 20.0, 190.0, 110.0], [10.0, 10.0, 70.0, 70.0]]
    faces = lm.predict(img, boxes)
    assert len(faces) == 2
    for face, box in zip(faces, boxes):  # equal scores: the given order is kept
        _check_face(face)
        np.testing.assert_array_equal(face.box, box)
        assert face.score == 1.0
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        mx, my = face.landmarks.mean(axis=0)
        assert abs(mx - cx) < (box[2] - box[0]) / 2 and abs(my - cy) < (box[3] - box[1]) / 2
    assert lm.predict(img, []) == []


def test_faces_sorted_by_detector_score(lm):
    img = _image(120, 200)
    dets = [Detection(np.array([10.0, 10.0, 70.0, 70.0]), 0.3), Detection(np.array([100.0, 20.0, 190.0, 110.0]), 0.9),
            Detection(np.array([60.0, 40.0, 120.0, 100.0]), 0.6)]
    [faces] = lm.landmarks([img], [dets])
    assert [f.score for f in faces] == [0.9, 0.6, 0.3]
    np.testing.assert_array_equal(faces[0].box, [100.0, 20.0, 190.0, 110.0])


def test_custom_detector_is_used_and_sorted(weights):
    class TwoFaces:
        name = "two"

        def detect(self, image):
            return [Detection(np.array([0.0, 0.0, 40.0, 40.0]), 0.2),
                    Detection(np.array([50.0, 10.0, 90.0, 50.0]), 0.8)]

    lm = Landmarker(weights, device="cpu", detector=TwoFaces())
    faces = lm.predict(_image(60, 100))
    assert [f.score for f in faces] == [0.8, 0.2]
    np.testing.assert_array_equal(faces[0].box, [50.0, 10.0, 90.0, 50.0])


def test_detector_by_name_defaults_to_yunet(weights):
    from fflm.detect.base import WholeImage
    from fflm.detect.builtin import BuiltinDetector
    from fflm.detect.yunet import YuNetDetector

    assert isinstance(Landmarker(weights, device="cpu").detector.inner, YuNetDetector)  # inside --rotations auto
    assert isinstance(Landmarker(weights, device="cpu", detector="builtin").detector.inner, BuiltinDetector)
    assert isinstance(Landmarker(weights, device="cpu", detector="none").detector, WholeImage)
    with pytest.raises(ValueError, match="unknown detector"):
        Landmarker(weights, device="cpu", detector="haar")


def test_the_detector_runs_in_float32_inside_a_callers_autocast(weights):
    """A caller's own bfloat16 autocast around predict reaches neither the built-in detector (float32: its threshold
    was chosen so; its outputs go to NumPy) nor changes what it finds."""
    from pathlib import Path

    from fflm.imageio import read_image

    lm = Landmarker(weights, device="cpu")
    img = read_image(asset("astronaut.png"))
    want = lm.detections(img)
    with torch.autocast("cpu", torch.bfloat16):
        got = lm.detections(img)
        faces = lm.predict(img)
        direct = lm.detector.detect(img)  # the detector on its own too
    assert len(want) == len(got) == len(faces) == len(direct) == 1
    np.testing.assert_array_equal(direct[0].box, want[0].box)
    np.testing.assert_array_equal(got[0].box, want[0].box)
    assert got[0].score == want[0].score


def test_box_partly_outside_is_clipped_with_a_warning(lm):
    img = _image(40, 50)
    with pytest.warns(BoxWarning, match="clipped"):
        [face] = lm.predict(img, [[-10.0, -10.0, 30.0, 30.0]])
    np.testing.assert_array_equal(face.box, [-0.5, -0.5, 30.0, 30.0])
    _check_face(face)
    with pytest.warns(BoxWarning):
        [face] = lm.predict(img, [[20.0, 10.0, 80.0, 45.0]])
    np.testing.assert_array_equal(face.box, [20.0, 10.0, 49.5, 39.5])


def test_box_inside_gives_no_warning(lm):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lm.predict(_image(40, 50), [[-0.5, -0.5, 49.5, 39.5]])  # exactly the image: nothing to clip


@pytest.mark.parametrize("box", [
    [-100.0, -100.0, -50.0, -50.0],  # wholly outside, up-left
    [60.0, 5.0, 90.0, 30.0],  # wholly right of a 50-wide image
    [10.0, 45.0, 30.0, 60.0],  # wholly below
    [30.0, 10.0, 30.0, 20.0],  # x1 == x0
    [30.0, 10.0, 20.0, 20.0],  # x1 < x0
    [10.0, 20.0, 30.0, 5.0],  # y1 < y0
    [10.0, 10.0, 30.0],  # three numbers
    [10.0, float("nan"), 30.0, 30.0],
    [10.0, 10.0, float("inf"), 30.0],
])
def test_bad_boxes_raise(lm, box):
    with pytest.raises(ValueError):
        lm.predict(_image(40, 50), [box])


def test_predict_batch_equals_predict(lm):
    a, b = _image(80, 100, seed=1), _image(50, 70, seed=2)
    batch = lm.predict_batch([a, b])
    assert len(batch) == 2 and all(len(faces) == 1 for faces in batch)
    for faces, img in zip(batch, [a, b]):
        [single] = lm.predict(img)
        np.testing.assert_allclose(faces[0].landmarks, single.landmarks, atol=1e-3)
        np.testing.assert_allclose(faces[0].landmark_scores, single.landmark_scores, atol=1e-4)
        np.testing.assert_array_equal(faces[0].box, single.box)
    boxed = lm.predict_batch([a, b], [[[10.0, 10.0, 60.0, 60.0]], None])
    np.testing.assert_array_equal(boxed[0][0].box, [10.0, 10.0, 60.0, 60.0])
    np.testing.assert_array_equal(boxed[1][0].box, [-0.5, -0.5, 69.5, 49.5])


def test_grey_and_rgba_arrays_accepted(lm):
    grey = _image(60, 80)[:, :, 0]
    [g] = lm.predict(grey)
    [rgb] = lm.predict(np.repeat(grey[:, :, None], 3, axis=2))
    np.testing.assert_allclose(g.landmarks, rgb.landmarks, atol=1e-6)
    colour = _image(60, 80, seed=5)
    rgba = np.concatenate([colour, np.full((60, 80, 1), 7, np.uint8)], axis=2)
    [x] = lm.predict(rgba)
    [y] = lm.predict(colour)
    np.testing.assert_allclose(x.landmarks, y.landmarks, atol=1e-6)
    np.testing.assert_array_equal(x.box, [-0.5, -0.5, 79.5, 59.5])


def test_bad_array_raises(lm):
    from fflm.imageio import ImageError

    with pytest.raises(ImageError):
        lm.predict(np.zeros((10, 10, 2), np.uint8))


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_cuda_without_gpu_raises(weights):
    with pytest.raises(ValueError, match="cuda"):
        Landmarker(weights, device="cuda")
    with pytest.raises(ValueError):
        pick_device("cuda:0")
    assert pick_device("auto").type == "cpu"


def test_unknown_device_raises():
    with pytest.raises(ValueError, match="unknown device"):
        pick_device("tpu")
    assert pick_device("cpu") == torch.device("cpu")


@needs_cuda
def test_cuda_pipeline_matches_cpu(weights):
    img = _image(80, 100)
    [cpu] = Landmarker(weights, device="cpu", detector="none").predict(img)
    gpu_lm = Landmarker(weights, device="cuda", detector="none")
    assert next(gpu_lm.model.parameters()).is_cuda
    [gpu] = gpu_lm.predict(img)
    _check_face(gpu)
    np.testing.assert_allclose(gpu.landmarks, cpu.landmarks, atol=0.05)


# --- the coordinate convention, end to end -------------------------------------------------------------------


def _stub_stages(monkeypatch, lm: Landmarker, global_point, region_point) -> None:
    """Replace the networks: the global stage puts point i at global_point(i) (proxy pixels), every region
    stage puts all its points at region_point (crop pixels); scores 0.25 (global) and 0.75 (regional)."""
    model = lm.model

    def run_global(proxy: torch.Tensor, flip: bool = False, direct: StageOutput | None = None) -> StageOutput:
        b = proxy.shape[0]
        assert proxy.shape[1:] == (3, model.config.proxy_size, model.config.proxy_size)
        pts = torch.tensor([global_point(i) for i in range(N)], dtype=torch.float32).expand(b, N, 2).clone()
        return StageOutput(pts, torch.full((b, N), 0.25), [pts])

    def run_regions(crops: torch.Tensor, stage: int = 0, flip: bool = False) -> list[StageOutput]:
        k, r = crops.shape[:2]
        assert crops.shape[1:] == (len(model.scheme.regions), 3, model.config.crop_size, model.config.crop_size)
        out = []
        for region in model.scheme.regions:
            pts = torch.tensor(region_point, dtype=torch.float32).expand(k, len(region.indices), 2).clone()
            out.append(StageOutput(pts, torch.full((k, len(region.indices)), 0.75), [pts]))
        return out

    def run_global_mirrored(proxy: torch.Tensor) -> tuple[StageOutput, StageOutput]:
        plain = run_global(proxy)
        return plain, run_global(proxy, True, direct=plain)

    monkeypatch.setattr(model, "run_global", run_global)
    monkeypatch.setattr(model, "run_global_mirrored", run_global_mirrored)
    monkeypatch.setattr(model, "run_regions", run_regions)


JAW = list(range(17))  # the 68-point scheme refines every point but the jaw


@pytest.mark.parametrize("region_point, refined", [
    ((15.5, 15.5), (30.0, 40.0)),  # crop centre -> centre of the region box
    ((0.0, 0.0), (26.5125, 36.5125)),  # first crop pixel centre -> half a crop pixel in from the box corner
])
def test_pixel_convention_without_recentre(weights, monkeypatch, region_point, refined):
    """Box [10, 20, 50, 60] in a 100×80 image: centre (30, 40), face frame 1.5 × 40 = 60 → [0, 10, 60, 70].

    Proxy (64 px) pixel centre c maps to frame x0 + (c + 0.5)·60/64: the proxy centre 31.5 → (30, 40), proxy
    pixel 0 → (0.46875, 10.46875). Region points all at (30, 40) have no extent, so each region box is the
    minimum square 0.12 · 60 = 7.2 → [26.4, 36.4, 33.6, 43.6]; crop (32 px) pixel u maps to 26.4 + (u + 0.5)·0.225.
    """
    lm = Landmarker(weights, device="cpu", detector="none", recentre=False)
    assert (lm.model.config.proxy_size, lm.model.config.crop_size) == (64, 32)
    assert lm.model.config.frame_scale == 1.5 and lm.model.config.region_min_side == 0.12
    _stub_stages(monkeypatch, lm, lambda i: (0.0, 0.0) if i in JAW else (31.5, 31.5), region_point)
    [(face, global_points)] = staged(lm, _image(80, 100), [[10.0, 20.0, 50.0, 60.0]])
    others = [i for i in range(N) if i not in JAW]
    np.testing.assert_allclose(face.landmarks[JAW], [[0.46875, 10.46875]] * len(JAW), atol=1e-4)
    np.testing.assert_allclose(face.landmarks[others], [refined] * len(others), atol=1e-4)
    np.testing.assert_allclose(global_points[others], [[30.0, 40.0]] * len(others), atol=1e-4)
    np.testing.assert_allclose(face.landmark_scores[JAW], 0.25)
    np.testing.assert_allclose(face.landmark_scores[others], 0.75)
    np.testing.assert_array_equal(face.box, [10.0, 20.0, 50.0, 60.0])


def test_all_faces_of_a_batch_share_one_call_per_stage(weights, monkeypatch):
    """Batching: three images with 1, 2 and 0 faces go through the global network in one call and
    through the (stacked) regional networks in one call holding every region crop of all three faces."""
    lm = Landmarker(weights, device="cpu", detector="none", recentre=False)
    _stub_stages(monkeypatch, lm, lambda i: (31.5, 31.5), (15.5, 15.5))
    calls = []
    for name in ("run_global", "run_regions"):
        stub = getattr(lm.model, name)
        monkeypatch.setattr(lm.model, name, lambda x, *a, _s=stub, _n=name: calls.append((_n, x.shape[0])) or _s(x, *a))
    boxes = [[[0.0, 0.0, 20.0, 20.0]], [[0.0, 0.0, 20.0, 20.0], [30.0, 30.0, 60.0, 60.0]], []]
    faces = lm.predict_batch([_image(80, 100)] * 3, boxes)
    assert [len(f) for f in faces] == [1, 2, 0]
    assert calls == [("run_global", 3), ("run_regions", 3)]


def test_pixel_convention_whole_image(weights, monkeypatch):
    """No box: the face is the whole 100×80 image [-0.5, -0.5, 99.5, 79.5], centre (49.5, 39.5): the
    image's central pixel position in 0-based pixel centres."""
    lm = Landmarker(weights, device="cpu", detector="none", recentre=False)
    _stub_stages(monkeypatch, lm, lambda i: (31.5, 31.5), (15.5, 15.5))
    [face] = lm.predict(_image(80, 100))
    np.testing.assert_allclose(face.landmarks, [[49.5, 39.5]] * N, atol=1e-4)


def test_pixel_convention_with_recentre(weights, monkeypatch):
    """Even points at proxy (15.5, 15.5), odd ones at (47.5, 47.5). First frame [0, 10, 60, 70] (as above):
    points at (15, 25) and (45, 55), tight box side 30, re-centred frame 1.5 · 30 = 45. These stub points always
    span half the frame, so each pass shrinks it by 0.75 about the centre (30, 40): 60, 45, 33.75, 25.3125 after
    the fourth pass (the most). There the points land at 30 ∓ 16 · 25.3125/64 = 23.671875 and 36.328125 (x;
    y + 10), and every region box is centred on their midpoint (30, 40)."""
    lm = Landmarker(weights, device="cpu", detector="none", recentre=True)
    _stub_stages(monkeypatch, lm, lambda i: (15.5, 15.5) if i % 2 == 0 else (47.5, 47.5), (15.5, 15.5))
    [(face, global_points)] = staged(lm, _image(80, 100), [[10.0, 20.0, 50.0, 60.0]])
    expected_global = np.array([[23.671875, 33.671875] if i % 2 == 0 else [36.328125, 46.328125] for i in range(N)])
    np.testing.assert_allclose(global_points, expected_global, atol=1e-4)
    np.testing.assert_allclose(face.landmarks[JAW], expected_global[JAW], atol=1e-4)
    others = [i for i in range(N) if i not in JAW]
    np.testing.assert_allclose(face.landmarks[others], [[30.0, 40.0]] * len(others), atol=1e-4)


# --- runner --------------------------------------------------------------------------------------------------


@pytest.fixture
def image_files(tmp_path):
    paths = []
    for k, (h, w) in enumerate([(40, 50), (30, 60), (50, 40), (36, 36), (44, 52)]):
        p = tmp_path / f"img{k}.png"
        assert cv2.imwrite(str(p), _image(h, w, seed=k))
        paths.append(p)
    return paths


@pytest.mark.parametrize("batch_size, workers", [(8, 2), (1, 1), (2, 3)])
def test_runner_reports_a_bad_file_and_keeps_order(lm, tmp_path, image_files, batch_size, workers):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    missing = tmp_path / "missing.png"
    order = [image_files[0], bad, image_files[1], image_files[2], missing, image_files[3], image_files[4]]
    seen = []
    results = list(runner.run(lm, runner.file_items(order), batch_size=batch_size, workers=workers,
                              visit=lambda r, px: seen.append((r.image, px.shape))))
    assert [r.image for r in results] == [str(p) for p in order]
    assert results[1].error and "broken.jpg" in results[1].error and results[1].faces == []
    assert results[4].error and "missing.png" in results[4].error
    good = [r for r in results if r.error is None]
    assert len(good) == 5
    for r, p in zip(good, image_files):
        h, w = cv2.imread(str(p)).shape[:2]
        assert (r.width, r.height) == (w, h)
        assert len(r.faces) == 1
        np.testing.assert_array_equal(r.faces[0].box, [-0.5, -0.5, w - 0.5, h - 0.5])
    # each good image visited once (by the worker that ran it, so in any order)
    assert sorted(seen) == sorted((str(p), cv2.imread(str(p)).shape) for p in image_files)


def test_runner_results_equal_predict(lm, image_files):
    results = list(runner.run(lm, runner.file_items(image_files[:3]), batch_size=2))
    for r, p in zip(results, image_files):
        [face] = lm.predict(p)
        np.testing.assert_allclose(r.faces[0].landmarks, face.landmarks, atol=1e-3)


def test_runner_flushes_at_the_pixel_budget_with_the_same_results(lm, image_files, monkeypatch):
    """A budget below one image runs the networks image by image inside a batch: same landmarks."""
    whole = list(runner.run(lm, runner.file_items(image_files), batch_size=5, workers=1))
    calls = []
    real = lm.landmarks
    monkeypatch.setattr(lm, "landmarks", lambda ims, dets: calls.append(len(ims)) or real(ims, dets))
    monkeypatch.setattr(runner, "PIXEL_BUDGET", 1)
    split = list(runner.run(lm, runner.file_items(image_files), batch_size=5, workers=1))
    assert calls == [1] * 5
    for a, b in zip(whole, split):
        np.testing.assert_allclose(a.faces[0].landmarks, b.faces[0].landmarks, atol=1e-4)


def test_runner_shares_torch_threads_among_workers_and_restores_them(lm, image_files, monkeypatch):
    seen = []
    real = lm.landmarks
    monkeypatch.setattr(lm, "landmarks", lambda ims, dets: seen.append(torch.get_num_threads()) or real(ims, dets))
    old = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        list(runner.run(lm, runner.file_items(image_files * 2), batch_size=2, workers=2))  # 5 batches, 2 workers
        assert seen == [2] * 5 and torch.get_num_threads() == 4
        seen.clear()
        list(runner.run(lm, runner.file_items(image_files[:1]), batch_size=8, workers=2))  # one image: one worker
        assert seen == [4]
        gen = runner.run(lm, iter(runner.file_items(image_files)), batch_size=1, workers=2)
        next(gen)
        gen.close()  # a consumer that stops early still gets its threads back
        assert torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(old)


def test_runner_boxes_by_file_name(lm, image_files):
    boxes = {"img0.png": [[0.0, 0.0, 20.0, 20.0], [25.0, 10.0, 45.0, 30.0]], "img1.png": [],
             "img2.png": [[100.0, 100.0, 120.0, 120.0]]}
    results = list(runner.run(lm, runner.file_items(image_files[:4]), boxes=boxes))
    assert [len(r.faces) for r in results] == [2, 0, 0, 1]
    assert results[1].error is None  # no boxes: no faces, not a failure
    assert results[2].error and "outside" in results[2].error  # the box lies outside that image only
    np.testing.assert_array_equal(results[3].faces[0].box, [-0.5, -0.5, 35.5, 35.5])  # not in the file: whole image


def test_runner_folder_and_video_items(lm, tmp_path, image_files):
    items = runner.source_items(tmp_path)
    assert [i.image for i in items] == [str(p) for p in image_files]
    video = tmp_path / "clip.avi"
    vw = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for k in range(3):
        vw.write(np.full((48, 64, 3), 60 * k, np.uint8))
    vw.release()
    results = list(runner.run(lm, runner.source_items(video), batch_size=2))
    assert [(r.image, r.frame) for r in results] == [(str(video), k) for k in range(3)]
    assert all((r.width, r.height) == (64, 48) and len(r.faces) == 1 for r in results)
    [single] = runner.source_items(image_files[0])
    assert single.frame is None and single.load().shape == (40, 50, 3)


def test_frame_comes_from_the_detectors_landmark_box(weights, monkeypatch):
    """A detection's landmark_box, when given, frames the face instead of its box: the same stubbed points
    land where test_pixel_convention_without_recentre puts them for the box [10, 20, 50, 60]."""

    class Hinted:
        name = "hinted"

        def detect(self, image):
            return [Detection(np.array([0.0, 0.0, 99.0, 79.0]), 0.9, np.array([10.0, 20.0, 50.0, 60.0]))]

    lm = Landmarker(weights, device="cpu", detector=Hinted(), recentre=False)
    _stub_stages(monkeypatch, lm, lambda i: (0.0, 0.0) if i in JAW else (31.5, 31.5), (15.5, 15.5))
    [face] = lm.predict(_image(80, 100))
    np.testing.assert_allclose(face.landmarks[JAW], [[0.46875, 10.46875]] * len(JAW), atol=1e-4)
    np.testing.assert_array_equal(face.box, [0.0, 0.0, 99.0, 79.0])  # the reported box stays the detector's


@pytest.mark.parametrize("tolerance, most, passes", [(0.0, 2, 2), (0.2, 4, 4), (0.2, 3, 3), (0.3, 4, 1)])
def test_another_global_pass_only_while_the_frame_moves(weights, monkeypatch, tolerance, most, passes):
    """The stub of test_pixel_convention_with_recentre moves the frame [0, 10, 60, 70] by 0.25 of its side in
    every pass (side 60 → 45 → 33.75 → ..., centre (30, 40)). A tolerance below that re-runs the global stage on
    each new frame, up to `recentre_passes` passes; above it the first pass is kept."""
    lm = Landmarker(weights, device="cpu", detector="none", recentre=True, recentre_tolerance=tolerance, flip=False,
                    recentre_passes=most)
    lm.lost_face = 0.0  # the stub's confidence (0.25) would otherwise send it looking in smaller frames
    _stub_stages(monkeypatch, lm, lambda i: (15.5, 15.5) if i % 2 == 0 else (47.5, 47.5), (15.5, 15.5))
    calls = []
    stub = lm.model.run_global
    monkeypatch.setattr(lm.model, "run_global", lambda proxy, flip=False: calls.append(len(proxy)) or stub(proxy))
    [(face, global_points)] = staged(lm, _image(80, 100), [[10.0, 20.0, 50.0, 60.0]])
    assert len(calls) == passes
    half = 0.25 * 60 * 0.75 ** (passes - 1)  # the points sit a quarter of the last frame's side from its centre
    expected = np.array([[30 - half, 40 - half] if i % 2 == 0 else [30 + half, 40 + half] for i in range(N)])
    np.testing.assert_allclose(global_points, expected, atol=1e-4)


@pytest.mark.parametrize("flip", [False, True])
def test_passes_and_search_hold_for_one_call_only(weights, monkeypatch, flip):
    """The stub of test_another_global_pass_only_while_the_frame_moves moves the frame in every pass and scores
    its points 0.25, under a lost-face threshold of 0.3: by default the call runs 4 passes, then the search's two
    smaller frames 4 passes each (12); `passes=1, search=False` runs one pass; `passes=2` with the search, 2 + 2 · 2.
    With flip the final frame gets its mirrored pass once. The Landmarker's own settings are left as they were."""
    lm = Landmarker(weights, device="cpu", detector="none", recentre_tolerance=0.0, flip=flip, upright=False)
    lm.lost_face = 0.3
    _stub_stages(monkeypatch, lm, lambda i: (15.5, 15.5) if i % 2 == 0 else (47.5, 47.5), (15.5, 15.5))
    calls = []
    stub, pair = lm.model.run_global, lm.model.run_global_mirrored
    monkeypatch.setattr(lm.model, "run_global", lambda proxy, flip=False, direct=None:
                        calls.append("mirrored" if direct is not None else "pass") or stub(proxy, flip, direct))
    monkeypatch.setattr(lm.model, "run_global_mirrored", lambda proxy: calls.append("pass+mirrored") or pair(proxy))
    image, dets = _image(80, 100), [Detection(np.array([10.0, 20.0, 50.0, 60.0]), 1.0)]
    # with flip, a re-framing pass of one face takes its mirrored proxy along: its final frame needs no other
    later = "pass+mirrored" if flip else "pass"
    for options, expected in (({}, (["pass"] + [later] * 3) * 3), ({"passes": 1, "search": False}, ["pass"] + ["mirrored"] * flip),
                              ({"passes": 2}, ["pass", later] * 3), ({}, (["pass"] + [later] * 3) * 3)):
        calls.clear()
        [[face]] = lm.landmarks([image], [dets], **options)
        assert calls == expected, options
    assert (lm.recentre_passes, lm.lost_face, lm.recentre) == (4, 0.3, True)


def test_a_frame_far_larger_than_its_face_finds_the_face():
    """With the shipped weights, boxes from 0.6× to 3× the sample's face (centred on it) give the detector's points
    within 1 px on average (2 px at most): the frame converges in the re-centring passes, or a smaller frame is tried when the points are
    unsure in it."""
    from fflm.geometry import points_box
    from fflm.imageio import read_image
    from fflm.weights import asset

    lm = Landmarker(device="cpu")
    image = read_image(asset("astronaut.png"))
    [ref] = lm.predict(image)
    tight = points_box(ref.landmarks)
    centre, side = (tight[:2] + tight[2:]) / 2, (tight[2:] - tight[:2]).max()
    for k in (0.6, 2.0, 3.0):
        [face] = lm.predict(image, [np.r_[centre - k * side / 2, centre + k * side / 2]])
        err = np.linalg.norm(face.landmarks - ref.landmarks, axis=1)
        assert err.mean() < 1.0 and err.max() < 2.0, k
        assert face.quality > 0.9


@pytest.mark.parametrize("tolerance, faces, sizes", [(0.0, 2, [2, 4]), (1e9, 2, [2, 2]), (0.0, 3, [3, 3, 3])])
def test_flip_with_recentre_spends_no_mirrored_pass_on_a_replaced_frame(weights, monkeypatch, tolerance, faces, sizes):
    """The global passes run on the proxies alone, again on those whose frame moved (all, with tolerance 0; at most
    two passes here); every face gets its mirrored proxy once, on its final frame. A re-framing pass takes the
    mirrored proxies along when it and they fit in one call (rows_per_call, 4 on a CPU: two faces); three faces'
    re-framing pass runs alone and their mirrored pass after it. Faces that keep their frame (no second pass)
    get the result of a flip pass run from scratch on the same frames."""
    lm = Landmarker(weights, device="cpu", detector="none", recentre_tolerance=tolerance, recentre_passes=2,
                    upright=False)  # random weights' points may be rolled: no second round here
    lm.lost_face = 0.0
    assert lm.flip and lm.recentre and lm.model.rows_per_call == 4
    seen = []
    real = lm.model._run
    monkeypatch.setattr(lm.model, "_run", lambda net, head, x: (seen.append(len(x)) if net is lm.model.global_net
                                                                else None) or real(net, head, x))
    img, boxes = _image(80, 100), [[5.0, 5.0, 45.0, 45.0], [50.0, 30.0, 90.0, 70.0], [20.0, 10.0, 60.0, 50.0]][:faces]
    faces = staged(lm, img, boxes)
    assert seen == sizes
    if tolerance > 1:
        fs = lm.model.config.frame_scale
        frames = np.stack([square_box(np.asarray(b), fs) for b in boxes])
        with torch.inference_mode():
            ref = lm.model.run_global(lm._proxies([img] * len(boxes), frames), True)
        got = np.stack([g for _, g in faces])
        np.testing.assert_allclose(got, lm._to_image(ref.points, frames), atol=1e-3)


def test_precision_picks_the_dtype(monkeypatch):
    """float32 and bfloat16 as asked; auto is bfloat16 only where the device computes it natively; other names fail."""
    from fflm import inference

    cpu = torch.device("cpu")
    assert inference.compute_dtype("float32", cpu) == torch.float32
    assert inference.compute_dtype("bfloat16", cpu) == torch.bfloat16
    for native, want in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(inference, "native_bfloat16", lambda device, n=native: n)
        assert inference.compute_dtype("auto", cpu) == want
    with pytest.raises(ValueError, match="precision"):
        inference.compute_dtype("half", cpu)


def test_native_bfloat16_without_torchs_cpu_probes(monkeypatch):
    """torch's CPU probes are private: without them the answer is no (float32), never an error."""
    from conftest import real_native_bfloat16

    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    assert real_native_bfloat16(torch.device("cpu")) is False


@pytest.mark.parametrize("precision, dtype", [("float32", torch.float32), ("bfloat16", torch.bfloat16)])
def test_precision_runs_the_networks_in_that_dtype(weights, precision, dtype):
    """Every convolution of both stages computes in the chosen dtype; the points come back as float64 and agree
    with float32's to well within a pixel (bfloat16 keeps 8 bits of mantissa; the soft-argmax stays float32)."""
    ref = Landmarker(weights, device="cpu", detector="none", precision="float32")
    lm = Landmarker(weights, device="cpu", detector="none", precision=precision)
    assert lm.dtype == dtype
    seen = set()
    hooks = [m.register_forward_hook(lambda mod, inp, out: seen.add(out.dtype))
             for m in lm.model.modules() if isinstance(m, torch.nn.Conv2d)]
    hooks += [m.register_forward_hook(lambda mod, inp, out: seen.add(out.dtype))
              for m in lm.model.stacked_regions.modules() if isinstance(m, torch.nn.Conv2d)]
    img = _image(80, 100)
    [face] = lm.predict(img)
    for h in hooks:
        h.remove()
    assert seen == {dtype}
    assert {p.dtype for p in lm.model.global_net.parameters()} == {dtype}  # cast once, not by autocast per call
    assert lm.model.mean.dtype == torch.float32  # normalisation (and the shape model, when there is one) stay float32
    [want] = ref.predict(img)
    assert face.landmarks.dtype == np.float64 and np.isfinite(face.landmarks).all()
    assert np.abs(face.landmarks - want.landmarks).mean() < 0.2


def test_second_pass_only_for_the_faces_that_moved():
    """Two faces in one call: only the one whose frame moves goes through the global stage again, and each
    face keeps its own result."""
    from fflm import pipeline

    frames = np.array([[0.0, 0.0, 60.0, 60.0], [0.0, 0.0, 60.0, 60.0]])
    proposed = np.array([[1.0, 1.0, 61.0, 61.0], [20.0, 0.0, 80.0, 60.0]])
    np.testing.assert_allclose(pipeline._move(frames, proposed), [1 / 60, 20 / 60])
    g = StageOutput(torch.zeros(2, 3, 2), torch.zeros(2, 3), [torch.zeros(2, 3, 2)])
    again = StageOutput(torch.ones(1, 3, 2), torch.ones(1, 3), [torch.ones(1, 3, 2)])
    merged = pipeline._replace(g, again, torch.tensor([1]))
    assert merged.points[0].abs().sum() == 0 and (merged.points[1] == 1).all()
    assert (merged.scores[1] == 1).all() and (merged.stack_points[0][1] == 1).all()
    assert g.points.abs().sum() == 0  # the first pass's output is not modified in place


class _SureOnBackground:
    """YuNet, except that on `photo` itself it is sure of one face on the background: an upside-down photo whose
    upright pass the detector trusts (as YuNet does with many upside-down faces)."""

    name = "yunet"

    def __init__(self, photo: np.ndarray, side: float) -> None:
        from fflm.detect.yunet import YuNetDetector

        self.real, self.photo, self.side = YuNetDetector(tiles="off"), photo, side

    def detect(self, image: np.ndarray):
        if image.shape == self.photo.shape and np.array_equal(image, self.photo):
            return [Detection(np.array([400.0, 400.0, 400.0 + self.side, 400.0 + self.side]), 0.95)]
        return self.real.detect(image)


@pytest.mark.parametrize("side,turned_back", [(100.0, True), (40.0, False)])
def test_a_sure_face_whose_points_are_on_no_face_makes_auto_look_at_other_orientations(side, turned_back):
    """--rotations auto: the upright pass is sure of a face, but its points say it is none (quality < 0.5): the
    best other orientation (here the photo turned 180°) is landmarked and its face, with quality >= 0.5, kept,
    its points those of the upright photo turned back. A small sure face is not doubted (low quality is normal
    for small faces): its result stays."""
    from fflm.detect.rotations import RotatingDetector

    upright = read_image(asset("astronaut.png"))
    photo = np.ascontiguousarray(np.rot90(upright, 2))
    h, w = upright.shape[:2]
    truth = Landmarker(device="cpu").predict(upright)[0].landmarks
    for mode, fixed in (("auto", turned_back), ("none", False)):
        lm = Landmarker(device="cpu", detector=RotatingDetector(_SureOnBackground(photo, side), mode))
        faces = lm.predict(photo)
        assert len(faces) == 1
        if fixed:
            back = np.stack([w - 1 - faces[0].landmarks[:, 0], h - 1 - faces[0].landmarks[:, 1]], axis=1)
            assert faces[0].quality >= 0.5 and np.linalg.norm(back - truth, axis=1).mean() < 1.0
        else:
            assert faces[0].quality < 0.5 and faces[0].box[0] == 400.0


class _UnsureUpright:
    """A detector unsure of the upright face (0.8) that scores a turned copy of the photo higher (0.85, on the
    background): --rotations auto then picks the wrong orientation, as the built-in detector does on some faces."""

    name = "yunet"

    def __init__(self, photo: np.ndarray) -> None:
        from fflm.detect.yunet import YuNetDetector

        self.real, self.photo = YuNetDetector(tiles="off"), photo
        self.turned = np.ascontiguousarray(np.rot90(photo, 1))

    def detect(self, image: np.ndarray):
        if image.shape == self.photo.shape and np.array_equal(image, self.photo):
            return [replace(d, score=0.8) for d in self.real.detect(image)]
        if image.shape == self.turned.shape and np.array_equal(image, self.turned):
            return [Detection(np.array([20.0, 20.0, 140.0, 140.0]), 0.85)]
        return []


def test_auto_looks_again_at_the_photo_as_it_is_when_a_turned_pass_won_with_points_on_no_face():
    """A turned orientation outscored the unsure upright face, but its points are on no face: the photo as it is
    is landmarked too and its face, on a face, kept; with --rotations none there is no turned pass to begin with."""
    from fflm.detect.rotations import RotatingDetector

    photo = read_image(asset("astronaut.png"))
    truth = Landmarker(device="cpu").predict(photo)[0].landmarks
    lm = Landmarker(device="cpu", detector=RotatingDetector(_UnsureUpright(photo), "auto"))
    chosen = lm.detector.detect(photo)
    assert [d.score for d in chosen] == [0.85]  # the wrong orientation wins on scores alone
    assert lm.landmarks([photo], [chosen])[0][0].quality < 0.5
    faces = lm.predict(photo)
    assert len(faces) == 1 and faces[0].quality >= 0.5 and faces[0].score == 0.8
    assert np.linalg.norm(faces[0].landmarks - truth, axis=1).mean() < 1.0
