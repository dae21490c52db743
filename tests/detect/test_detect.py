"""The built-in detector's pieces: decoding of hand-made maps, NMS, targets, box mapping (proxy, tiles, EXIF),
weights files, no-face and many-face images. Tiny random networks and a fake square-finding "detector" keep it fast."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from fflm.detect import DetectorModelError, make_detector
from fflm.detect.builtin import BuiltinDetector, finish, parse_tiles
from fflm.detect.decode import decode, decode_level, nms
from fflm.detect.files import detect_file, reduction_for
from fflm.detect.model import DetectorConfig, FaceNet
from fflm.detect.run import unscale_boxes
from fflm.train.detector_targets import detector_loss, level_targets
from fflm.detect.tiling import detect_tiled, resize_by, run_tiles, tile_plan, tile_windows, tile_zoom
from fflm.detect.weights import load_detector, save_detector
from fflm.imageio import read_image
from fflm.weights import asset
from conftest import randomise_batchnorm

torch.set_num_threads(1)


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


@pytest.fixture
def tiny_detector(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "det.safetensors"
    save_detector(path, FaceNet(DetectorConfig(widths=(4, 4, 8, 8, 8), fpn=8)), {"note": "random"})
    return path


# decoding


def test_decode_hand_made_map() -> None:
    # one 4×5 stride-8 map with a single peak at row 2, col 3, and a box 10 px left, 6 up, 12 right, 20 down
    out = np.full((5, 4, 5), -10.0, np.float32)
    out[0, 2, 3] = logit(np.array(0.9))
    out[0, 2, 2] = logit(np.array(0.8))  # a neighbour of the peak: not a peak itself
    out[1:5, 2, 3] = np.log(np.array([10, 6, 12, 20]) / 8)
    boxes, scores = decode_level(out, 8, 0.5)
    cx, cy = 3 * 8 + 3.5, 2 * 8 + 3.5
    np.testing.assert_allclose(boxes, [[cx - 10, cy - 6, cx + 12, cy + 20]], atol=1e-4)
    np.testing.assert_allclose(scores, [0.9], atol=1e-6)


def test_decode_threshold_and_two_levels() -> None:
    a = np.full((5, 4, 4), -10.0, np.float32)
    a[0, 1, 1] = logit(np.array(0.7))
    a[1:5, 1, 1] = 0.0  # 8 px each side
    b = np.full((5, 1, 1), -10.0, np.float32)
    b[0, 0, 0] = logit(np.array(0.95))
    b[1:5, 0, 0] = np.log(0.5)  # 16 px each side at stride 32
    boxes, scores = decode([a, b], (8, 32), threshold=0.5)
    np.testing.assert_allclose(scores, [0.95, 0.7], atol=1e-6)
    np.testing.assert_allclose(boxes[0], [15.5 - 16, 15.5 - 16, 15.5 + 16, 15.5 + 16], atol=1e-4)
    assert len(decode([a, b], (8, 32), threshold=0.99)[0]) == 0


def test_targets_decode_round_trip() -> None:
    boxes = np.array([[30.2, 40.7, 70.1, 95.3], [100.0, 20.0, 300.0, 250.0], [200.0, 200.0, 212.0, 214.0]])
    outs = []
    for s in (8, 32):
        t = level_targets(boxes, np.zeros((0, 4)), (256, 320), s)
        outs.append(np.concatenate([logit(t[0])[None], t[3:7]]))
    found, _ = decode(outs, (8, 32), 0.5)
    assert len(found) == 3
    for b in boxes:
        assert np.abs(found - b).max(axis=1).min() < 1e-3


def test_targets_ignore_and_loss_finite() -> None:
    t = level_targets(np.array([[10.0, 10.0, 40.0, 40.0]]), np.array([[100.0, 100.0, 140.0, 140.0]]), (128, 160), 8)
    assert t[0].max() == 1.0 and (t[1][13:18, 13:18] == 0).all() and t[1][12, 12] == 1 and t[1][0, 0] == 1
    net = FaceNet(DetectorConfig(widths=(4, 4, 8, 8, 8), fpn=8))
    x = torch.rand(2, 3, 128, 160) * 255
    tg = [torch.from_numpy(np.stack([level_targets(np.array([[10.0, 10.0, 40.0, 40.0]]), np.zeros((0, 4)),
                                                   (128, 160), s)] * 2)) for s in (8, 32)]
    losses = detector_loss(net(x), tg)
    losses["loss"].backward()
    assert torch.isfinite(losses["loss"]) and all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


# NMS


def test_nms_keeps_best_of_overlapping() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 9.5]], float)
    scores = np.array([0.6, 0.9, 0.5, 0.8])
    keep = nms(boxes, scores, 0.4)
    assert keep.tolist() == [1, 2]
    assert nms(np.zeros((0, 4)), np.zeros(0)).tolist() == []
    assert nms(boxes, scores, 0.99).tolist() == [1, 3, 0, 2]


# box mapping: proxy, tiles, reduced decode, EXIF


def squares(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A fake detector: white squares on a dark image, boxes as continuous pixel rectangles."""
    grey = image[:, :, 0] > 127
    n, _, stats, _ = cv2.connectedComponentsWithStats(grey.astype(np.uint8))
    boxes = [[x - 0.5, y - 0.5, x + w - 0.5, y + h - 0.5] for x, y, w, h, _ in stats[1:]]
    return np.array(boxes, float).reshape(-1, 4), np.linspace(0.9, 0.6, len(boxes))


