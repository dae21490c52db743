"""YuNet in ONNX Runtime (fflm.detect.yunet_ort) against OpenCV's own runner: the same faces, keypoints and scores;
the choice between them; per-thread nets and sessions."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from fflm.detect import DetectorModelError
from fflm.detect.yunet import YuNetDetector
from fflm.errors import UsageError
from fflm.imageio import read_image
from fflm.weights import asset

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def crowd() -> np.ndarray:
    """The shipped portrait at three sizes, one of them mirrored, on a grey 1000 × 700 canvas: faces of several
    sizes, so that all three strides and NMS have work."""
    face = read_image(asset("astronaut.png"))
    canvas = np.full((700, 1000, 3), 128, np.uint8)
    for side, (x, y), flip in ((420, (10, 20), False), (260, (500, 60), True), (150, (760, 420), False)):
        small = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
        canvas[y:y + side, x:x + side] = small[:, ::-1] if flip else small
    return canvas


def test_onnxruntime_finds_the_faces_opencv_finds(crowd):
    """Decoding and NMS as OpenCV's FaceDetectorYN: same count, boxes, keypoints and scores (float noise only)."""
    ocv = YuNetDetector(runtime="opencv", tiles="off", min_face_size=0)
    ort = YuNetDetector(runtime="onnxruntime", tiles="off", min_face_size=0)
    assert (ocv.runtime, ort.runtime) == ("opencv", "onnxruntime")
    for image in (crowd, read_image(asset("astronaut.png")), np.full((300, 400, 3), 90, np.uint8)):
        (b1, s1), (b2, s2) = ocv.boxes(image), ort.boxes(image)
        assert b1.shape == b2.shape
        np.testing.assert_allclose(b2, b1, atol=1e-2)
        np.testing.assert_allclose(s2, s1, atol=1e-4)
    boxes, _ = ort.boxes(crowd)
    assert len(boxes) == 3  # the three faces, each once
    # odd sizes: the padding to multiples of 32 must not move a face
    cut = crowd[3:650, 5:990]
    np.testing.assert_allclose(ort.boxes(cut)[0], ocv.boxes(cut)[0], atol=1e-2)


def test_runtime_choice_and_bad_models(tmp_path: Path):
    assert YuNetDetector().runtime == "onnxruntime"  # auto, with onnxruntime installed
    with pytest.raises(UsageError):
        YuNetDetector(runtime="tensorflow")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    for runtime in ("auto", "opencv", "onnxruntime"):  # auto falls back to OpenCV, which refuses it too
        with pytest.raises(DetectorModelError):
            YuNetDetector(bad, runtime=runtime)


def test_each_thread_has_its_own_net_and_results_match(crowd):
    """Batch workers share one detector: each thread runs a net (or session) of its own, with the same faces."""
    for runtime in ("opencv", "onnxruntime"):
        det = YuNetDetector(runtime=runtime, tiles="off", min_face_size=0)
        images = [crowd, crowd[:, ::-1].copy(), crowd[100:, 200:].copy()] * 3
        expected = [det.boxes(im)[0] for im in images]
        got: dict[int, np.ndarray] = {}

        def work(k: int) -> None:
            got[k] = det.boxes(images[k])[0]

        threads = [threading.Thread(target=work, args=(k,)) for k in range(len(images))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for k, e in enumerate(expected):
            np.testing.assert_allclose(got[k], e, atol=1e-4)


def test_sessions_one_per_thread_count():
    from fflm.backends.onnx import Sessions

    sessions = Sessions(asset("yunet_2026may.onnx"))
    assert sessions.get(1) is sessions.get(1)
    assert sessions.get(2) is not sessions.get(1)
    assert sessions.get(2).get_session_options().intra_op_num_threads == 2
