"""`--detector builtin|yunet|none`, `--detector-model`, `--tiles`, `--max-faces`, `--min-face-size` on the command
line (in-process through fflm.cli.main), and the shipped detector on shared data when both are present."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fflm.cli import main
from fflm.detect.model import DetectorConfig, FaceNet
from fflm.detect.weights import DEFAULT_DETECTOR, save_detector
from fflm.detect.yunet import default_model
from fflm.weights import asset
from conftest import SHARED, needs_shared

torch.set_num_threads(1)
YUNET = default_model()
needs_builtin = pytest.mark.skipif(not DEFAULT_DETECTOR.is_file(), reason="shipped detector weights not built")


@pytest.fixture
def det_model(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "det.safetensors"
    save_detector(path, FaceNet(DetectorConfig(widths=(4, 4, 8, 8, 8), fpn=8)))
    return path


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(path)
    return path


def run(capsys, *args) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return rc, out, err


def test_builtin_with_a_model_file_and_no_face(capsys, photo, tiny_weights, det_model):
    rc, out, err = run(capsys, "detect", photo, "-w", tiny_weights, "--detector", "builtin", "--detector-model", det_model,
                       "--tiles", "off", "--max-faces", "3", "--min-face-size", "10")
    assert rc == 0, err
    assert json.loads(out)["faces"] == []  # a face-less photo: an empty list, not an error
    assert "whole image" not in err


def test_none_is_the_whole_image(capsys, photo, tiny_weights):
    rc, out, err = run(capsys, "detect", photo, "-w", tiny_weights, "--detector", "none")
    assert rc == 0 and "whole image" in err
    [face] = json.loads(out)["faces"]
    assert face["box"] == [-0.5, -0.5, 119.5, 89.5]


def test_batch_takes_the_detector_options(capsys, photo, tiny_weights, det_model):
    rc, out, err = run(capsys, "batch", photo.parent, "-w", tiny_weights, "--detector", "builtin", "--detector-model",
                       det_model, "--tiles", "2",
                       "--format", "json")
    assert rc == 0, err


@pytest.mark.parametrize("detector", ["builtin", "yunet"])
def test_bad_model_file_is_one_line_exit_1(capsys, photo, tiny_weights, tmp_path, detector):
    bad = tmp_path / ("bad.onnx" if detector == "yunet" else "bad.safetensors")
    bad.write_bytes(b"\x00garbage")
    rc, out, err = run(capsys, "detect", photo, "-w", tiny_weights, "--detector", detector, "--detector-model", bad)
    assert rc == 1 and out == ""
    [line] = err.strip().splitlines()
    assert line.startswith("fflm: error:") and str(bad) in line


def test_bad_detector_options(capsys, photo, tiny_weights):
    rc, _, err = run(capsys, "detect", photo, "-w", tiny_weights, "--tiles", "lots")
    assert rc == 2 and "--tiles" in err
    rc, _, err = run(capsys, "detect", photo, "-w", tiny_weights, "--max-faces", "0")
    assert rc == 2


@needs_shared
def test_the_default_detector_is_the_shipped_yunet(capsys, tiny_weights):
    img = sorted((SHARED / "data" / "300w" / "val").glob("*.jpg"))[0]
    rc, out, err = run(capsys, "detect", img, "-w", tiny_weights)
    assert rc == 0, err
    [face] = json.loads(out)["faces"]
    rc, out, err = run(capsys, "detect", img, "-w", tiny_weights, "--detector", "yunet", "--detector-model", YUNET)
    assert rc == 0, err
    assert json.loads(out)["faces"] == [face]  # the shipped file is shared/models' (same sha256)


@needs_shared
def test_yunet_from_many_threads_matches_one_at_a_time():
    """Batch workers share one detector: YuNet's net keeps its input size between calls, so concurrent calls
    on images of different sizes must give what sequential calls give."""
    from concurrent.futures import ThreadPoolExecutor

    import cv2

    from fflm.detect import make_detector
    from fflm.imageio import read_image

    det = make_detector("yunet", YUNET, tiles="off")
    base = [read_image(p) for p in sorted((SHARED / "data" / "300w" / "val").glob("*.jpg"))[:6]]
    images = [cv2.resize(im, None, fx=f, fy=f) for im in base for f in (0.5, 0.8, 1.3)]
    alone = [np.array([d.box for d in det.detect(im)]) for im in images]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda im: np.array([d.box for d in det.detect(im)]), images * 3))
    for a, b in zip(alone * 3, together):
        np.testing.assert_allclose(a, b)


@needs_shared
@needs_builtin
def test_shipped_detector_on_300w_faces():
    from fflm.detect import make_detector
    from fflm.train.detector_data import KeypointBoxModel, five_points_68
    from fflm.geometry import box_iou
    from fflm.imageio import read_image
    from fflm.pts import read_pts

    det = make_detector("builtin")
    box_model = KeypointBoxModel(det.model.config.extra["keypoint_box"])
    pts = sorted((SHARED / "data" / "300w" / "val").glob("*.pts"))[:12]
    found = 0
    for p in pts:
        dets = det.detect(read_image(p.with_suffix(".jpg")))
        truth = box_model.box(five_points_68(read_pts(p)))
        found += bool(dets) and box_iou(dets[0].box[None], truth[None])[0, 0] >= 0.5
    assert found >= 11
    assert DEFAULT_DETECTOR.stat().st_size < 5 * 2**20


def test_face_partly_outside_the_frame_gets_landmarks(tiny_weights):
    from fflm.detect.base import Detection
    from fflm.pipeline import Landmarker

    class HalfOut:
        name = "half-out"

        def detect(self, image):
            return [Detection(np.array([-40.0, 10.0, 60.0, 130.0]), 0.9)]  # 40 % of the box left of the image

    lm = Landmarker(tiny_weights, device="cpu", detector=HalfOut())
    [face] = lm.predict(np.random.default_rng(0).integers(0, 255, (160, 200, 3), dtype=np.uint8))
    assert face.box[0] == -40.0 and np.isfinite(face.landmarks).all() and face.landmarks.shape == (68, 2)


@needs_builtin
def test_detector_threshold_option(capsys, tiny_weights):
    """--detector-threshold between the shipped detector's two best scores on the sample keeps one face, just
    under the second keeps two, and without it the detector's own default decides; out-of-range or with
    --detector none is a usage error."""
    from fflm.detect import make_detector
    from fflm.imageio import read_image

    sample = asset("astronaut.png")
    det = make_detector("builtin", threshold=0.05, tiles="off")
    scores = det.boxes(read_image(sample))[1]
    assert len(scores) >= 2
    default = int((scores >= make_detector("builtin").threshold).sum())
    counts = []
    for extra in ([], ["--detector-threshold", f"{(scores[0] + scores[1]) / 2:.4f}"],
                  ["--detector-threshold", f"{scores[1] - 1e-3:.4f}"]):
        rc, out, err = run(capsys, "detect", sample, "-w", tiny_weights, "--detector", "builtin", "--tiles", "off",
                           "--min-face-size", "0", *extra)
        assert rc == 0, err
        counts.append(len(json.loads(out)["faces"]))
    assert counts[0] == default and counts[1] == 1 and counts[2] >= 2
    assert run(capsys, "detect", sample, "-w", tiny_weights, "--detector-threshold", "1.5")[0] == 2
    rc, out, err = run(capsys, "detect", sample, "-w", tiny_weights, "--detector-threshold", "0.99")
    assert rc == 0 and json.loads(out)["faces"] == []  # the default (yunet) takes it too
    rc, _, err = run(capsys, "detect", sample, "-w", tiny_weights, "--detector", "none", "--detector-threshold", "0.5")
    assert rc == 2 and "--detector-threshold" in err
