"""Evaluation: the metric functions against hand-computed values, `fflm.evaluate.evaluate` on tiny annotated
faces built on the fly (with fake landmarkers whose errors are known, and with a tiny real model), the
cumulative-error plot, and the `fflm eval` command in-process through `fflm.cli.main`.

Conventions as in test_cli.py: exit 2 = usage error, 1 = failure, 0 = ok; an error is one stderr line starting
with "fflm"; never a traceback."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from fflm.detect.base import Detection
from fflm.evaluate import BOX_SIZE, SIZE_BUCKETS, EvalReport, auc, ced, contour_errors, evaluate, failure_rate, nme, plot_ced, summary
from fflm.pipeline import Face, Landmarker
from fflm.pts import format_pts
from fflm.scheme import IBUG68
from fflm.annotations import read_annotations

from conftest import one_error, run_cli as cli, shape68

N = 68
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SUMMARY_KEYS = {"mean", "median", "fr_0.08", "fr_0.10", "auc_0.08", "auc_0.10"}
GROUPS = {"jaw", "brows", "nose", "eyes", "mouth"}


# --- helpers -------------------------------------------------------------------------------------------------


def face_points(size: float, centre: tuple[float, float], seed: int = 0) -> np.ndarray:
    """68 points whose shape spans about `size` px around `centre` (0-based), slightly perturbed."""
    rng = np.random.default_rng(seed)
    return np.asarray(centre) + shape68() * size + rng.normal(0, 0.01 * size, (N, 2))


def write_face(folder: Path, name: str, points: np.ndarray, hw: tuple[int, int], seed: int = 0) -> Path:
    """A noisy image with the points drawn on it and its 1-based 300-W .pts file beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    img = np.random.default_rng(seed).integers(0, 60, (*hw, 3), dtype=np.uint8)
    for x, y in points:
        cv2.circle(img, (int(round(x)), int(round(y))), 1, (255, 255, 255), -1)
    path = folder / f"{name}.png"
    assert cv2.imwrite(str(path), img)
    (folder / f"{name}.pts").write_text(format_pts(points))
    return path


@pytest.fixture
def annotated(tmp_path) -> tuple[Path, dict[str, np.ndarray]]:
    """A 300-W style folder of three faces (face sizes ~40, ~60, ~300 px); returns it and the 0-based truth by
    image name."""
    d = tmp_path / "faces"
    truth = {"a.png": face_points(40, (32, 30), 1), "b.png": face_points(60, (45, 40), 2),
             "c.png": face_points(300, (160, 160), 3)}
    sizes = {"a.png": (64, 64), "b.png": (80, 90), "c.png": (320, 320)}
    for k, (name, pts) in enumerate(truth.items()):
        write_face(d, Path(name).stem, pts, sizes[name], k)
    return d, truth


class FakeLandmarker:
    """Answers with the truth plus known offsets: `final` for the final points, `glob` for the global stage's.
    `found` (image name -> bool) drops faces; `dets` (image name -> boxes) are its detector's faces."""

    scheme = IBUG68

    def __init__(self, truth: dict[str, np.ndarray], final=(0.0, 0.0), glob=(0.0, 0.0), dets=None):
        self.truth, self.final, self.glob, self.dets = truth, np.asarray(final), np.asarray(glob), dets or {}
        self.boxes_seen: list[np.ndarray] = []
        self._names: list[str] = []

    def detections(self, image, boxes=None):
        if boxes is None:
            return [Detection(np.asarray(b, float), 0.9) for b in self.dets.get(self._name_of(image), [])]
        return [Detection(np.asarray(b, float), 1.0) for b in boxes]

    def _name_of(self, image: np.ndarray) -> str:  # images are told apart by their size
        return next(n for n, (h, w) in self.sizes.items() if image.shape[:2] == (h, w))

    def second_look(self, image, found, faces):
        return None

    def staged_landmarks(self, images, detections):
        out = []
        for im, dets in zip(images, detections):
            if not dets:
                out.append([])
                continue
            self.boxes_seen.append(np.asarray(dets[0].box))
            t = self.truth[self._name_of(im)]
            out.append([(Face(dets[0].box, dets[0].score, t + self.final, np.ones(N)), t + self.glob)])
        return out


