"""Several training roots with their own settings: parsing, readers (.vis, labels, exclude, jaw weight), batches
by source, the weighted loss, and the full-resolution crop path at training time."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from fflm.model.layers import roi_align
from fflm.pts import AnnotationError, format_pts
from fflm.scheme import IBUG68
from fflm.annotations import Sample, read_annotations
from fflm.errors import UsageError
from fflm.sources import Source, read_source
from fflm.train.data import LandmarkDataset, SourceBatches
from fflm.train.losses import landmark_loss, point_loss

from conftest import SHARED, faces, needs_shared, one_error, run_cli as cli, tiny_config


@pytest.fixture(autouse=True)
def tiny_preset(monkeypatch):
    """New runs build conftest's tiny model (proxy 64) instead of the shipped recipe."""
    from fflm.model.config import HourglassConfig
    from fflm.train import loop

    monkeypatch.setattr(loop, "preset", lambda variant, scheme, crop_size, width=None, stacks=None: tiny_config(
        scheme=scheme.to_dict(), crop_size=crop_size, global_net=HourglassConfig(width=4, depth=2, stem_stride=4),
        regional_net=HourglassConfig(width=4, depth=1, stem_stride=4)))

JAW = IBUG68.unrefined_indices


# --- the command-line form --------------------------------------------------------------------------------------


def test_parse_settings_and_round_trip():
    s = Source.parse("a/b,resolution=768, repeat=2.5 ,jaw=0,labels=../l,exclude=x.txt")
    assert s == Source("a/b", 768, 2.5, 0.0, "../l", "x.txt")
    assert Source.parse(s.spec()) == s
    assert Source.parse("plain/path") == Source("plain/path") and Source("p").spec() == "p"


@pytest.mark.parametrize("spec, words", [
    ("a,size=3", "unknown setting 'size'"), ("a,resolution=big", "resolution needs a number"),
    ("a,resolution=32", "resolution out of range"), ("a,repeat=-1", "repeat out of range"),
    ("a,jaw", "jaw needs a value"), (",repeat=1", "no path"), ("a,jaw=nan", "jaw out of range"),
])
def test_parse_refuses(spec, words):
    with pytest.raises(ValueError, match=words):
        Source.parse(spec)


# --- readers ----------------------------------------------------------------------------------------------------


def test_vis_files_weigh_out_self_occluded_points(tmp_path):
    folder = faces(tmp_path / "f", 2)
    vis = np.zeros(68, dtype=int)
    vis[[0, 5]] = 2  # self-occluded: left out
    vis[9] = 1  # occluded by something else: its position is still annotated, kept
    (folder / "f0.vis").write_text("\n".join(map(str, vis)))
    samples = read_annotations(folder, 68)
    w = samples[0].weights
    assert w[0] == w[5] == 0 and w[9] == 1 and w.sum() == 66
    assert samples[1].weights is None


@pytest.mark.parametrize("text", ["0 1", "0 " * 67 + "3", "a " * 68])
def test_bad_vis_files_name_the_file(tmp_path, text):
    folder = faces(tmp_path / "f", 1)
    (folder / "f0.vis").write_text(text)
    with pytest.raises(AnnotationError, match="f0.vis"):
        read_annotations(folder, 68)


def test_labels_folder_replaces_labels_and_jaw_weight_applies_to_the_rest(tmp_path):
    folder = faces(tmp_path / "src", 3)
    labels = tmp_path / "labels"
    labels.mkdir()
    moved = read_annotations(folder, 68)[1].points + 2.0
    (labels / "f1.pts").write_text(format_pts(moved))
    (labels / "f1.vis").write_text(" ".join(["2"] + ["0"] * 67))
    (tmp_path / "skip.txt").write_text("f2\n")
    src = Source(str(folder), jaw=0.25, labels="../labels", exclude=str(tmp_path / "skip.txt"))
    own, relabelled = read_source(src, 68, JAW)
    assert [s.image.name for s in (own, relabelled)] == ["f0.png", "f1.png"]  # f2 excluded
    np.testing.assert_allclose(relabelled.points, moved, atol=1e-9)
    assert relabelled.weights[0] == 0 and relabelled.weights[1:].min() == 1  # .vis, no jaw weight: 2D labels
    assert own.weights[JAW].tolist() == [0.25] * len(JAW) and own.weights[IBUG68.refined_indices].min() == 1


