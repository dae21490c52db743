"""fflm.detect.rotations (quarter turns) and fflm.upright (rolled faces framed upright): hand-made cases and the
shipped models on the turned and rolled sample."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fflm.detect.base import Detection
from fflm.detect.rotations import RotatingDetector, unturn, unturn_points
from fflm.upright import needs_turn, points_detection, restore, upright_patch
from fflm.weights import asset


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_unturn_points_finds_the_marked_pixel(k):
    image = np.zeros((5, 7))
    image[1, 4] = 1  # x 4, y 1
    y, x = np.argwhere(np.rot90(image, k) == 1)[0]
    np.testing.assert_allclose(unturn_points(np.array([x, y]), k, 7, 5), [4, 1])


def test_unturn_maps_boxes_by_their_edges_and_the_roll_by_the_turn():
    # the first column of the 7 x 5 image turned once (5 wide, 7 high) is the original's first row
    d = unturn(Detection(np.array([-0.5, -0.5, 0.5, 6.5]), 0.9), 1, 7, 5)
    np.testing.assert_allclose(d.box, [-0.5, -0.5, 6.5, 0.5])
    assert d.roll == 90.0 and d.score == 0.9 and d.landmark_box is None
    assert unturn(Detection(np.array([0, 0, 1, 1.0]), 0.5), 3, 7, 5).roll == -90.0


class OneWay:
    """Finds one face only in the photo turned by `k` quarter turns (a 20 x 10 photo: turned once, 10 x 20)."""

    name = "fake"

    def __init__(self, k: int, score: float = 0.95) -> None:
        self.k, self.score, self.calls = k, score, 0

    def finds(self, image) -> bool:
        return image.shape[:2] == ((20, 10) if self.k % 2 else (10, 20)) and image[0, 0] == self.k

    def detect(self, image):
        self.calls += 1
        return [Detection(np.array([1.0, 2.0, 3.0, 4.0]), self.score)] if self.finds(image) else []


def photo_for(k: int) -> np.ndarray:
    """A 20 x 10 photo whose top-left pixel, after `k` quarter turns, holds the value k."""
    image = np.zeros((10, 20), np.uint8)
    corner = np.zeros((10, 20), bool)
    turned = np.rot90(corner, k).copy()
    turned[0, 0] = True
    image[np.rot90(turned, -k)] = k
    return image


def test_auto_looks_at_the_turns_only_when_the_photo_as_it_is_has_no_sure_face():
    det = RotatingDetector(OneWay(2), "auto")
    [d] = det.detect(photo_for(2))
    assert det.inner.calls == 6 and abs(d.roll) == 180.0  # as it is, 3 quarter turns, 2 tilts
    np.testing.assert_allclose(d.box, unturn(Detection(np.array([1.0, 2.0, 3.0, 4.0]), 1), 2, 20, 10).box)
    det = RotatingDetector(OneWay(0), "auto")
    assert len(det.detect(photo_for(0))) == 1 and det.inner.calls == 1  # a sure face: no turn tried
    det = RotatingDetector(OneWay(2), "none")
    assert det.detect(photo_for(2)) == [] and det.inner.calls == 1
    det = RotatingDetector(OneWay(1, score=0.5), "all")
    assert len(det.detect(photo_for(1))) == 1 and det.inner.calls == 6


class Glancing(OneWay):
    """OneWay with glances: a glance finds the face in the photo turned by `k` at `glance_score`, and in the photo
    as it is (one marked 7 at its top left) at `upright_glance` (None: nothing there)."""

    def __init__(self, k: int, score: float = 0.95, glance_score: float = 0.8, upright_glance=None) -> None:
        super().__init__(k, score)
        self.glance_score, self.upright_glance, self.glances = glance_score, upright_glance, 0

    def glance(self, image):
        self.glances += 1
        if self.upright_glance is not None and image.shape[:2] == (10, 20) and image[0, 0] == 7:
            return [Detection(np.array([5.0, 2.0, 9.0, 6.0]), self.upright_glance)]
        return [Detection(np.array([1.0, 2.0, 3.0, 4.0]), self.glance_score)] if self.finds(image) else []


def test_auto_compares_the_orientations_by_glances_and_runs_only_the_winner_in_full():
    det = RotatingDetector(Glancing(2), "auto")
    [d] = det.detect(photo_for(2))
    # a full pass as it is, then six glances (3 quarter turns, 2 tilts, as it is), then the winner's full pass
    assert det.inner.glances == 6 and det.inner.calls == 2 and d.score == 0.95 and abs(d.roll) == 180.0
    np.testing.assert_allclose(d.box, unturn(Detection(np.array([1.0, 2.0, 3.0, 4.0]), 1), 2, 20, 10).box)


def test_auto_keeps_the_photo_as_it_is_on_a_tie_or_when_no_glance_finds_a_face():
    class Unsure(Glancing):  # an unsure face in the photo as it is, none anywhere else
        def detect(self, image):
            self.calls += 1
            return [Detection(np.array([5.0, 2.0, 9.0, 6.0]), 0.5)] if image.shape[:2] == (10, 20) and image[0, 0] == 7 else []

    for det, glances in ((RotatingDetector(Unsure(2, glance_score=0.6, upright_glance=0.6), "auto"), 6),  # tie
                         (RotatingDetector(Unsure(2, glance_score=0.6, upright_glance=0.7), "auto"), 6),  # as it is wins
                         (RotatingDetector(Unsure(5, upright_glance=0.6), "auto"), 5)):  # no turned glance finds a face
        photo = photo_for(2)  # its face turned by 180°, and the unsure one as it is
        photo[0, 0] = 7
        [d] = det.detect(photo)
        assert d.score == 0.5 and d.roll == 0.0 and det.inner.glances == glances and det.inner.calls == 1


def test_a_glance_is_one_untiled_pass_at_half_the_proxy(monkeypatch):
    from fflm.detect.yunet import YuNetDetector

    det = YuNetDetector()
    sizes = []
    run = det._run
    monkeypatch.setattr(det, "_run", lambda small: sizes.append(small.shape[:2]) or run(small))
    det.glance(np.zeros((960, 1280, 3), np.uint8))
    assert sizes == [(det.proxy * 3 // 8, det.proxy // 2)]


def test_points_detection_and_when_to_turn():
    pts = np.array([[0.0, 0.0], [10.0, 10.0], [0.0, 10.0]])  # points 0 -> 1 at 45° clockwise
    d = points_detection(pts, (0, 1), Detection(np.array([0, 0, 1, 1.0]), 0.8))
    assert d.roll == pytest.approx(45.0) and d.score == 0.8
    # upright frame: the three points span 10·√2 along the eye line and 5·√2 across it
    side = d.landmark_box[2] - d.landmark_box[0]
    assert side == pytest.approx(10 * np.sqrt(2))
    assert needs_turn(45.0, 0.0) and not needs_turn(15.0, 0.0) and not needs_turn(45.0, 40.0)
    assert not needs_turn(-175.0, 178.0) and needs_turn(-170.0, 170.0)  # 7° and 20° apart, across ±180°


def test_the_patch_turns_the_face_upright_and_its_map_turns_points_back():
    image = np.zeros((200, 200, 3), np.uint8)
    d = Detection(np.array([80.0, 80, 120, 120]), 0.9, np.array([80.0, 80, 120, 120]), None, 90.0)
    patch, inside, back = upright_patch(image, d)
    assert patch.shape == (120, 120, 3)  # 3 x the side
    np.testing.assert_allclose(inside.box, [39.5, 39.5, 79.5, 79.5])
    # a point right of the centre in the patch (the face's own "right" after turning back by -90°) lies below it
    np.testing.assert_allclose(restore(np.array([[69.5, 59.5]]), back), [[100.0, 110.0]], atol=1e-9)  # centre (100, 100)
    assert upright_patch(image, Detection(d.box, 0.9, d.box, None, 10.0)) is None


@pytest.fixture(scope="module")
def sample():
    from fflm.imageio import read_image
    from fflm.pipeline import Landmarker

    lm = Landmarker(device="cpu")
    image = read_image(asset("astronaut.png"))
    [face] = lm.predict(image)
    return lm, image, face


@pytest.mark.parametrize("k", [1, 2, 3])
def test_the_sample_turned_by_quarter_turns_gives_the_same_points(sample, k):
    lm, image, face = sample
    [got] = lm.predict(np.ascontiguousarray(np.rot90(image, k)))
    h, w = image.shape[:2]
    np.testing.assert_allclose(unturn_points(got.landmarks, k, w, h), face.landmarks, atol=1.5)


@pytest.mark.parametrize("angle", [30, -45])
def test_the_sample_rolled_gives_the_rolled_points(sample, angle):
    lm, image, face = sample
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, 1.0)
    rolled = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    [got] = lm.predict(rolled)
    err = np.linalg.norm(got.landmarks - (face.landmarks @ m[:, :2].T + m[:, 2]), axis=1)
    assert err.mean() < 1.0


def test_a_tilted_canvas_holds_the_photo_and_maps_points_back():
    from fflm.detect.rotations import tilt, untilt

    image = np.zeros((40, 60, 3), np.uint8)
    canvas, back = tilt(image, 45.0)
    side = (60 + 40) / np.sqrt(2)
    assert canvas.shape[:2] == (int(np.ceil(side)), int(np.ceil(side)))
    forward = cv2.invertAffineTransform(back)
    kps = np.array([[10.0, 10], [30, 10], [20, 20], [12, 30], [28, 30]])  # an upright face in the photo
    d = untilt(Detection(np.array([0, 0, 5, 5.0]), 0.8, None, kps @ forward[:, :2].T + forward[:, 2]), back, 45.0)
    np.testing.assert_allclose(d.keypoints, kps, atol=1e-9)
    assert d.roll == pytest.approx(0.0, abs=1e-9) and d.score == 0.8
    # on the canvas the photo's right-pointing eye line points down-right: the photo turned 45° clockwise
    v = forward[:, :2] @ np.array([1.0, 0])
    assert np.degrees(np.arctan2(v[1], v[0])) == pytest.approx(45.0)