def fake(folder: Path, truth, **kw) -> FakeLandmarker:
    lm = FakeLandmarker(truth, **kw)
    lm.sizes = {name: cv2.imread(str(folder / name)).shape[:2] for name in truth}
    assert len(set(lm.sizes.values())) == len(lm.sizes)
    return lm


def iod(points: np.ndarray) -> float:
    return float(np.linalg.norm(points[36] - points[45]))


def diag(points: np.ndarray) -> float:
    return float(np.linalg.norm(points.max(0) - points.min(0)))


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    """Tables as wide as they need (rich wraps and truncates cells at 80 columns when stdout is no terminal)."""
    monkeypatch.setenv("COLUMNS", "200")


def strict_json(text: str):
    """json.loads that refuses NaN and Infinity (not JSON; jq and browsers reject them)."""
    def bad(c):
        raise ValueError(f"non-JSON constant {c}")
    return json.loads(text, parse_constant=bad)


def is_png(path: Path) -> np.ndarray:
    assert path.read_bytes()[:8] == PNG_MAGIC
    img = cv2.imread(str(path))
    assert img is not None and img.ndim == 3
    return img


# --- metric functions ----------------------------------------------------------------------------------------


def test_nme_inter_ocular_hand_computed():
    truth = np.zeros((2, N, 2))
    truth[:, :, 0] = np.arange(N)  # any layout; only 36 and 45 set the normaliser
    truth[:, 36] = [10, 20]
    truth[:, 45] = [50, 20]  # outer eye corners 40 px apart
    pred = truth.copy()
    pred[0] += [3, 4]  # every point 5 px off
    pred[1, 7] += [0, 8]  # one point 8 px off
    np.testing.assert_allclose(nme(pred, truth, (36, 45)), [5 / 40, 8 / N / 40])
    np.testing.assert_allclose(nme(pred, truth, IBUG68.norm_points), [5 / 40, 8 / N / 40])
    assert IBUG68.norm_points == (36, 45)


def test_nme_box_diagonal_hand_computed():
    truth = np.random.default_rng(0).uniform(0, 1, (1, N, 2)) * [30, 40]
    truth[0, 0], truth[0, 1] = [0, 0], [30, 40]  # tight box 30×40: diagonal 50
    pred = truth + [3, 4]
    np.testing.assert_allclose(nme(pred, truth, None), [5 / 50])


def test_nme_box_size_and_visibility_hand_computed():
    truth = np.random.default_rng(1).uniform(0, 1, (1, N, 2)) * [30, 120]
    truth[0, 0], truth[0, 1] = [0, 0], [30, 120]  # tight box 30×120: √(w·h) = 60
    pred = truth + [3, 4]  # every point 5 px off
    np.testing.assert_allclose(nme(pred, truth, BOX_SIZE), [5 / 60])
    pred[0, 2] += [100, 0]  # one point far off, but self-occluded: left out of the mean
    w = np.ones((1, N))
    w[0, 2] = 0
    np.testing.assert_allclose(nme(pred, truth, BOX_SIZE, weights=w), [5 / 60])
    assert nme(pred, truth, BOX_SIZE)[0] > 5 / 60 + 1 / N