def draw_squares(w: int, h: int, rects: list[tuple[int, int, int]]) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    for x, y, s in rects:
        img[y : y + s, x : x + s] = 255
    return img


def test_unscale_inverts_resize() -> None:
    b = np.array([[-0.5, -0.5, 99.5, 49.5]])
    np.testing.assert_allclose(unscale_boxes((b + 0.5) * 0.25 - 0.5, 0.25, 0.25), b)
    np.testing.assert_allclose(unscale_boxes(b, 1.0, 1.0, 10, 20), b + [10, 20, 10, 20])


def test_proxy_pass_maps_back_to_original_pixels() -> None:
    img = draw_squares(2560, 1440, [(400, 300, 400), (1800, 900, 320)])
    boxes, _ = detect_tiled(squares, img, proxy=640, tiles="off")
    want = np.array([[399.5, 299.5, 799.5, 699.5], [1799.5, 899.5, 2119.5, 1219.5]])
    assert len(boxes) == 2
    for w in want:
        assert np.abs(boxes - w).max(axis=1).min() < 4.5  # a 4× proxy: a proxy pixel is 4 px


def test_tiles_find_small_faces_and_merge_across_borders() -> None:
    # 24 px squares (6 px in the 640 proxy of this 2560 px image), several straddling tile borders
    rects = [(x, y, 24) for x in range(100, 2500, 287) for y in range(100, 1400, 311)]
    img = draw_squares(2560, 1440, rects)
    boxes, scores = detect_tiled(squares, img, 640, 4)
    assert len(boxes) == len(rects)  # each once: no duplicates across tile overlaps
    assert (np.diff(scores) <= 1e-12).all()
    for x, y, s in rects:
        assert np.abs(boxes - [x - 0.5, y - 0.5, x + s - 0.5, y + s - 0.5]).max(axis=1).min() < 2.0  # resampling at zoom 0.8


