"""Golden outputs of the shipped weights on the shipped sample: a silent change in the model, the
pre-processing or the coordinate mapping moves these points. After deliberately changing the weights,
regenerate with `FFLM_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py` and review the diff."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from fflm.geometry import box_iou, points_box
from fflm.weights import DEFAULT_WEIGHTS, file_sha256

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "fflm" / "assets" / "astronaut.png"
GOLDEN = Path(__file__).resolve().parent / "golden" / "astronaut.json"
BOXES = Path(__file__).resolve().parent / "golden" / "astronaut.boxes.json"


@pytest.fixture(scope="module")
def faces():
    import fflm

    if not DEFAULT_WEIGHTS.exists():
        pytest.fail(f"the shipped weights are missing: {DEFAULT_WEIGHTS}")
    boxes = json.loads(BOXES.read_text())["astronaut.png"]
    # float32: the golden points hold on any CPU (`auto` is bfloat16 on CPUs that have it natively: see below)
    return fflm.Landmarker(device="cpu", precision="float32").predict(SAMPLE, boxes=boxes)


def test_shipped_weights_match_golden_points(faces):
    got = {"weights_sha256": file_sha256(DEFAULT_WEIGHTS), "landmarks": faces[0].landmarks.round(3).tolist()}
    if os.environ.get("FFLM_UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(got, indent=0) + "\n")
    want = json.loads(GOLDEN.read_text())
    assert want["weights_sha256"] == got["weights_sha256"], "weights changed: regenerate the golden file"
    np.testing.assert_allclose(faces[0].landmarks, np.array(want["landmarks"]), atol=0.05)


def test_bfloat16_lands_on_the_golden_points(faces):
    """The shipped weights in bfloat16 (the default where the CPU computes it natively) land within a tenth of a
    pixel of float32's on average on this face (IO ≈ 60 px; measured 0.02 px, at most 0.07)."""
    import fflm

    boxes = json.loads(BOXES.read_text())["astronaut.png"]
    (face,) = fflm.Landmarker(device="cpu", precision="bfloat16").predict(SAMPLE, boxes=boxes)
    d = np.linalg.norm(face.landmarks - faces[0].landmarks, axis=1)
    assert d.mean() < 0.1 and d.max() < 0.3


def test_shipped_weights_find_the_face(faces):
    """The points lie on the face the box marks (a sanity bound that holds for any decent model)."""
    (face,) = faces
    assert box_iou(points_box(face.landmarks)[None], face.box[None])[0, 0] > 0.5
    eyes = face.landmarks[36:48].mean(axis=0)
    mouth = face.landmarks[48:68].mean(axis=0)
    assert eyes[1] < mouth[1] - 20  # eyes well above the mouth in this upright portrait
    assert np.all((face.landmark_scores >= 0) & (face.landmark_scores <= 1))


def test_the_two_stack_weights_load_and_agree_with_the_default(faces):
    """The heavier two-stack file ships too (more accurate, slower): it loads as such and lands on the same face
    within a pixel on average (IO ≈ 60 px here)."""
    import fflm

    lm = fflm.Landmarker("300w-68-stacks2", device="cpu")
    assert lm.model.config.global_net.stacks == 2 and lm.model.config.mirror_offset > 0.002
    boxes = json.loads(BOXES.read_text())["astronaut.png"]
    (other,) = lm.predict(SAMPLE, boxes=boxes)
    assert np.abs(other.landmarks - faces[0].landmarks).mean() < 1.0


@pytest.mark.parametrize("k", [2, 8])
def test_the_shipped_weights_results_scale_with_the_image(faces, k):
    """A nearest-neighbour k× upscale of the sample, with its box scaled alike, gives k× the coordinates
    (pixel centres: x' = k (x + 0.5) - 0.5) within 0.05·k px on average: the mirror offset is a fraction of
    the face frame, not pixels (in pixels, x was off by -0.95 px at 2×, -6.5 px at 8×)."""
    import fflm
    from fflm.imageio import read_image

    box = json.loads(BOXES.read_text())["astronaut.png"][0]
    big = np.repeat(np.repeat(read_image(SAMPLE), k, axis=0), k, axis=1)
    (face,) = fflm.Landmarker(device="cpu", precision="float32").predict(big, boxes=[[k * (v + 0.5) - 0.5 for v in box]])
    mean_error = np.abs((face.landmarks - (k * (faces[0].landmarks + 0.5) - 0.5)).mean(axis=0))
    assert (mean_error <= 0.05 * k).all(), mean_error