def test_eval_by_source_with_vis_files(capsys, annotated, weights, tmp_path):
    import shutil

    folder, _ = annotated
    other = tmp_path / "other"
    shutil.copytree(folder, other)
    stems = sorted(p.stem for p in other.glob("*.pts"))
    (other / f"{stems[0]}.vis").write_text(" ".join(["2"] * 10 + ["0"] * (N - 10)))
    (tmp_path / "only.txt").write_text(f"{stems[0]}\n{stems[1]}\n")
    rc, out, err = cli(capsys, "eval", folder, f"{other},only={tmp_path / 'only.txt'}", "-w", weights, "--json",
                       "--device", "cpu")
    assert rc == 0, err
    d = strict_json(out)
    assert d["faces"] == 5 and set(d["by_source"]) == {str(folder), str(other)}
    assert d["by_source"][str(other)]["faces"] == 2 and d["by_source"][str(folder)]["found_fraction"] == 1.0
    assert d["box_size"]["mean"] > d["inter_ocular"]["mean"] / 10
    rc, out, _ = cli(capsys, "eval", folder, other, "-w", weights, "--device", "cpu")
    assert rc == 0 and "by source" in out and "NME box size" in out


def test_nme_normaliser_from_other_points():
    """A point group is scored with the whole face's normaliser (indices into norm_truth)."""
    truth = face_points(100, (0, 0))[None]
    idx = list(range(48, 68))
    pred = truth.copy()
    pred[:, idx] += [6, 8]
    e = nme(pred[:, idx], truth[:, idx], (36, 45), truth)
    np.testing.assert_allclose(e, [10 / iod(truth[0])])


def test_contour_errors_hand_computed():
    """A contour (0, 0) → (2, 0) → (4, 2) → (4, 6) with normaliser points 4 and 5 (10 apart). Directions along it,
    from the truth's chords: (1, 0), (4, 2)/√20, (2, 6)/√40, (0, 1). Errors (3, 4) on point 0: 3 along, 4 across;
    (0, 1) on point 1: 2/√20 along, 4/√20 across; none on point 2; (1, 0) on point 3: 0 along, -1 across."""
    truth = np.array([[[0, 0], [2, 0], [4, 2], [4, 6], [0, 10], [0, 0]]], np.float64)
    pred = truth + np.array([[3, 4], [0, 1], [0, 0], [1, 0], [9, 9], [9, 9]])
    along, across = contour_errors(pred, truth, [0, 1, 2, 3], (4, 5))
    np.testing.assert_allclose(along, [[0.3, 0.2 / math.sqrt(20), 0, 0]], atol=1e-12)
    np.testing.assert_allclose(across, [[0.4, 0.4 / math.sqrt(20), 0, -0.1]], atol=1e-12)
    np.testing.assert_allclose(np.hypot(along, across)[0], np.linalg.norm(pred - truth, axis=-1)[0, :4] / 10)


def test_failure_rate_is_strictly_above():
    assert failure_rate(np.array([0.0, 0.08, 0.0801, 0.5]), 0.08) == 0.5
    assert failure_rate(np.array([0.0, 0.08, 0.0801, 0.5]), 0.10) == 0.25
    assert math.isnan(failure_rate(np.array([]), 0.08))


def test_auc_hand_computed():
    # (0.08 - 0)/0.08 = 1, (0.08 - 0.04)/0.08 = 0.5, 0.2 is past the threshold: 0 -> mean 0.5
    assert auc(np.array([0, 0.04, 0.2]), 0.08) == pytest.approx(0.5)
    assert auc(np.array([0, 0.04, 0.2]), 0.10) == pytest.approx((1 + 0.6 + 0) / 3)
    assert auc(np.array([0.0]), 0.08) == 1.0 and auc(np.array([0.3]), 0.08) == 0.0


def test_auc_is_the_area_under_the_ced():
    errors = np.random.default_rng(1).uniform(0, 0.15, 50)
    x, y = ced(errors, 0.08, steps=4000)
    area = float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x))) / 0.08
    assert auc(errors, 0.08) == pytest.approx(area, abs=2e-3)


def test_ced_hand_computed():
    x, y = ced(np.array([0, 0.04, 0.2]), 0.08, steps=2)
    np.testing.assert_allclose(x, [0, 0.04, 0.08])
    np.testing.assert_allclose(y, [1 / 3, 2 / 3, 2 / 3])  # fraction of faces at or below each level


