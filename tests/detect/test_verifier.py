"""The detector's second stage: crops, joint scores, re-scoring, the weights file, its training script."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import faces, randomise_batchnorm, scene_folder
from fflm.detect.builtin import BuiltinDetector
from fflm.detect.model import DetectorConfig, FaceNet
from fflm.detect.run import infer
from fflm.train.detector_verifier import harvest, jitter_box, label_candidates, main
from fflm.detect.verifier import (FaceVerifier, VerifierConfig, apply_deltas, box_deltas, candidate_threshold,
                                  face_crops, joint_score, verify)
from fflm.detect.weights import load_detector, save_detector
from fflm.model.serving import for_inference

torch.set_num_threads(1)
TINY = VerifierConfig(crop=16, widths=(4, 8, 8, 8))


def constant_verifier(p: float, config: VerifierConfig = TINY) -> FaceVerifier:
    """A verifier whose score is `p` for every crop (zero output weights, bias logit(p)) and that moves no box."""
    v = FaceVerifier(config, (0.0, 0.0, 0.0), 1.0).eval()
    torch.nn.init.zeros_(v.out.weight)
    torch.nn.init.zeros_(v.out.bias)
    v.out.bias.data[0] = float(np.log(p / (1 - p)))
    return v


def test_crops_hold_the_box_centred_at_grow_times_its_side() -> None:
    img = np.zeros((100, 120, 3), np.uint8)
    img[40:60, 50:70] = 255  # a 20 px square: pixel centres 50..69, 40..59
    config = VerifierConfig(crop=40, grow=1.2)
    crop = face_crops(img, np.array([[49.5, 39.5, 69.5, 59.5]]), config)[0]
    # a window of 24 px (48..71, 38..61) with the square's 20 in its middle; scaled by 40/24 the square spans
    # crop pixels 3.3..36.7: inside 5..34 white, outside 0..1 and 38..39 black (linear blending between)
    assert crop.shape == (40, 40, 3)
    assert crop[5:35, 5:35].min() == 255 and crop[:2].max() == 0 and crop[38:].max() == 0
    assert crop[:, :2].max() == 0 and crop[:, 38:].max() == 0
    shifted = face_crops(img, np.array([[39.5, 39.5, 59.5, 59.5]]), config)[0]  # 10 px left: the square moves right
    assert shifted[20, 22:].min() == 255 and shifted[20, :18].max() == 0  # its left edge at crop x 20


def test_crops_past_the_edge_repeat_the_edge_pixels() -> None:
    img = np.zeros((50, 60, 3), np.uint8)
    img[:, 0] = (10, 20, 30)  # left column
    inside_left = face_crops(img, np.array([[-20, 10, 4, 34]]), VerifierConfig(crop=16, grow=1.0))[0]
    assert (inside_left[:, :8] == (10, 20, 30)).all()  # the half left of x = -0.5 repeats column 0
    far = face_crops(img, np.array([[-300, -300, -250, -250]]), VerifierConfig(crop=16))[0]
    assert (far == (10, 20, 30)).all()  # wholly outside, up and left: its nearest image pixel, the top-left one


def test_joint_score_and_candidate_threshold_by_hand() -> None:
    assert joint_score(np.array([0.64]), np.array([0.25]), 0.5)[0] == pytest.approx(0.4)
    assert joint_score(np.array([0.5]), np.array([0.9]), 1.0)[0] == pytest.approx(0.5)
    assert candidate_threshold(0.6, 0.5) == pytest.approx(0.36)
    assert candidate_threshold(0.6, 1.0) == pytest.approx(0.6)


@settings(max_examples=200, deadline=None)
@given(st.floats(0.01, 1.0), st.floats(0.0, 1.0), st.floats(0.05, 0.95), st.floats(0.1, 1.0))
def test_no_candidate_under_the_floor_can_pass(s1: float, s2: float, t: float, alpha: float) -> None:
    """Whatever the verifier says, joint ≥ t needs s1 ≥ candidate_threshold(t, alpha): decoding at that floor
    loses nothing."""
    if joint_score(np.array([s1]), np.array([s2]), alpha)[0] >= t:
        assert s1 >= candidate_threshold(t, alpha) - 1e-12


def test_verify_rescores_filters_and_sorts() -> None:
    v = constant_verifier(0.25, TINY)
    v.config = VerifierConfig(crop=16, widths=(4, 8, 8, 8), alpha=0.5)
    boxes = np.array([[0, 0, 10, 10], [20, 20, 40, 40], [5, 5, 30, 30.0]])
    scores = np.array([0.64, 1.0, 0.36])
    b, s = verify(v, np.zeros((50, 50, 3), np.uint8), boxes, scores, threshold=0.35)
    # joint = sqrt(s1 · 0.25): 0.4, 0.5, 0.3 → the last is dropped, best first
    np.testing.assert_allclose(s, [0.5, 0.4], rtol=1e-6)
    np.testing.assert_array_equal(b, boxes[[1, 0]])
    b, s = verify(v, np.zeros((50, 50, 3), np.uint8), np.zeros((0, 4)), np.zeros(0), 0.3)
    assert b.shape == (0, 4) and s.shape == (0,)
    # box corrections: +0.1 width right, log 2 taller; then boxes that now overlap are suppressed
    v.out.bias.data[1:] = torch.tensor([0.1, 0.0, 0.0, float(np.log(2))])
    b, s = verify(v, np.zeros((50, 50, 3), np.uint8), boxes[:2], scores[:2], threshold=0.35)
    np.testing.assert_allclose(b, [[22, 10, 42, 50], [1, -5, 11, 15]], atol=1e-5)
    b, s = verify(v, np.zeros((50, 50, 3), np.uint8), np.array([[0, 0, 10, 10], [0, 4, 10, 14.0]]), np.array([1, 0.9]),
                  threshold=0.3, iou=0.4)
    assert len(b) == 1  # IoU 6/14 before, 16/24 after the correction: suppressed


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-50, 50), min_size=2, max_size=2), st.floats(2, 80), st.floats(2, 80),
       st.lists(st.floats(-0.3, 0.3), min_size=2, max_size=2), st.floats(0.5, 2.0), st.floats(0.5, 2.0))
def test_box_deltas_and_apply_deltas_invert_each_other(c, w, h, shift, fw, fh) -> None:
    box = np.array([[c[0] - w / 2, c[1] - h / 2, c[0] + w / 2, c[1] + h / 2]])
    cx, cy = c[0] + shift[0] * w, c[1] + shift[1] * h
    target = np.array([[cx - w * fw / 2, cy - h * fh / 2, cx + w * fw / 2, cy + h * fh / 2]])
    d = box_deltas(box, target)
    np.testing.assert_allclose(d[0], [shift[0], shift[1], np.log(fw), np.log(fh)], atol=1e-9)
    np.testing.assert_allclose(apply_deltas(box, d), target, atol=1e-6)


def detector_with_verifier(p: float = 0.5) -> FaceNet:
    torch.manual_seed(0)
    config = DetectorConfig(widths=(4, 4, 8, 8, 8), fpn=8, verifier=VerifierConfig(crop=16, widths=(4, 8, 8, 8)).to_dict())
    net = FaceNet(config).eval()
    randomise_batchnorm(net.verifier)
    return net


def test_infer_applies_the_verifier_to_the_first_stage_boxes() -> None:
    """With a verifier the scores are joint scores of the first stage's boxes, thresholded after joining."""
    net = detector_with_verifier()
    for head in net.heads.values():  # every cell a confident centre: many candidates
        torch.nn.init.constant_(head.out.bias[:1], 3.0)
    img = np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    verifier = net.verifier
    net.verifier = None
    first_boxes, first_scores = infer(net, img, 0.0)
    net.verifier = verifier
    boxes, scores = infer(net, img, 0.3)
    with torch.inference_mode():
        out = verifier(torch.from_numpy(face_crops(img, first_boxes, verifier.config)).permute(0, 3, 1, 2).float())
    joint = joint_score(first_scores, torch.sigmoid(out[:, 0]).double().numpy(), verifier.config.alpha)
    keep = joint >= 0.3
    moved = apply_deltas(first_boxes[keep], out[keep, 1:].double().numpy())
    assert 0 < len(boxes) <= keep.sum()  # (moved boxes may suppress each other)
    for b, s in zip(boxes, scores):  # every box returned is a corrected candidate, with its joint score
        i = np.abs(moved - b).max(1).argmin()
        np.testing.assert_allclose(moved[i], b, atol=1e-4)
        assert s == pytest.approx(joint[keep][i], rel=1e-5)
    assert (np.diff(scores) <= 0).all()