def test_a_face_cut_by_an_inner_tile_border_comes_whole_from_the_next_tile() -> None:
    """A square across the first tile's right border: that tile sees a cut piece ending at its edge (and drops
    it); the next tile, which overlaps by a quarter, holds the square whole. One box, the whole square."""
    w, h = 2560, 1440
    z = tile_zoom(w, h, 640, 4)
    (a, b) = [win for win in tile_windows(w, h, z, 640) if win[1] == 0][:2]
    x, y, s = a[2] - 16, 300, 32  # straddles a's right border, inside b (which starts a quarter tile earlier)
    assert a[0] < x < a[2] < x + s and b[0] < x and x + s < b[2]
    img = draw_squares(w, h, [(x, y, s)])
    tile, zx, _ = resize_by(img[a[1] : a[3], a[0] : a[2]], z)
    piece = squares(tile)[0]
    assert len(piece) == 1 and piece[0, 2] == tile.shape[1] - 0.5  # the cut detection, at the tile's edge
    boxes, _ = run_tiles(squares, img, z, 640)
    assert len(boxes) == 1
    np.testing.assert_allclose(boxes[0], [x - 0.5, y - 0.5, x + s - 0.5, y + s - 0.5], atol=1.5)


def test_tile_plan_auto() -> None:
    assert tile_plan(np.zeros((0, 4)), 600, 400, 640, "auto") is None  # small photo
    assert tile_plan(np.zeros((0, 4)), 4000, 3000, 640, "off") is None
    assert tile_plan(np.array([[0, 0, 2000, 2000.0]]), 4000, 3000, 640, "auto") is None  # one big face
    z = tile_plan(np.zeros((0, 4)), 7680, 4320, 640, "auto")  # nothing found at 640 px: look closer
    assert z is not None and 0.2 < z <= 1
    assert tile_plan(np.zeros((0, 4)), 7680, 4320, 640, "auto", min_face=60) * 60 >= 20 - 1e-9
    wins = tile_windows(7680, 4320, z, 640)
    assert all(x1 - x0 <= 640 / z + 1 for x0, _, x1, _ in wins)


def test_parse_tiles() -> None:
    assert parse_tiles("auto") == "auto" and parse_tiles("OFF") == "off" and parse_tiles("3") == 3
    assert parse_tiles("1") == "off"
    for bad in ("0", "many", "-2"):
        with pytest.raises(ValueError):
            parse_tiles(bad)


def test_reduced_decode_and_exif_rotation(tmp_path: Path) -> None:
    # upright 1600×1200 with a square at (1000, 200); stored rotated 90° with EXIF orientation 6 (display = rotate CW)
    upright = draw_squares(1600, 1200, [(1000, 200, 240)])
    stored = np.ascontiguousarray(np.rot90(upright, 1))  # counter-clockwise: the camera's sensor view
    path = tmp_path / "rot.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(path, quality=95, exif=exif)
    full = read_image(path)
    assert full.shape[:2] == (1200, 1600)
    assert reduction_for(1600, 640) == 2
    boxes, _ = detect_file(squares, path, 640, "off")
    assert len(boxes) == 1
    np.testing.assert_allclose(boxes[0], [999.5, 199.5, 1239.5, 439.5], atol=3.0)


# whole detectors: weights file, no face, many faces, filters


def test_weights_round_trip_and_bad_files(tiny_detector: Path, tmp_path: Path) -> None:
    model, meta = load_detector(tiny_detector)
    assert meta == {"note": "random"} and model.config.widths == (4, 4, 8, 8, 8)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a model")
    for path in (bad, tmp_path / "missing.safetensors"):
        with pytest.raises(DetectorModelError):
            load_detector(path)
    with pytest.raises(DetectorModelError):
        make_detector("yunet", bad)
    with pytest.raises(DetectorModelError):
        make_detector("yunet", tmp_path / "missing.onnx")
    with pytest.raises(ValueError):
        make_detector("other")


def test_no_face_gives_empty_list(tiny_detector: Path) -> None:
    det = BuiltinDetector(tiny_detector)  # a fresh network's centre prior is 0.01: nothing passes 0.5
    assert det.detect(np.full((300, 500, 3), 128, np.uint8)) == []
    assert det.detect(np.zeros((3000, 2000, 3), np.uint8)) == []  # tiles auto on a big photo, still nothing