def test_summary_hand_computed_with_a_missing_face():
    s = summary(np.array([0.02, 0.05, 0.09, 0.12, np.inf]))  # the last face was not found
    assert set(s) == SUMMARY_KEYS
    assert s["mean"] == pytest.approx(7.0)  # mean and median over the faces found, in %
    assert s["median"] == pytest.approx(7.0)
    assert s["fr_0.08"] == pytest.approx(60.0)  # 0.09, 0.12 and the missing face
    assert s["fr_0.10"] == pytest.approx(40.0)
    assert s["auc_0.08"] == pytest.approx(100 * (0.75 + 0.375) / 5)
    assert s["auc_0.10"] == pytest.approx(100 * (0.8 + 0.5 + 0.1) / 5)


def test_summary_all_found_median():
    s = summary(np.array([0.01, 0.02, 0.09]))
    assert s["mean"] == pytest.approx(4.0) and s["median"] == pytest.approx(2.0)
    assert s["fr_0.08"] == pytest.approx(100 / 3) and s["fr_0.10"] == 0.0


def test_report_groups_refined_and_face_size_buckets():
    sizes = np.array([100.0, 255.9, 256.0, 511.0, 512.0, 1023.0, 1024.0, 3000.0])
    io = np.array([0.01, 0.03, 0.02, 0.04, 0.05, np.inf, 0.07, 0.09])
    r = EvalReport(images=[f"{k}.png" for k in range(8)], face_size=sizes, nme_io=io, nme_diag=io / 2,
                   groups={"eyes": io * 2, "mouth": io * 3}, refined=io * 4, refined_global=io * 5, seconds=1.234)
    d = r.to_dict()
    assert (d["faces"], d["found"], d["seconds"]) == (8, 7, 1.23)
    found = np.isfinite(io)
    assert d["groups"]["eyes"] == pytest.approx(200 * io[found].mean())
    assert d["groups"]["mouth"] == pytest.approx(300 * io[found].mean())
    assert d["refined_points"] == pytest.approx({"final": 400 * io[found].mean(), "global_stage": 500 * io[found].mean()})
    assert d["inter_ocular"] == summary(io) and d["box_diagonal"] == summary(io / 2)
    assert d["by_face_size"] == {  # [lo, hi): 256 belongs to 256-512; the missing face counts but has no error
        "0-256": {"faces": 2, "mean": pytest.approx(2.0)},
        "256-512": {"faces": 2, "mean": pytest.approx(3.0)},
        "512-1024": {"faces": 2, "mean": pytest.approx(5.0)},
        ">1024": {"faces": 2, "mean": pytest.approx(8.0)},
    }
    assert [b for b in SIZE_BUCKETS] == [(0, 256), (256, 512), (512, 1024), (1024, float("inf"))]
    assert d["per_image"][5] == {"image": "5.png", "face_size": 1023.0, "nme_io": None, "nme_diag": None}
    assert d["per_image"][0] == {"image": "0.png", "face_size": 100.0, "nme_io": 1.0, "nme_diag": 0.5}
    assert "per_image" not in r.to_dict(per_image=False)


def test_report_bucket_with_only_missing_faces_and_empty_buckets():
    r = EvalReport(images=["a", "b"], face_size=np.array([50.0, 600.0]), nme_io=np.array([0.02, np.inf]),
                   nme_diag=np.array([0.01, np.inf]))
    d = r.to_dict()
    assert set(d["by_face_size"]) == {"0-256", "512-1024"}  # empty buckets are left out
    assert d["by_face_size"]["512-1024"]["faces"] == 1 and math.isnan(d["by_face_size"]["512-1024"]["mean"])
    assert "refined_points" not in d


def test_plot_ced_writes_a_png(tmp_path):
    path = tmp_path / "ced.png"
    plot_ced(path, {"a": np.array([0.01, 0.03, 0.05, np.inf]), "b": np.array([0.02, 0.2])})
    img = is_png(path)
    assert img.shape == (500, 800, 3)
    assert (img.std(axis=2) > 30).sum() > 500  # coloured curves drawn on the white/grey frame
    assert [p.name for p in tmp_path.iterdir()] == ["ced.png"]  # no temporary file left behind