def test_source_errors(tmp_path):
    folder = faces(tmp_path / "src", 2)
    with pytest.raises(AnnotationError, match="labels folder not found"):
        read_source(Source(str(folder), labels="nope"), 68, JAW)
    (tmp_path / "all.txt").write_text("f0\nf1\n")
    with pytest.raises(AnnotationError, match="no training faces left"):
        read_source(Source(str(folder), exclude=str(tmp_path / "all.txt")), 68, JAW)


# --- batches ----------------------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 30), min_size=1, max_size=4), st.data())
def test_batches_come_from_one_source_and_repeat_as_asked(sizes, data):
    repeats = [data.draw(st.sampled_from([0.0, 0.5, 1.0, 2.0])) for _ in sizes]
    sampler = SourceBatches(sizes, repeats, 4, seed=7)
    batches = list(sampler)
    starts = np.cumsum([0] + sizes)
    for b in batches:
        src = {int(np.searchsorted(starts, i, side="right") - 1) for i in b}
        assert len(src) == 1  # one source a batch: its frames share one side
    counts = np.bincount([i for b in batches for i in b], minlength=starts[-1])
    for k, (size, rep) in enumerate(zip(sizes, repeats)):
        drawn = counts[starts[k]:starts[k + 1]].sum()
        want = int(rep) * size + round((rep % 1) * size)
        assert want - 3 <= drawn <= want if want >= 4 else drawn == want  # the ragged last batch is dropped
    assert batches == list(sampler) and len(sampler) == len(batches)  # fixed by (seed, epoch)
    sampler.epoch = 1
    if sum(counts) > 8:
        assert list(sampler) != batches


# --- the weighted loss ------------------------------------------------------------------------------------------


def test_point_loss_weights_by_hand():
    pred = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [0.0, 3.0]]])
    truth = torch.zeros_like(pred)
    norm = torch.ones(1)
    w = torch.tensor([[1.0, 0.0, 0.5]])
    # l1 per point: 0, 1, 3; weighted mean (0·1 + 1·0 + 3·0.5) / 1.5 = 1
    assert point_loss(pred, truth, "l1", norm, w).item() == pytest.approx(1.0)
    # l2 per point: 0, 1, 9: (9·0.5) / 1.5 = 3
    assert point_loss(pred, truth, "l2", norm, w).item() == pytest.approx(3.0)
    for kind in ("l2", "l1", "wing", "ion"):  # all ones: the plain mean
        assert point_loss(pred, truth, kind, norm, torch.ones(1, 3)).item() == pytest.approx(
            point_loss(pred, truth, kind, norm).item())


def test_landmark_loss_ignores_masked_points():
    truth = torch.rand(2, 68, 2) * 64
    far = truth.clone()
    far[:, 0] += 50  # a jaw point far off, masked
    out = {"global": [far], "refined": [truth[:, IBUG68.refined_indices]]}
    w = torch.ones(2, 68)
    w[:, 0] = 0
    total, parts = landmark_loss(out, truth, 64.0, IBUG68.refined_indices, IBUG68.norm_points, "l1", w)
    assert total.item() == pytest.approx(0.0, abs=1e-7)
    assert landmark_loss(out, truth, 64.0, IBUG68.refined_indices, IBUG68.norm_points, "l1")[0].item() > 0


# --- the full-resolution crop path ------------------------------------------------------------------------------