def test_many_faces_sorted_and_filtered() -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 50, 50], [0, 0, 30, 30], [5, 5, 100, 100.0]])
    scores = np.array([0.6, 0.9, 0.7, 0.8])
    dets = finish(boxes, scores, None, 0)
    assert [d.score for d in dets] == [0.9, 0.8, 0.7, 0.6]
    assert [d.score for d in finish(boxes, scores, 2, 0)] == [0.9, 0.8]
    assert [d.score for d in finish(boxes, scores, None, 40)] == [0.9, 0.8]
    rects = [(20 + 70 * i, 20 + 70 * j, 40) for i in range(8) for j in range(5)]
    found, sc = detect_tiled(squares, draw_squares(600, 400, rects), 640, "auto")
    assert len(found) == 40 and (np.diff(sc) <= 0).all()


def test_coarse_pass_finds_faces_too_big_for_the_proxy_pass() -> None:
    def small_only(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # a network that knows faces <= 330 px
        boxes, scores = squares(image)
        keep = (boxes[:, 2] - boxes[:, 0]) <= 330
        return boxes[keep], scores[keep]

    img = draw_squares(400, 400, [(10, 10, 380)])
    assert len(detect_tiled(small_only, img, 640, "off")[0]) == 0  # upscaled to 640: a 608 px square
    boxes, _ = detect_tiled(small_only, img, 640, "off", coarse=True)
    np.testing.assert_allclose(boxes[0], [9.5, 9.5, 389.5, 389.5], atol=1.5)


def test_landmark_box_fit_and_map_round_trip() -> None:
    """fit_landmark_box recovers the (scale, dx, dy) that made the pairs, and to_landmark_box applies it:
    box [0, 0, 100, 80] (side 100, centre (50, 40)) with (0.8, 0.01, 0.12) → side 80 centred at (51, 52)."""
    from fflm.detect.builtin import fit_landmark_box, to_landmark_box

    np.testing.assert_allclose(to_landmark_box(np.array([0.0, 0.0, 100.0, 80.0]), (0.8, 0.01, 0.12)),
                               [11.0, 12.0, 91.0, 92.0])
    rng = np.random.default_rng(0)
    pairs = []
    for _ in range(9):
        x, y, s = rng.uniform(0, 500), rng.uniform(0, 500), rng.uniform(20, 300)
        box = np.array([x, y, x + s, y + 0.9 * s])
        pairs.append((box, to_landmark_box(box, (0.79, -0.02, 0.11))))
    assert fit_landmark_box(pairs) == pytest.approx([0.79, -0.02, 0.11], abs=1e-4)


def test_detections_carry_the_landmark_box_from_the_header(tiny_detector: Path, tmp_path: Path) -> None:
    from fflm.detect.builtin import to_landmark_box

    boxes, scores = np.array([[10.0, 20.0, 110.0, 140.0]]), np.array([0.9])
    [plain] = finish(boxes, scores, None, 0.0)
    assert plain.landmark_box is None
    [hinted] = finish(boxes, scores, None, 0.0, (0.8, 0.0, 0.1))
    np.testing.assert_allclose(hinted.landmark_box, to_landmark_box(boxes[0], (0.8, 0.0, 0.1)))
    model, meta = load_detector(tiny_detector)
    model.config.extra["landmark_box"] = [0.8, 0.0, 0.1]
    save_detector(tmp_path / "cal.safetensors", model, meta)
    assert BuiltinDetector(tmp_path / "cal.safetensors").landmark_box == [0.8, 0.0, 0.1]
    assert BuiltinDetector(tiny_detector).landmark_box is None


def test_inference_preparation_keeps_the_maps() -> None:
    """BatchNorm folded and channels-last (what BuiltinDetector serves) must not change the network's maps."""
    import copy

    from fflm.model.serving import for_inference

    torch.manual_seed(0)
    net = randomise_batchnorm(FaceNet(DetectorConfig(widths=(4, 4, 8, 8, 8), fpn=8)).eval())
    served = for_inference(copy.deepcopy(net))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in served.modules())
    x = torch.rand(1, 3, 96, 128) * 255
    with torch.inference_mode():
        for a, b in zip(served(x), net(x)):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_prepare_normalises_and_pads_with_the_mean_colour() -> None:
    from fflm.detect.run import prepare

    net = FaceNet(DetectorConfig(widths=(4, 4, 8, 8, 8), fpn=8, mean=(100.0, 50.0, 10.0), std=2.0))
    image = np.array([[[100, 50, 10], [104, 50, 0]], [[0, 0, 0], [255, 255, 255]], [[100, 52, 10], [98, 50, 12]]], np.uint8)
    x = prepare(net, image)
    assert x.shape == (1, 3, 32, 32)
    assert x[0, :, 0, 1].tolist() == [2.0, 0.0, -5.0]
    assert x[0, :, 1, 1].tolist() == [77.5, 102.5, 122.5]
    assert x[0, :, 2, 0].tolist() == [0.0, 1.0, 0.0]
    assert float(x[0, :, 3:].abs().max()) == 0.0 and float(x[0, :, :, 2:].abs().max()) == 0.0  # mean colour
    # the same maps as the training path on the image padded with the mean colour
    padded = torch.tensor(net.config.mean).view(1, 3, 1, 1).repeat(1, 1, 32, 32)
    padded[0, :, :3, :2] = torch.from_numpy(image).permute(2, 0, 1).float()
    with torch.inference_mode():
        for a, b in zip(net.eval().run_normalised(x), net(padded)):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_tilt_keeps_boxes_on_their_content() -> None:
    """A bright square tilted with its canvas: the moved box stays centred on it, a bit larger than before."""
    from fflm.train.detector_data import tilt

    img = np.zeros((120, 160, 3), np.uint8)
    img[30:50, 100:120] = 255  # pixel centres 100..119, 30..49: box [99.5, 29.5, 119.5, 49.5]
    box = np.array([[99.5, 29.5, 119.5, 49.5]])
    for deg in (-20.0, 7.0, 30.0):
        out, moved, ign = tilt(img, box, np.zeros((0, 4)), deg)
        ys, xs = np.nonzero(out[:, :, 0] > 127)
        centre = np.array([xs.mean(), ys.mean()])
        np.testing.assert_allclose((moved[0, :2] + moved[0, 2:]) / 2, centre, atol=0.6)
        side = moved[0, 2] - moved[0, 0]
        hull = 20 * (abs(np.cos(np.radians(deg))) + abs(np.sin(np.radians(deg))))
        assert 20 < side < hull and side == pytest.approx((20 + hull) / 2)
        assert ign.shape == (0, 4) and out.shape == img.shape
    out, moved, _ = tilt(img, box, np.zeros((0, 4)), 0.0)
    np.testing.assert_array_equal(out, img)
    np.testing.assert_allclose(moved, box)