def test_weights_round_trip_with_verifier_and_served_copy_agrees(tmp_path: Path) -> None:
    net = detector_with_verifier()
    path = tmp_path / "det.safetensors"
    save_detector(path, net, {})
    loaded, _ = load_detector(path)
    assert loaded.verifier is not None and loaded.verifier.config == net.verifier.config
    for k, v in net.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v)
    served = for_inference(copy.deepcopy(loaded))  # BatchNorm folded in the verifier too
    x = torch.rand(5, 3, 16, 16) * 255
    with torch.inference_mode():
        torch.testing.assert_close(served.verifier(x), loaded.verifier(x), atol=1e-4, rtol=1e-4)
    assert isinstance(BuiltinDetector(path).detect(np.zeros((64, 64, 3), np.uint8)), list)
    # a file without a verifier still loads as before
    plain = tmp_path / "plain.safetensors"
    save_detector(plain, FaceNet(DetectorConfig(widths=(4, 4, 8, 8, 8), fpn=8)), {})
    assert load_detector(plain)[0].verifier is None


def test_label_candidates_by_hand() -> None:
    faces_ = np.array([[0, 0, 10, 10.0]])
    neutral = np.array([[50, 50, 60, 60.0]])
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 20], [30, 30, 40, 40], [51, 51, 61, 61.0]])
    # IoU with the face: 1, 81/119, 0.5, 0; the last overlaps the neutral region by 81/119
    y, target = label_candidates(boxes, faces_, neutral)
    np.testing.assert_array_equal(y, [1, 1, 1, 0, -1])
    np.testing.assert_array_equal(target, [0, 0, 0, -1, -1])
    np.testing.assert_array_equal(label_candidates(boxes[3:4], np.zeros((0, 4)), np.zeros((0, 4)))[0], [0])
    assert label_candidates(np.zeros((0, 4)), faces_, neutral)[0].shape == (0,)
    assert label_candidates(np.array([[0, 0, 10, 14.0]]), faces_, neutral)[0][0] == 1  # IoU 100/140
    y, target = label_candidates(np.array([[0, 0, 10, 30.0]]), faces_, neutral)  # IoU 1/3: no label, but a box target
    assert (y[0], target[0]) == (-1, 0)
    two = np.array([[0, 0, 10, 10], [8, 0, 18, 10.0]])
    assert label_candidates(np.array([[7, 0, 17, 10.0]]), two, neutral)[1][0] == 1  # the better-overlapping face