def test_a_dot_at_full_resolution_lands_at_its_point_in_the_regional_crop(tmp_path):
    """A 1200 px face at frames of 768 px: the regional crop (RoIAlign on the frame, as the training forward does)
    shows a 2-px dot drawn in the original pixels at its point's place, with detail a 256 px frame lacks."""
    side = 1200
    img = np.zeros((side, side, 3), np.uint8)
    pts = np.stack([np.linspace(300, 900, 68), np.linspace(350, 850, 68)], 1)
    yy, xx = np.mgrid[:side, :side]
    dot = (xx - 601.3) ** 2 + (yy - 655.8) ** 2 <= 2.0 ** 2  # off the pixel grid
    img[dot] = 255
    pts[40] = [xx[dot].mean(), yy[dot].mean()]  # point 40 (an eye corner) at the dot's centre of mass
    cv2.imwrite(str(tmp_path / "big.png"), img)
    sample = Sample(tmp_path / "big.png", pts)
    widths = {}
    for res in (768, 256):
        frame, fp, w = LandmarkDataset([sample], IBUG68, res, 1.5, None)[0]
        assert w.tolist() == [1.0] * 68
        q = fp[40].double()
        box = torch.cat([q - 12, q + 12])[None]  # 24 frame px around the point, into a 48 px crop
        crop = roi_align(frame[None].double(), box, size=48)[0, 0]
        ys, xs = torch.meshgrid(torch.arange(48.0, dtype=torch.float64), torch.arange(48.0, dtype=torch.float64),
                                indexing="ij")
        cx, cy = (xs * crop).sum() / crop.sum(), (ys * crop).sum() / crop.sum()
        tol = 0.2 if res == 768 else 0.6  # crop px (2 a frame px); at 256 px the dot is a sub-pixel speck
        assert abs(cx - 23.5) < tol and abs(cy - 23.5) < tol, (res, cx, cy)  # the crop's centre
        widths[res] = int((crop > 0.5 * crop.max()).sum())
    assert widths[768] > 4 * widths[256]  # the 768 px frame keeps the dot's extent; 256 px blurs it to a speck


# --- end to end -------------------------------------------------------------------------------------------------


def tiny(train_dir, out, *more):
    return ["train", "--data", train_dir, "--out", out, "--resolution", 64, "--crop-size", 32, "--epochs", 1,
            "--batch-size", 2, "--device", "cpu", *more]


def test_cli_several_sources_each_at_its_resolution(capsys, tmp_path, monkeypatch):
    from fflm.train import loop

    small, big = faces(tmp_path / "small", 4), faces(tmp_path / "big", 2, size=160)
    sides = []
    real = loop.train_step

    def step(model, opt, images, truth, cfg, dtype=torch.float32, weights=None):
        sides.append(images.shape[-1])
        return real(model, opt, images, truth, cfg, dtype, weights)

    monkeypatch.setattr(loop, "train_step", step)
    rc, _, err = cli(capsys, *tiny(small, tmp_path / "run", "--data", f"{big},resolution=128,repeat=2"))
    assert rc == 0, err
    assert sorted(sides) == [64, 64, 128, 128]  # 4 small faces at 64 px, the 2 big ones twice at 128 px
    assert f"{big}: 2 faces, frames of 128 px, drawn 2× an epoch" in err
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["data"] == [str(small), f"{big},resolution=128,repeat=2"]


def test_cli_source_and_resume_errors(capsys, tmp_path):
    small = faces(tmp_path / "small", 4)
    rc, _, err = cli(capsys, *tiny(small, tmp_path / "bad", "--data", f"{small},size=2"))
    assert rc == 2 and "unknown setting 'size'" in one_error(err)
    rc, _, err = cli(capsys, *tiny(tmp_path / "none", tmp_path / "bad"))
    assert rc == 2 and "no such file or directory" in one_error(err)
    rc, _, err = cli(capsys, *tiny(small, tmp_path / "run"))
    assert rc == 0, err
    rc, _, err = cli(capsys, "train", "--resume", tmp_path / "run", "--lr", "0.5")
    assert rc == 1 and "--lr 0.5 contradicts the run" in one_error(err)
    rc, _, err = cli(capsys, "train", "--resume", tmp_path / "run")
    assert rc == 1 and "has trained 1 epochs already" in one_error(err)
    rc, _, err = cli(capsys, "train", "--resume", tmp_path / "run", "--epochs", 2, "--threads", 1)
    assert rc == 0 and "resuming" in err and "at epoch 2/2" in err


def test_cli_ctrl_c_exits_130_after_the_checkpoint(capsys, tmp_path, monkeypatch):
    from fflm.train import loop

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "train_step", interrupted)
    small = faces(tmp_path / "small", 4)
    rc, _, err = cli(capsys, *tiny(small, tmp_path / "run"))
    assert rc == 130 and "checkpoint saved" in err and (tmp_path / "run" / "checkpoint.pt").is_file()