# --- evaluate() ----------------------------------------------------------------------------------------------


def test_evaluate_truth_gives_zero(annotated):
    """A landmarker answering the 0-based truth scores 0 everywhere: the 1-based .pts files were read right."""
    folder, truth = annotated
    samples = read_annotations(folder, N)
    lm = fake(folder, truth)
    calls = []
    report = evaluate(lm, samples, progress=lambda done, n: calls.append((done, n)))
    assert report.images == [str(folder / n) for n in ("a.png", "b.png", "c.png")]
    for e in (report.nme_io, report.nme_diag, report.refined, report.refined_global, *report.groups.values()):
        np.testing.assert_allclose(e, 0, atol=1e-12)
    assert set(report.groups) == GROUPS
    np.testing.assert_allclose(report.face_size, [np.ptp(truth[n], axis=0).max() for n in ("a.png", "b.png", "c.png")])
    d = report.to_dict()
    assert d["faces"] == d["found"] == 3
    assert d["inter_ocular"] == {"mean": 0.0, "median": 0.0, "fr_0.08": 0.0, "fr_0.10": 0.0, "auc_0.08": 100.0, "auc_0.10": 100.0}
    assert calls[-1] == (3, 3)
    # boxes="landmarks": each face's box is its truth's tight box
    np.testing.assert_allclose(lm.boxes_seen[0], [*truth["a.png"].min(0), *truth["a.png"].max(0)])


def test_evaluate_known_errors(annotated):
    """Final points 5 px off, global stage 10 px off: every NME is 5 (or 10) px over the face's normaliser."""
    folder, truth = annotated
    names = ("a.png", "b.png", "c.png")
    report = evaluate(fake(folder, truth, final=(3, 4), glob=(6, 8)), read_annotations(folder, N), batch_size=2)
    io = np.array([5 / iod(truth[n]) for n in names])
    np.testing.assert_allclose(report.nme_io, io)
    np.testing.assert_allclose(report.nme_diag, [5 / diag(truth[n]) for n in names])
    for e in report.groups.values():
        np.testing.assert_allclose(e, io)
    np.testing.assert_allclose(report.refined, io)
    np.testing.assert_allclose(report.refined_global, 2 * io)
    d = report.to_dict()
    assert d["inter_ocular"]["mean"] == pytest.approx(100 * io.mean())
    assert d["inter_ocular"]["median"] == pytest.approx(100 * np.median(io))
    assert d["refined_points"]["global_stage"] == pytest.approx(200 * io.mean())
    assert d["by_face_size"] == {"0-256": {"faces": 2, "mean": pytest.approx(100 * io[:2].mean())},
                                 "256-512": {"faces": 1, "mean": pytest.approx(100 * io[2])}}
    assert [p["nme_io"] for p in d["per_image"]] == pytest.approx(list(100 * io), abs=1e-4)
    np.testing.assert_allclose(report.residual, [-3, -4])  # truth - prediction, px (not percent)
    assert d["mean_residual_px"] == [-3.0, -4.0]


def test_evaluate_one_point_off(annotated):
    folder, truth = annotated
    answers = {n: p.copy() for n, p in truth.items()}
    for p in answers.values():
        p[60] += [0, 12]  # one mouth point 12 px off
    report = evaluate(fake(folder, answers), read_annotations(folder, N))
    io = np.array([12 / N / iod(truth[n]) for n in ("a.png", "b.png", "c.png")])
    np.testing.assert_allclose(report.nme_io, io)
    np.testing.assert_allclose(report.groups["mouth"], io * N / 20)
    for g in ("jaw", "brows", "nose", "eyes"):
        np.testing.assert_allclose(report.groups[g], 0, atol=1e-12)


