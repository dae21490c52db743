"""fflm.detect.metrics: greedy matching and DetectionTally on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from fflm.detect.metrics import DetectionTally, face_size, match


def test_face_size_is_the_root_of_the_area():
    np.testing.assert_allclose(face_size([[0, 0, 4, 9], [0, 0, -1, 5]]), [6.0, 0.0])


def test_greedy_matching_gives_each_truth_to_the_first_detection_that_takes_it():
    truth = np.array([[0, 0, 10, 10], [5, 0, 15, 10.0]])
    # a: IoU 70/130 = 0.54 with the first, 80/120 = 0.67 with the second -> takes the second (its best);
    # b: the second again (taken), and 50/150 = 0.33 with the first -> unmatched
    dets = np.array([[3, 0, 13, 10], [5, 0, 15, 10.0]])
    owner, taken = match(dets, truth, 0.5)
    assert owner.tolist() == [1, -1] and taken.tolist() == [False, True]
    owner, taken = match(dets[::-1], truth, 0.5)  # b first: it takes the second, a then the first (0.54)
    assert owner.tolist() == [1, 0] and taken.tolist() == [True, True]
    t = DetectionTally(min_size=5)
    t.add(dets, truth)
    assert (t.tp, t.fp) == (1, 1) and t.recall() == 0.5 and t.precision() == 0.5


def test_small_faces_and_neutral_regions_are_neither_right_nor_wrong():
    truth = np.array([[0, 0, 40, 40], [100, 100, 110, 110.0]])  # 40 px (evaluated) and 10 px (too small)
    neutral = np.array([[200, 200, 260, 260.0]])
    dets = np.array([
        [1, 1, 41, 41],  # IoU 1521/1679 = 0.91 with the 40 px face: a true positive
        [0, 0, 40, 40],  # the same face again: already taken, a false positive
        [100, 100, 110, 110],  # the small face: neutral
        [210, 210, 230, 230],  # IoU 400/3600 with the neutral region, but its centre lies inside: neutral
        [300, 300, 340, 340.0],  # nothing there: a false positive
    ])
    t = DetectionTally(min_size=20)
    t.add(dets, truth, neutral)
    assert (t.tp, t.fp) == (1, 2)
    assert t.found_by_size == [(40.0, True)]
    assert t.precision() == pytest.approx(1 / 3) and t.recall(32) == 1.0 and t.count(32) == 1 and t.count(41) == 0
    assert np.isnan(t.recall(41))


def test_a_tally_adds_up_over_images():
    t = DetectionTally(min_size=20)
    t.add(np.zeros((0, 4)), np.array([[0, 0, 30, 30.0]]))  # missed
    t.add(np.array([[0, 0, 50, 50.0]]), np.array([[0, 0, 50, 50.0]]))  # found
    t.add(np.array([[0, 0, 50, 50.0]]), np.zeros((0, 4)))  # a photo without faces: a false positive
    assert (t.tp, t.fp) == (1, 1)
    assert t.recall() == 0.5 and t.recall(0, 40) == 0.0 and t.recall(40) == 1.0 and t.precision() == 0.5
