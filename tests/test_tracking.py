"""fflm.tracking on drawn clips: bright discs as "faces", found by a stub detector and "landmarked" by a stub that
reads the disc inside the frame it is given, so the tracker's own logic is what is tested (and fast)."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from conftest import shape68

from fflm.detect import Detection
from fflm.geometry import points_box, square_box
from fflm.pipeline import Face
from fflm.smoothing import OneEuroParams
from fflm.tracking import Tracker, face_quality, greedy_match

W, H = 160, 120
R = 10  # the discs' radius


def frame(*discs: tuple[float, float], r: int = R, size: tuple[int, int] = (W, H), grey: int = 0) -> np.ndarray:
    img = np.full((size[1], size[0], 3), grey, np.uint8)
    for x, y in discs:
        cv2.circle(img, (int(round(x * 16)), int(round(y * 16))), r * 16, (255, 255, 255), -1, cv2.LINE_AA, 4)
    return img


class DiscDetector:
    """Every bright blob is a face; counts its runs."""

    name = "discs"

    def __init__(self) -> None:
        self.runs = 0
        self.blind = False  # finds nothing

    def detect(self, image: np.ndarray) -> list[Detection]:
        self.runs += 1
        if self.blind:
            return []
        n, _, stats, _ = cv2.connectedComponentsWithStats((image[..., 0] > 127).astype(np.uint8))
        return [Detection(np.array([x - 3, y - 3, x + w + 3, y + h + 3], np.float64), 0.9)
                for x, y, w, h, area in stats[1:] if area > 20]


class DiscLandmarker:
    """Landmarks of the disc (radius R) inside each detection's face frame, as the pipeline frames a face (the
    square of the landmark box grown 1.5×, or of the detector box): its centre from the visible part's extent,
    as a landmark model places a face cut by the image edge; quality 0.5 with a disc there, 0 without."""

    def __init__(self) -> None:
        self.detector = DiscDetector()
        self.frames: list[np.ndarray] = []
        self.scheme = SimpleNamespace(norm_points=(36, 45))  # the outer eye corners of shape68
        self.calls: list[tuple[int, int | None, bool]] = []  # (faces, passes, search) of each call
        self.dets: list[Detection] = []
        self.roll = 0.0  # degrees clockwise: the "faces" it finds are rolled by this
        self.quality = 0.5  # of a face where there is a disc

    def landmarks(self, images, detections, passes=None, search=True) -> list[list[Face]]:
        self.calls.append((sum(map(len, detections)), passes, search))
        a = np.radians(self.roll)
        shape = shape68() @ np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]).T
        out = []
        for image, dets in zip(images, detections):
            faces = []
            for d in dets:
                self.dets.append(d)
                fr = square_box(d.box if d.landmark_box is None else d.landmark_box, 1.5)
                self.frames.append(fr)
                x0, y0 = max(int(fr[0]), 0), max(int(fr[1]), 0)
                ys, xs = np.nonzero(image[y0:max(int(fr[3]), 0), x0:max(int(fr[2]), 0), 0] > 127)
                if len(xs) < 20:
                    c, q = (fr[:2] + fr[2:]) / 2, 0.0
                else:
                    h, w = image.shape[:2]
                    c = np.array([_centre(xs.min() + x0, xs.max() + x0, w), _centre(ys.min() + y0, ys.max() + y0, h)])
                    q = self.quality
                faces.append(Face(d.box, d.score, c + shape * 2 * R, np.full(68, q)))
            out.append(faces)
        return out


def _centre(lo: int, hi: int, size: int) -> float:
    """A disc's centre along one axis from its visible pixels' extent (one edge may be the image's)."""
    if lo == 0 and hi < size - 1:
        return hi + 0.5 - R
    if hi == size - 1 and lo > 0:
        return lo - 0.5 + R
    return (lo + hi) / 2


def run(clip, detect_every=5, **kw) -> tuple[list[list[Face]], DiscLandmarker, Tracker]:
    lm = DiscLandmarker()
    tracker = Tracker(lm, detect_every, **kw)
    return [tracker.update(f, k / 25) for k, f in enumerate(clip)], lm, tracker


def ids(faces: list[list[Face]]) -> list[list[int]]:
    return [[f.track for f in fs] for fs in faces]


def test_a_face_that_stays_keeps_its_id_and_the_detector_runs_every_n_frames():
    clip = [frame((40 + 1.5 * k, 60 + 0.5 * k)) for k in range(20)]
    faces, lm, tracker = run(clip, detect_every=5)
    assert ids(faces) == [[0]] * 20
    assert lm.detector.runs == tracker.detections == 4  # frames 0, 5, 10, 15
    for k, [f] in enumerate(faces):  # the landmarks follow the disc (centre of the 68 points = disc centre)
        assert np.allclose(f.landmarks.mean(0) - shape68().mean(0) * 20, (40 + 1.5 * k, 60 + 0.5 * k), atol=0.3)
    # between detections the face is framed from its previous landmarks moved by their last motion: frame k's
    # frame is frame k - 1's landmarks' box plus (frame k - 1 minus frame k - 2): after frame 2, frames step by
    # the motion (frame 0 is framed from the detector's box, frame 1 from frame 0's landmarks, with no motion yet)
    assert np.allclose(lm.frames[2][:2] - lm.frames[1][:2], (3.0, 1.0), atol=0.3)
    assert all(np.allclose(b[:2] - a[:2], (1.5, 0.5), atol=0.3) for a, b in zip(lm.frames[2:], lm.frames[3:]))


def test_a_face_that_enters_is_found_at_the_next_detection_with_a_new_id():
    clip = [frame((40, 60), *([(120, 60)] if k >= 7 else [])) for k in range(16)]
    faces, lm, _ = run(clip, detect_every=5)
    assert ids(faces) == [[0]] * 10 + [[0, 1]] * 6  # seen at frame 10, the first detection after it came
    assert lm.detector.runs == 4  # 0, 5, 10, 15


def test_a_face_that_leaves_the_picture_ends_its_track_and_the_detector_runs_next():
    clip = [frame((40, 60), (130 + 8 * k, 60)) for k in range(12)]  # the second disc's centre leaves at k = 4
    faces, lm, _ = run(clip, detect_every=100)
    assert ids(faces) == [[0, 1]] * 4 + [[0]] * 8
    assert lm.detector.runs == 2  # the first frame, and the one after the track was lost


def test_a_face_that_vanishes_ends_when_its_quality_falls():
    clip = [frame((40, 60), *([(110, 60)] if k < 4 else [])) for k in range(8)]
    faces, lm, _ = run(clip, detect_every=100)
    assert ids(faces) == [[0, 1]] * 4 + [[0]] * 4
    assert lm.detector.runs == 2


def test_a_face_half_out_of_the_picture_keeps_its_id_while_the_detector_finds_it():
    """A disc leaving by the left edge, centre x 12, 9, ..., -9, the detector on every frame: on frames 5 and 6
    its landmarks' centre (-2.5, -5.5) is outside the picture, but the detector still finds its visible part, so
    it goes on with its id; on frame 7 too little of it is left to find, and the track ends."""
    clip = [frame((12 - 3 * k, 60), (120, 60)) for k in range(8)]
    faces, lm, _ = run(clip, detect_every=1)
    assert ids(faces) == [[0, 1]] * 7 + [[1]]
    assert faces[6][0].landmarks.mean(0)[0] - shape68().mean(0)[0] * 2 * R == pytest.approx(-5.5)


def test_a_face_is_moved_by_its_motion_between_two_sure_frames_only():
    """A disc moving 2 px a frame whose landmarks score under min_quality on frame 3 (the detector keeps it): frame
    4 is framed from frame 3's points as they are, frame 5 from frame 4's as they are (frame 3's points are no
    base for a motion), frame 6 from frame 5's moved by their motion again."""
    lm = DiscLandmarker()
    tracker = Tracker(lm, 1)
    for k in range(7):
        lm.quality = 0.1 if k == 3 else 0.5
        assert [f.track for f in tracker.update(frame((40 + 2 * k, 60)), k / 25)] == [0]
    steps = [round(float(b[0] - a[0]), 1) for a, b in zip(lm.frames[3:], lm.frames[4:])]
    assert steps == [0.0, 2.0, 4.0]  # 3→4: both unmoved; 4→5: unmoved, on a face 2 px on; 5→6: 2 px + 2 px of motion


def test_a_face_of_low_quality_goes_on_while_the_detector_finds_it_on_every_frame():
    lm = DiscLandmarker()
    tracker = Tracker(lm, 3, min_quality=0.6)  # every face scores 0.5
    found = []
    for k in range(9):
        lm.detector.blind = k >= 5  # the detector no longer finds it from frame 5
        found.append([f.track for f in tracker.update(frame((40, 60)), k / 25)])
    assert found == [[0]] * 5 + [[]] * 4
    assert lm.detector.runs == 7  # frames 0-5 (each after a face in doubt), 6 (after the loss); then every 3rd


def test_a_frame_size_change_ends_all_tracks():
    clip = [frame((40, 60)) for _ in range(3)] + [frame((40, 60), size=(W + 20, H)) for _ in range(3)]
    faces, lm, _ = run(clip, detect_every=100)
    assert ids(faces) == [[0]] * 3 + [[1]] * 3
    assert lm.detector.runs == 2


def test_a_scene_cut_ends_all_tracks_even_where_a_face_is_at_the_same_place():
    clip = [frame((40, 60)) for _ in range(3)] + [frame((40, 60), grey=200) for _ in range(3)]
    faces, lm, _ = run(clip, detect_every=100)
    assert ids(faces) == [[0]] * 3 + [[1]] * 3


def test_two_faces_keep_their_ids_in_id_order_while_crossing_in_score_order():
    clip = [frame((30 + 4 * k, 40), (130 - 4 * k, 80)) for k in range(20)]
    faces, _, _ = run(clip, detect_every=3)
    assert ids(faces) == [[0, 1]] * 20
    assert all(fs[0].landmarks[:, 0].mean() < fs[1].landmarks[:, 0].mean() for fs in faces[:6])
    assert all(fs[0].landmarks[:, 0].mean() > fs[1].landmarks[:, 0].mean() for fs in faces[-5:])


def test_tracked_boxes_keep_the_detectors_box_around_the_landmarks():
    clip = [frame((40 + 2 * k, 60)) for k in range(6)]
    faces, _, _ = run(clip, detect_every=100)
    first = faces[0][0].box
    for k, [f] in enumerate(faces):
        assert np.allclose(f.box, first + [2 * k, 0, 2 * k, 0], atol=0.5)


def test_smoothing_keeps_ids_and_starts_from_the_raw_points():
    clip = [frame((40 + 2 * k, 60)) for k in range(8)]
    raw, _, _ = run(clip)
    smooth, _, _ = run(clip, smooth=OneEuroParams(min_cutoff=0.5, beta=0.0))
    assert ids(smooth) == ids(raw)
    assert np.allclose(smooth[0][0].landmarks, raw[0][0].landmarks)
    assert (smooth[-1][0].landmarks[:, 0].mean() < raw[-1][0].landmarks[:, 0].mean() - 1)  # behind a moving face


def test_faces_framed_from_their_own_landmarks_get_one_global_pass_and_no_search():
    """Frames 0 and 3 are detection frames; a second face enters on frame 3. A face framed from a detector's box
    (frame 0's, the newcomer's) goes through the landmark stage with its defaults (passes None, search on), a face
    framed from its own landmarks with TRACKED_PASSES passes and no search, on detection frames too; each frame's
    faces still come back with their own ids."""
    from fflm.tracking import TRACKED_PASSES

    assert TRACKED_PASSES == 1
    clip = [frame((40 + k, 60), *([(120, 60)] if k >= 3 else [])) for k in range(5)]
    faces, lm, _ = run(clip, detect_every=3)
    assert ids(faces) == [[0]] * 3 + [[0, 1]] * 2
    tracked, detected = (1, 1, False), (1, None, True)
    assert lm.calls == [detected, tracked, tracked, tracked, detected, (2, 1, False)]
    assert faces[3][1].landmarks[:, 0].mean() == pytest.approx(120 + shape68()[:, 0].mean() * 2 * R, abs=0.3)


@pytest.mark.parametrize("roll, quality, framed", [(30.0, 0.5, 30.0), (-25.0, 0.5, -25.0), (12.0, 0.5, 0.0),
                                                  (30.0, 0.45, 0.0)])
def test_a_rolled_face_is_framed_with_the_roll_of_its_last_landmarks(roll, quality, framed):
    """A face rolled by MIN_ROLL (20°) or more whose points are trusted with their roll (quality 0.5 or more, as the
    landmark stage trusts them) is framed, between detections, with its last landmarks' roll and their square in
    the upright frame, centred on the face; a face rolled less, or of lower quality, is framed upright from its
    landmarks' box. The detector's own frame (frame 0) has no roll."""
    lm = DiscLandmarker()
    lm.roll, lm.quality = roll, quality
    tracker = Tracker(lm, 100)
    faces = [tracker.update(frame((60 + 2 * k, 60)), k / 25) for k in range(4)]
    assert ids(faces) == [[0]] * 4
    assert [d.roll for d in lm.dets] == pytest.approx([0.0] + [framed] * 3, abs=1e-6)
    def centre(box: np.ndarray) -> np.ndarray:
        return (box[:2] + box[2:]) / 2

    points = [fs[0].landmarks for fs in faces]
    for k, d in enumerate(lm.dets[1:], start=1):  # frame k is framed from frame k - 1's points, moved as they moved
        moved = centre(points_box(points[k - 1])) - centre(points_box(points[k - 2])) if k > 1 else np.zeros(2)
        if framed:  # the upright square: the points' box in the turned frame, its centre turned back
            a = np.radians(roll)
            back = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
            up = points[k - 1] @ back.T
            np.testing.assert_allclose(centre(d.landmark_box), back.T @ centre(np.r_[up.min(0), up.max(0)]) + moved)
            assert d.landmark_box[2] - d.landmark_box[0] == pytest.approx((up.max(0) - up.min(0)).max())
        else:
            np.testing.assert_allclose(d.landmark_box, points_box(points[k - 1]) + np.tile(moved, 2))


@pytest.mark.parametrize("mode, runs", [("auto", [6, 1, 1]), ("all", [6, 6, 6]), ("none", [1, 1, 1])])
def test_detection_frames_with_live_tracks_look_only_at_the_frame_as_it_is(mode, runs):
    """A face scoring under rotations.SURE sends `--rotations auto` to five turned and tilted copies of the frame
    (six detector passes) while no track is live (frame 0); with the face tracked, the detection frames 3 and 6
    run one pass. `all` asks for every orientation on every detection frame; `none` never turns."""
    from fflm.detect.rotations import RotatingDetector

    lm = DiscLandmarker()
    inner = lm.detector
    inner.detect = lambda image, found=inner.detect: [Detection(d.box, 0.8) for d in found(image)]
    lm.detector = RotatingDetector(inner, mode)
    tracker = Tracker(lm, 3)
    passes = []
    for k in range(7):
        before = inner.runs
        assert [f.track for f in tracker.update(frame((60, 60)), k / 25)] == [0]
        passes.append(inner.runs - before)
    assert [n for n in passes if n] == runs and tracker.detections == 3


def test_detect_every_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        Tracker(DiscLandmarker(), 0)


def test_face_quality_is_the_faces_own_score_when_it_has_one():
    face = Face(np.zeros(4), 0.9, np.zeros((68, 2)), np.full(68, 0.25))
    assert face_quality(face) == 0.25
    assert face_quality(SimpleNamespace(quality=0.75, landmark_scores=np.zeros(68))) == 0.75


def test_greedy_match_takes_the_best_overlaps_first():
    tracks = np.array([[0, 0, 10, 10], [20, 0, 30, 10]], float)
    dets = np.array([[1, 0, 11, 10], [0, 0, 10, 10], [50, 50, 60, 60]], float)
    # IoU(t0, d1) = 1 beats IoU(t0, d0) = 9/11; d0 overlaps nothing else; d2 overlaps nothing
    assert greedy_match(tracks, dets, 0.3) == [(0, 1, 1.0)]
    assert greedy_match(tracks, dets[[0, 2]], 0.3) == [(0, 0, pytest.approx(90 / 110))]
    assert greedy_match(tracks, np.zeros((0, 4)), 0.3) == []