@needs_shared
def test_shared_more68_aflw_with_merlrav_labels():
    root = SHARED / "data" / "more68" / "aflw2000"
    samples = read_source(Source(str(root / "yaw60_90"), labels="../labels_merlrav", jaw=0.3), 68, JAW)
    relabelled = [s for s in samples if "labels_merlrav" in s.source]
    assert len(samples) == 152 and relabelled
    hidden = sum(int((s.weights == 0).sum()) for s in relabelled)
    assert hidden > 0  # turned heads have self-occluded points, left out of the loss
    own = [s for s in samples if "labels_merlrav" not in s.source]
    assert all(np.allclose(s.weights[JAW], 0.3) for s in own)
    heldout = Path(__file__).resolve().parents[1] / "benchmarks" / "aflw2000_heldout.txt"
    stems = set(heldout.read_text().split())
    assert len(stems) == 338 and stems <= {p.stem for p in root.glob("yaw*/*.pts")}


# --- annotation errors name the file and line -------------------------------------------------------------------


def test_a_point_far_outside_the_image_names_the_file_and_line(tmp_path):
    folder = faces(tmp_path / "f", 2)
    lines = (folder / "f1.pts").read_text().splitlines()
    lines[3 + 4] = "-5000 100"  # point 5, line 8 (after version, n_points and the brace)
    (folder / "f1.pts").write_text("\n".join(lines) + "\n")
    with pytest.raises(AnnotationError, match=r"f1.pts:8: point 5 at \(-5000, 100\) is far outside the 72 px image"):
        read_annotations(folder, 68)
    lines[3 + 4] = "-3 100"  # a little beyond the border is a normal annotation
    (folder / "f1.pts").write_text("\n".join(lines) + "\n")
    assert len(read_annotations(folder, 68)) == 2


def test_an_image_without_a_label_names_the_file_and_line(tmp_path):
    faces(tmp_path, 1)
    (tmp_path / "a.csv").write_text("image," + ",".join(f"x{i},y{i}" for i in range(68)) + "\nf0.png\n")
    with pytest.raises(AnnotationError, match=r"a.csv:2: f0.png has no points"):
        read_annotations(tmp_path / "a.csv", 68)
    (tmp_path / "a.json").write_text('[{"image": "f0.png"}]')
    with pytest.raises(AnnotationError, match=r"a.json: item 0: needs 'image' and 'landmarks'"):
        read_annotations(tmp_path / "a.json", 68)


def test_a_flip_pair_out_of_range_names_the_scheme_file(capsys, tmp_path):
    scheme = tmp_path / "s.json"
    scheme.write_text(json.dumps({"name": "x", "num_points": 3, "regions": [], "flip_pairs": [[0, 7]],
                                  "norm_points": [0, 1]}))
    rc, _, err = cli(capsys, *tiny(faces(tmp_path / "f", 2), tmp_path / "run", "--scheme", scheme))
    assert rc == 1 and one_error(err) == f"fflm: error: {scheme}: bad flip pair (0, 7): points are numbered 0..2, each in one pair"


def test_hidden_weight_keeps_self_occluded_points_at_that_weight(tmp_path):
    folder = faces(tmp_path / "src", 2)
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "f0.pts").write_text(format_pts(read_annotations(folder, 68)[0].points))
    (labels / "f0.vis").write_text(" ".join(["2", "1"] + ["0"] * 66))
    relabelled, own = read_source(Source(str(folder), jaw=0.5, hidden=0.4, labels="../labels"), 68, JAW)
    assert relabelled.weights[:3].tolist() == [0.4, 1.0, 1.0] and relabelled.weights[3:].min() == 1
    assert own.weights[JAW].tolist() == [0.5] * len(JAW)  # hidden applies to .vis files only
    default, _ = read_source(Source(str(folder), labels="../labels"), 68, JAW)
    assert default.weights[0] == 0


@pytest.mark.parametrize("spec", ["a,hidden=1.5", "a,distill=2", "a,hidden=-1"])
def test_hidden_and_distill_are_fractions(spec):
    with pytest.raises(UsageError, match="out of range"):
        Source.parse(spec)


def test_batches_know_their_source():
    batches = SourceBatches([5, 3, 8], [1.0, 2.0, 0.5], batch_size=2, seed=4)
    order = list(batches)
    assert batches.sources() == [0 if b[0] < 5 else 1 if b[0] < 8 else 2 for b in order]
    assert all(len({0 if i < 5 else 1 if i < 8 else 2 for i in b}) == 1 for b in order)