def test_occlude_covers_part_of_each_chosen_face_and_nothing_else() -> None:
    from fflm.train.detector_data import occlude

    rng = np.random.default_rng(3)
    boxes = np.array([[9.5, 9.5, 49.5, 59.5], [79.5, 19.5, 119.5, 69.5], [-20.5, 70.5, 19.5, 110.5]])
    inside = np.zeros((100, 140), bool)
    for x0, y0, x1, y1 in boxes:
        inside[max(0, int(y0 + 0.5)) : int(y1 + 0.5), max(0, int(x0 + 0.5)) : int(x1 + 0.5)] = True
    covered_faces = 0
    for _ in range(40):
        img = rng.integers(0, 256, (100, 140, 3), dtype=np.uint8)
        out = occlude(img.copy(), boxes, rng, 0.5)
        changed = np.any(out != img, axis=2)
        assert not changed[~inside].any()  # nothing outside the faces
        for x0, y0, x1, y1 in boxes:
            r0, r1, c0, c1 = max(0, int(y0 + 0.5)), int(y1 + 0.5), max(0, int(x0 + 0.5)), int(x1 + 0.5)
            part = changed[r0:r1, c0:c1]
            cover = part.sum() / ((x1 - x0) * (y1 - y0))
            assert cover <= 0.5 + 0.05  # at most half of a face's box covered: it stays a face to find
            if cover > 0.1:
                covered_faces += 1
                ys, xs = np.nonzero(part)
                assert ys.min() == 0 or ys.max() == part.shape[0] - 1 or xs.min() == 0 or xs.max() == part.shape[1] - 1
    assert 35 < covered_faces < 80  # p = 0.5 of 120 faces, each covering ≥ 20 % of its box (less if outside the frame)
    img = rng.integers(0, 256, (100, 140, 3), dtype=np.uint8)
    np.testing.assert_array_equal(occlude(img.copy(), boxes, rng, 0.0), img)