def test_evaluate_missing_faces_are_failures(annotated):
    folder, truth = annotated
    box = [*truth["a.png"].min(0), *truth["a.png"].max(0)]
    report = evaluate(fake(folder, truth, final=(0.3, 0.4)), read_annotations(folder, N), boxes={"a.png": [box]})
    assert report.nme_io[0] == pytest.approx(0.5 / iod(truth["a.png"])) and report.nme_io[0] < 0.08
    assert np.isfinite(report.nme_io[0]) and np.isinf(report.nme_io[1:]).all() and np.isinf(report.nme_diag[1:]).all()
    d = report.to_dict()
    assert (d["faces"], d["found"]) == (3, 1)
    assert d["inter_ocular"]["fr_0.08"] == pytest.approx(200 / 3) and d["inter_ocular"]["fr_0.10"] == pytest.approx(200 / 3)
    assert d["inter_ocular"]["auc_0.08"] == pytest.approx(100 * (0.08 - report.nme_io[0]) / 0.08 / 3)
    assert d["inter_ocular"]["mean"] == pytest.approx(100 * report.nme_io[0])  # over the faces found
    np.testing.assert_allclose(report.residual, [-0.3, -0.4])  # over the faces found
    np.testing.assert_allclose(report.points[0], truth["a.png"] + [0.3, 0.4])  # the predictions, NaN when not found
    assert np.isnan(report.points[1:]).all()
    assert [p["nme_io"] for p in d["per_image"]][1:] == [None, None]


def test_evaluate_detector_boxes_pick_the_truths_face(annotated):
    folder, truth = annotated
    t = truth["c.png"]
    good = [*(t.min(0) - 5), *(t.max(0) + 5)]
    elsewhere = [0, 0, 20, 20]
    lm = fake(folder, truth, dets={"c.png": [elsewhere, good], "b.png": [[0, 0, 5, 5]]})  # a.png: none found
    report = evaluate(lm, read_annotations(folder, N), boxes="detector")
    assert np.isinf(report.nme_io[0]) and np.isinf(report.nme_io[1])  # no face / a box that misses the face
    assert report.nme_io[2] == 0.0
    [seen] = lm.boxes_seen
    np.testing.assert_allclose(seen, good)


def test_evaluate_detector_boxes_take_predicts_second_look(annotated):
    """With detector boxes a face whose points the second look replaces (another orientation's faces) is scored
    on the replacement that overlaps the truth, as `fflm detect` would output it; given boxes get no second look."""
    folder, truth = annotated
    t = truth["c.png"]
    good = [*(t.min(0) - 5), *(t.max(0) + 5)]
    lm = fake(folder, truth, final=(3, 4), dets={"c.png": [good]})
    looked = []

    def second_look(image, found, faces):
        looked.append([d.box.tolist() for d in found])
        others = [Detection(np.array([0.0, 0.0, 20.0, 20.0]), 0.7), Detection(np.asarray(good, float), 0.6)]
        return others, [(Face(others[0].box, 0.7, t + 50, np.ones(N)), t + 50), (Face(others[1].box, 0.6, t, np.ones(N)), t)]

    lm.second_look = second_look
    report = evaluate(lm, read_annotations(folder, N), boxes="detector")
    assert looked == [[good]] and report.nme_io[2] == 0.0  # the overlapping replacement, not the first one
    looked.clear()
    report = evaluate(lm, read_annotations(folder, N), boxes={"c.png": [good]})
    assert looked == [] and report.nme_io[2] > 0