def test_jitter_keeps_boxes_near_their_face() -> None:
    rng = np.random.default_rng(0)
    b = np.array([100, 100, 140, 150.0])
    j = np.array([jitter_box(b, rng) for _ in range(500)])
    centre = (j[:, :2] + j[:, 2:]) / 2
    assert np.abs(centre.mean(0) - [120, 125]).max() < 1.0
    np.testing.assert_allclose((j[:, 2] - j[:, 0]) / (j[:, 3] - j[:, 1]), 40 / 50)  # aspect kept


def test_harvest_labels_candidates_and_adds_jittered_faces(tmp_path: Path) -> None:
    from fflm.train.detector_data import load_scenes

    train_p, _, _ = load_scenes(scene_folder(tmp_path / "scenes", train=3, val=1))
    net = detector_with_verifier()
    net.verifier = None
    for head in net.heads.values():
        torch.nn.init.constant_(head.out.bias[:1], 3.0)
    crops, labels, deltas = harvest(net, train_p, TINY, np.random.default_rng(0), jitters=2)
    assert crops.shape[1:] == (16, 16, 3) and len(crops) == len(labels) == len(deltas)
    # 3 photos × 2 views (mirror) × 2 jittered copies of the one face in each pass, and the candidates
    assert (labels == 1).sum() >= 12 and (labels == 0).any()
    assert set(np.unique(labels)) <= {-1, 0, 1}
    boxed = ~np.isnan(deltas).any(1)
    assert boxed[labels == 1].all() and not boxed[labels == 0].any()  # faces move to their box, non-faces nowhere
    assert np.abs(deltas[boxed]).max() < 3


def test_training_script_exports_a_detector_with_its_verifier(tmp_path: Path, capsys) -> None:
    """`python -m fflm.train.detector_verifier` end to end on made-up photos: harvest, train, choose alpha, export."""
    det = tmp_path / "det.safetensors"
    net = detector_with_verifier()
    net.verifier, net.config.verifier = None, {}
    net.config.extra["keypoint_box"] = [0.0, -0.2, 2.1, 2.8]
    save_detector(det, net, {"note": "first stage"})
    scenes = scene_folder(tmp_path / "scenes", train=3, val=1)
    out = tmp_path / "run"
    main(["--detector", str(det), "--scenes", str(scenes), "--w300", str(faces(tmp_path / "w300", 2)),
          "--portraits", "2", "--out", str(out), "--steps", "3", "--crop", "16", "--widths", "4,8,8,8",
          "--alphas", "0.6,0.8", "--export", str(tmp_path / "det2.safetensors")])
    text = capsys.readouterr().out
    assert "alpha 0.6:" in text and "alpha 0.8:" in text and "first stage alone" in text
    model, meta = load_detector(tmp_path / "det2.safetensors")
    assert model.verifier is not None and model.config.verifier["alpha"] in (0.6, 0.8)
    assert model.config.verifier["crop"] == 16 and meta["note"] == "first stage" and meta["verifier"]["steps"] == 3
    assert (out / "results.json").exists()