def test_training_script_runs_resumes_and_exports(tmp_path: Path, capsys) -> None:
    """Two tiny epochs of `python -m fflm.train.detector` on made-up scenes and 300-W faces (with tilted canvases):
    it checkpoints, resumes at the next epoch and exports a detector that loads with its threshold."""
    from conftest import faces, scene_folder
    from fflm.train.detector import main

    scenes = scene_folder(tmp_path / "scenes")
    w300 = faces(tmp_path / "w300", 3)
    out = tmp_path / "run"
    args = ["--scenes", str(scenes), "--w300", str(w300), "--out", str(out), "--steps", "2", "--batch", "2",
            "--size", "64", "--widths", "4,4,8,8,8", "--fpn", "8", "--rotate", "15", "--occlude", "0.5", "--ema", "0.9",
            "--threshold", "0.3"]
    main(args + ["--epochs", "1"])
    first = torch.load(out / "last.pt", weights_only=False)
    assert first["epoch"] == 1 and first["ema"] is not None
    assert "raw weights" in capsys.readouterr().out
    # the export holds the average of the weights, not the last step's
    exported = load_detector(out / "best.safetensors")[0].state_dict()
    assert any(not torch.equal(exported[k], v) for k, v in first["model"].items() if v.is_floating_point())
    main(args + ["--epochs", "2", "--export", str(tmp_path / "det.safetensors")])
    assert torch.load(out / "last.pt", weights_only=False)["step"] == 4
    det = BuiltinDetector(tmp_path / "det.safetensors")
    assert det.threshold == 0.3 and det.model.config.widths == (4, 4, 8, 8, 8)
    assert isinstance(det.detect(np.zeros((64, 64, 3), np.uint8)), list)
    # without --threshold the export takes the one validation chose; none reached precision 0.9 here: 0.5
    main(args[:-2] + ["--export-only", "--export", str(tmp_path / "det2.safetensors")])
    assert BuiltinDetector(tmp_path / "det2.safetensors").threshold == 0.5
    # --init into a network with another head: the matching tensors are kept, the new head starts fresh
    grown = [a if a != str(out) else str(tmp_path / "run3") for a in args]
    main(grown + ["--epochs", "1", "--strides", "8,16,32", "--init", str(tmp_path / "det.safetensors")])
    assert "new: heads.16." in capsys.readouterr().out
    assert load_detector(tmp_path / "run3" / "best.safetensors")[0].config.strides == (8, 16, 32)


def test_mirror_boxes_by_hand_and_twice_is_identity() -> None:
    from fflm.train.detector_data import mirror_boxes

    b = np.array([[0, 10, 9, 20], [90, 0, 99, 5.0]])  # in a 100 px wide image: the left and right edges swap
    np.testing.assert_array_equal(mirror_boxes(b, 100), [[90, 10, 99, 20], [0, 0, 9, 5]])
    np.testing.assert_array_equal(mirror_boxes(mirror_boxes(b, 100), 100), b)
    assert mirror_boxes(np.zeros((0, 4)), 100).shape == (0, 4)