def test_evaluate_with_a_tiny_model(annotated, weights, monkeypatch):
    folder, truth = annotated
    lm = Landmarker.from_file(weights, device="cpu", detector="none")
    samples = read_annotations(folder, N)
    report = evaluate(lm, samples, batch_size=2)
    assert len(report.images) == 3 and report.nme_io.shape == report.nme_diag.shape == (3,)
    assert np.isfinite(report.nme_io).all() and (report.nme_io > 0).all()
    assert report.refined.shape == report.refined_global.shape == (3,)
    assert report.seconds > 0
    # the box diagonal is longer than the eye-corner distance: its NME is smaller
    assert (report.nme_diag < report.nme_io).all()
    d = report.to_dict()
    assert d["inter_ocular"]["mean"] == pytest.approx(100 * report.nme_io.mean())
    json.dumps(d, allow_nan=False)

    # the same landmarker, its network answering the truth: NME 0
    real = lm.staged_landmarks

    def truth_landmarks(images, detections):
        faces = real(images, detections)
        for fs, im in zip(faces, images):
            [name] = [n for n, p in truth.items() if cv2.imread(str(folder / n)).shape[:2] == im.shape[:2]]
            fs[0][0].landmarks = truth[name].copy()
            fs[0] = (fs[0][0], truth[name].copy())
        return faces

    monkeypatch.setattr(lm, "staged_landmarks", truth_landmarks)
    report = evaluate(lm, samples)
    np.testing.assert_allclose(report.nme_io, 0, atol=1e-12)
    assert report.to_dict()["inter_ocular"]["auc_0.10"] == 100.0


# --- fflm eval -----------------------------------------------------------------------------------------------


def test_eval_table(capsys, annotated, weights):
    folder, _ = annotated
    rc, out, err = cli(capsys, "eval", folder, "--weights", weights, "--device", "cpu")
    assert rc == 0
    assert "error" not in err.lower()
    flat = " ".join(out.split())  # the title may wrap
    for word in ("NME inter-ocular", "NME box diagonal", "FR@0.08", "AUC@0.10", "median", "(3/3 faces, boxes: landmarks)",
                 "refined points, global stage", "face 0-256 px (2)", "face 256-512 px (1)", *GROUPS):
        assert word in flat, word


def test_eval_table_piped_is_not_cut(capsys, annotated, weights, monkeypatch):
    """Piped (not a terminal) and without COLUMNS, the table is 160 columns wide, not Rich's default 80."""
    monkeypatch.delenv("COLUMNS", raising=False)
    folder, _ = annotated
    rc, out, _ = cli(capsys, "eval", folder, "--weights", weights, "--device", "cpu")
    assert rc == 0 and "NME inter-ocular" in out and "…" not in out


def test_eval_json(capsys, annotated, weights):
    folder, _ = annotated
    rc, out, err = cli(capsys, "eval", folder, "-w", weights, "--json", "--device", "cpu")
    assert rc == 0 and "error" not in err.lower()
    d = strict_json(out)
    assert set(d) == {"faces", "found", "inter_ocular", "box_diagonal", "box_size", "groups", "refined_points",
                      "by_face_size", "per_image", "seconds", "weights", "boxes", "mean_residual_px"}
    assert (d["faces"], d["found"], d["weights"], d["boxes"]) == (3, 3, str(weights), "landmarks")
    assert set(d["inter_ocular"]) == set(d["box_diagonal"]) == SUMMARY_KEYS
    assert set(d["groups"]) == GROUPS and set(d["refined_points"]) == {"final", "global_stage"}
    assert set(d["by_face_size"]) == {"0-256", "256-512"}
    assert [Path(p["image"]).name for p in d["per_image"]] == ["a.png", "b.png", "c.png"]
    io = np.array([p["nme_io"] for p in d["per_image"]])
    assert d["inter_ocular"]["mean"] == pytest.approx(io.mean(), abs=1e-3)  # aggregates agree with the rows
    assert d["inter_ocular"]["median"] == pytest.approx(np.median(io), abs=1e-3)
    assert d["inter_ocular"]["fr_0.10"] == pytest.approx(100 * np.mean(io > 10), abs=1e-6)
    assert d["by_face_size"]["256-512"]["mean"] == pytest.approx(io[2], abs=1e-3)
    assert d["per_image"][2]["face_size"] > 256


def test_eval_json_matches_the_library(capsys, annotated, weights):
    folder, _ = annotated
    rc, out, _ = cli(capsys, "eval", folder, "-w", weights, "--json", "--device", "cpu")
    assert rc == 0
    lib = evaluate(Landmarker.from_file(weights, device="cpu", detector="none"), read_annotations(folder, N)).to_dict()
    d = strict_json(out)
    for key in ("inter_ocular", "box_diagonal", "groups", "refined_points"):
        assert d[key] == pytest.approx(lib[key], rel=1e-6, abs=1e-9), key


def test_eval_plot(capsys, annotated, weights, tmp_path):
    folder, _ = annotated
    plot = tmp_path / "ced.png"
    rc, out, _ = cli(capsys, "eval", folder, "-w", weights, "--plot", plot, "--device", "cpu")
    assert rc == 0 and "NME inter-ocular" in out
    assert is_png(plot).shape == (500, 800, 3)


def test_eval_boxes_file(capsys, annotated, weights, tmp_path):
    """Faces missing from the boxes file are not found: they count as failures."""
    folder, truth = annotated
    boxes = tmp_path / "boxes.json"
    t = truth["a.png"]
    boxes.write_text(json.dumps({"a.png": [[*(t.min(0) - 3), *(t.max(0) + 3)]], "b.png": []}))
    rc, out, err = cli(capsys, "eval", folder, "-w", weights, "--boxes", boxes, "--json", "--device", "cpu")
    assert rc == 0 and "error" not in err.lower()
    d = strict_json(out)
    assert (d["faces"], d["found"], d["boxes"]) == (3, 1, str(boxes))
    assert [p["nme_io"] is None for p in d["per_image"]] == [False, True, True]
    assert d["inter_ocular"]["fr_0.10"] >= 200 / 3 - 1e-9
    assert d["inter_ocular"]["mean"] == pytest.approx(d["per_image"][0]["nme_io"], abs=1e-3)
    # c.png, the only face of 256-512 px, was not found: that bucket has no mean (null, not NaN)
    assert d["by_face_size"]["256-512"] == {"faces": 1, "mean": None}


def test_eval_boxes_file_table(capsys, annotated, weights, tmp_path):
    folder, truth = annotated
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({n: [[*(t.min(0) - 3), *(t.max(0) + 3)]] for n, t in truth.items()}))
    rc, out, err = cli(capsys, "eval", folder, "-w", weights, "--boxes", boxes, "--device", "cpu")
    assert rc == 0 and f"(3/3 faces, boxes: {boxes})" in " ".join(out.split())


@pytest.mark.parametrize("case", ["missing_dir", "missing_weights", "missing_boxes", "bad_boxes"])
def test_eval_usage_errors(capsys, annotated, weights, tmp_path, case):
    folder, _ = annotated
    args = {"missing_dir": [tmp_path / "nope", "-w", weights],
            "missing_weights": [folder, "-w", tmp_path / "nope.safetensors"],
            "missing_boxes": [folder, "-w", weights, "--boxes", tmp_path / "nope.json"],
            "bad_boxes": [folder, "-w", weights, "--boxes", tmp_path / "bad.json"]}[case]
    (tmp_path / "bad.json").write_text("{not json")
    rc, out, err = cli(capsys, "eval", *args)
    assert rc == 2 and out == ""
    one_error(err)
    if case == "missing_dir":
        assert "nope" in err


def test_eval_failures(capsys, tmp_path, weights):
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, out, err = cli(capsys, "eval", empty, "-w", weights)
    assert rc == 1 and out == "" and "no annotated images" in one_error(err)
    bad = tmp_path / "bad"
    write_face(bad, "x", face_points(30, (20, 20)), (40, 40))
    (bad / "x.pts").write_text("version: 1\nn_points: 2\n{\n1 2\nthree 4\n}\n")
    rc, out, err = cli(capsys, "eval", bad, "-w", weights)
    assert rc == 1 and out == "" and "x.pts" in one_error(err)
    five = tmp_path / "five"
    write_face(five, "y", face_points(30, (20, 20))[:5], (40, 40))
    rc, out, err = cli(capsys, "eval", five, "-w", weights)
    assert rc == 1 and "5 points" in one_error(err)


def test_eval_help(capsys):
    rc, out, _ = cli(capsys, "eval", "--help")
    assert rc == 0 and "Examples" in out and "--plot" in out and "--boxes" in out