def test_roll_and_the_keypoint_frame_follow_the_face():
    """roll(): 0 for level eyes, +90 when the left eye sits straight below the right one (clockwise, y down). A frame
    fitted on one face shape gives, for that face turned, scaled and moved, the landmarks' box turned likewise."""
    from fflm.detect.frame import FaceFrame, rotation, roll

    kps = np.array([[30.0, 40], [70, 40], [50, 60], [35, 80], [65, 80]])
    assert roll(kps) == 0.0
    assert roll(np.array([[0.0, 0], [0, 10], [0, 0], [0, 0], [0, 0]])) == pytest.approx(90.0)
    points = np.array([[20.0, 30], [80, 30], [50, 100], [20, 70], [80, 70]])  # the "landmarks": box 20-80, 30-100
    rng = np.random.default_rng(0)
    jitter = [kps + rng.normal(0, 0.5, kps.shape) for _ in range(30)]
    frame = FaceFrame.fit(np.array(jitter), np.array([points] * 30))
    centre, side, angle = frame.upright(kps)
    np.testing.assert_allclose(centre, [50, 65], atol=0.5)
    assert side == pytest.approx(70, abs=0.5) and angle == 0.0
    r = rotation(30.0)
    moved = (kps - 50) @ r.T * 2 + [300, 200]
    centre2, side2, angle2 = frame.upright(moved)
    np.testing.assert_allclose(centre2, (np.array([50, 65]) - 50) @ r.T * 2 + [300, 200], atol=1.0)
    assert side2 == pytest.approx(140, abs=1.0) and angle2 == pytest.approx(30.0)
    np.testing.assert_allclose(frame.landmark_box(kps), [15, 30, 85, 100], atol=0.5)


def test_the_shipped_yunet_gives_keypoints_and_a_landmark_box_around_them():
    from fflm.detect import make_detector
    from fflm.imageio import read_image

    sample = asset("astronaut.png")
    [d] = make_detector("yunet", tiles="off").detect(read_image(sample))
    assert d.keypoints.shape == (5, 2) and d.score >= 0.76
    lo, hi = d.landmark_box[:2], d.landmark_box[2:]
    assert (d.keypoints > lo).all() and (d.keypoints < hi).all()
    assert d.keypoints[0, 0] < d.keypoints[1, 0]  # the subject's right eye on the image's left


@pytest.mark.parametrize("name", ["yunet", "builtin"])
def test_min_face_default_drops_tiny_faces_but_leaves_tiling_alone(monkeypatch, name):
    """Faces under MIN_FACE px (sqrt of the box area) get no landmarks by default; --min-face-size 0 keeps them.
    Only a size asked for steers --tiles auto (the default floor must not multiply the tiles of big photos)."""
    import importlib

    from fflm.choices import MIN_FACE

    module = importlib.import_module(f"fflm.detect.{name}")
    seen = []
    kps = [50, 50, 60, 50, 55, 55, 51, 60, 59, 60]

    def fake_tiled(run, image, proxy, tiles, min_face, *args, **kwargs):
        seen.append(min_face)
        side = MIN_FACE - 1  # 19 × 19 and 21 × 21 boxes
        return (np.array([[10, 10, 10 + side, 10 + side] + kps, [40, 40, 40 + side + 2, 40 + side + 2] + kps], float),
                np.array([0.99, 0.98]))

    monkeypatch.setattr(module, "detect_tiled", fake_tiled)
    image = np.zeros((120, 160, 3), np.uint8)
    default = make_detector(name, rotations="none").detect(image)
    assert [round(d.box[2] - d.box[0]) for d in default] == [MIN_FACE + 1]
    assert len(make_detector(name, rotations="none", min_face_size=0).detect(image)) == 2
    assert len(make_detector(name, rotations="none", min_face_size=22).detect(image)) == 0
    assert seen == [0.0, 0.0, 22.0]
