"""fflm.annotations (300-W folder, CSV, JSON) and fflm.train.data: face frames, augmentation, the dataset."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fflm.pts import AnnotationError, format_pts, read_pts
from fflm.scheme import IBUG68, LandmarkScheme
from fflm.annotations import Sample, read_annotations
from fflm.train.data import Augment, LandmarkDataset, frame_transform, photometric

from conftest import SHARED, needs_shared

FAST = settings(max_examples=25, deadline=None)

#: Five points: 0/1 and 3/4 mirror each other, 2 is on the axis.
FIVE = LandmarkScheme(name="five", num_points=5, regions=(), flip_pairs=((0, 1), (3, 4)), norm_points=(0, 1))
FIVE_PTS = np.array([[60.3, 70.6], [140.7, 69.2], [100.4, 110.8], [70.2, 150.3], [129.6, 151.5]])
GEOMETRY_ONLY = Augment(colour=0, blur=0, noise=0, jpeg=0)  # the default scale, shift, rotation and flip


def write_png(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]))
    return path


def tiny_png(path: Path) -> Path:
    return write_png(path, np.full((8, 10, 3), 90, np.uint8))


_BIG: list[Path] = []


def big_png(tmp_path_factory) -> Path:
    """One 5100 px uniform PNG for the whole run (readers check that points are not far outside the image)."""
    if not _BIG:
        _BIG.append(write_png(tmp_path_factory.mktemp("big") / "big.png", np.full((5100, 5100, 3), 90, np.uint8)))
    return _BIG[0]


def blob(shape: tuple[int, int], centre, sigma: float) -> np.ndarray:
    """A Gaussian dot of peak 1 centred on `centre` in 0-based pixel-centre coordinates."""
    ys, xs = np.mgrid[: shape[0], : shape[1]].astype(np.float64)
    return np.exp(-((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2 * sigma**2))


def centroid(weight: np.ndarray, locate: np.ndarray | None = None, radius: int = 3) -> np.ndarray:
    """Sub-pixel (x, y) centroid of the blob around the maximum of `locate` (default: weight itself)."""
    locate = weight if locate is None else locate
    y, x = np.unravel_index(np.argmax(locate), locate.shape)
    y0, y1 = max(y - radius, 0), min(y + radius + 1, weight.shape[0])
    x0, x1 = max(x - radius, 0), min(x + radius + 1, weight.shape[1])
    win = weight[y0:y1, x0:x1].astype(np.float64)
    w = np.clip(win - 0.25 * win.max(), 0, None)
    ys, xs = np.mgrid[y0:y1, x0:x1]
    return np.array([(w * xs).sum() / w.sum(), (w * ys).sum() / w.sum()])


def dataset(samples, scheme, resolution, frame_scale=1.5, augment=None, seed=0, image=None) -> LandmarkDataset:
    """A dataset over in-memory images (the cache) or files."""
    ds = LandmarkDataset(samples, scheme, resolution, frame_scale, augment, seed, preload=image is None)
    if image is not None:
        ds.cache = [image] * len(samples)
    return ds


def symmetric_face(centre_x: float = 100.0, seed: int = 0) -> np.ndarray:
    """68 points mirror-symmetric about x = centre_x through the scheme's flip pairs (pair's first on the left)."""
    rng = np.random.default_rng(seed)
    pts = np.zeros((68, 2))
    pts[:, 0] = centre_x
    pts[:, 1] = rng.uniform(40, 170, 68)
    for a, b in IBUG68.flip_pairs:
        x = rng.uniform(30, centre_x - 5)
        pts[a] = (x, pts[a, 1])
        pts[b] = (2 * centre_x - x, pts[a, 1])
    return pts


# --------------------------------------------------------------------------------------------- readers


def test_folder_reader_pts_is_one_based(tmp_path):
    img = write_png(tmp_path / "face.png", np.full((500, 700, 3), 90, np.uint8))  # holds the point at (639, 479)
    (tmp_path / "face.pts").write_text("version: 1\nn_points: 3\n{\n1 1\n10.5 20.25\n640 480\n}\n")
    [s] = read_annotations(tmp_path)
    assert s.image == img
    assert s.points.dtype == np.float64
    np.testing.assert_array_equal(s.points, [[0.0, 0.0], [9.5, 19.25], [639.0, 479.0]])  # exactly value - 1


def test_folder_reader_pairs_by_exact_stem_sorted(tmp_path):
    for stem in ("b", "a", "c[1]"):
        tiny_png(tmp_path / f"{stem}.png")
        (tmp_path / f"{stem}.pts").write_text(format_pts(np.array([[1.0, 2.0], [3.0, 4.0]])))
    tiny_png(tmp_path / "a.0.png")  # another image whose name starts with "a." (and sorts before a.png)
    tiny_png(tmp_path / "lonely.png")  # an image without annotation is not a sample
    (tmp_path / "notes.txt").write_text("not an image")
    samples = read_annotations(tmp_path)
    assert [s.image.name for s in samples] == ["a.png", "b.png", "c[1].png"]
    for s in samples:
        np.testing.assert_array_equal(s.points, [[1.0, 2.0], [3.0, 4.0]])


def test_folder_reader_any_image_extension(tmp_path):
    write_png(tmp_path / "x.png", np.zeros((4, 4, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "y.jpg"), np.zeros((4, 4, 3), np.uint8))
    for stem in "xy":
        (tmp_path / f"{stem}.pts").write_text("5 6\n7 8\n")
    assert [s.image.name for s in read_annotations(tmp_path, num_points=2)] == ["x.png", "y.jpg"]


def test_csv_reader_paths_relative_to_csv_file(tmp_path, monkeypatch):
    tiny_png(tmp_path / "data" / "imgs" / "a.png")
    absolute = tiny_png(tmp_path / "elsewhere" / "b.png")
    path = tmp_path / "data" / "faces.csv"
    path.write_text(f"image,x0,y0,x1,y1\nimgs/a.png,1.5,2,3,-0.5\n\n{absolute},0,0,7.25,9\n")
    monkeypatch.chdir(tmp_path / "elsewhere")  # relative paths are not resolved against the working directory
    samples = read_annotations(path, num_points=2)
    assert [s.image for s in samples] == [tmp_path / "data" / "imgs" / "a.png", absolute]
    np.testing.assert_array_equal(samples[0].points, [[1.5, 2.0], [3.0, -0.5]])  # 0-based as written
    np.testing.assert_array_equal(samples[1].points, [[0.0, 0.0], [7.25, 9.0]])
    assert samples[0].points.dtype == np.float64


def test_json_reader_paths_relative_to_json_file(tmp_path, monkeypatch):
    tiny_png(tmp_path / "set" / "sub" / "a.png")
    tiny_png(tmp_path / "set" / "b.png")
    path = tmp_path / "set" / "faces.json"
    path.write_text(json.dumps([{"image": "sub/a.png", "landmarks": [[1.5, 2], [3, 4.25]]},
                                {"image": "b.png", "landmarks": [[0, 0], [-0.5, 10]], "extra": "ignored"}]))
    monkeypatch.chdir(tmp_path)
    samples = read_annotations(path, num_points=2)
    assert [s.image for s in samples] == [tmp_path / "set" / "sub" / "a.png", tmp_path / "set" / "b.png"]
    np.testing.assert_array_equal(samples[0].points, [[1.5, 2.0], [3.0, 4.25]])
    np.testing.assert_array_equal(samples[1].points, [[0.0, 0.0], [-0.5, 10.0]])


point_sets = st.integers(2, 6).flatmap(
    lambda n: st.lists(st.tuples(st.floats(-50, 5000, allow_nan=False), st.floats(-50, 5000, allow_nan=False)),
                       min_size=n, max_size=n)).filter(lambda p: np.ptp(np.array(p), axis=0).min() > 0)  # a face has an extent


@FAST
@given(pts=point_sets)
def test_readers_round_trip_exactly(tmp_path_factory, pts):
    pts = np.array(pts, dtype=np.float64)
    root = tmp_path_factory.mktemp("rt")
    (root / "f.png").symlink_to(big_png(tmp_path_factory))  # large enough that no point is far outside it
    (root / "f.pts").write_text(format_pts(pts))  # 1-based on disk
    with open(root / "a.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image"] + [f"{c}{i}" for i in range(len(pts)) for c in "xy"])
        w.writerow(["f.png"] + [repr(float(v)) for v in pts.ravel()])
    (root / "a.json").write_text(json.dumps([{"image": "f.png", "landmarks": pts.tolist()}]))
    folder = read_annotations(root)
    for samples in (folder, read_annotations(root / "a.csv"), read_annotations(root / "a.json")):
        [s] = samples
        assert s.image == root / "f.png"
        np.testing.assert_array_equal(s.points, pts)


# --------------------------------------------------------------------------------------------- errors


def raises(match_parts, fn, *args, **kw) -> str:
    with pytest.raises(AnnotationError) as e:
        fn(*args, **kw)
    msg = str(e.value)
    for part in match_parts:
        assert str(part) in msg, f"{part!r} not in {msg!r}"
    assert "\n" not in msg
    return msg


def test_wrong_point_count_names_the_annotation(tmp_path):
    tiny_png(tmp_path / "dir" / "face.png")
    pts = tmp_path / "dir" / "face.pts"
    pts.write_text("1 2\n3 4\n5 6\n")
    raises([pts, "3 points", "68"], read_annotations, tmp_path / "dir", 68)

    tiny_png(tmp_path / "a.png")
    path = tmp_path / "faces.csv"
    path.write_text("image,x0,y0,x1,y1\na.png,1,2,3,4\n")
    raises([f"{path}:2", "2 points", "68"], read_annotations, path, 68)

    path = tmp_path / "faces.json"
    path.write_text(json.dumps([{"image": "a.png", "landmarks": [[1, 2]] * 68},
                                {"image": "a.png", "landmarks": [[1, 2]] * 67}]))
    raises([path, "item 1", "67 points", "68"], read_annotations, path, 68)


def test_points_spanning_no_area_name_the_annotation(tmp_path):
    """A face frame is built from the points' box: points all at one place or on one line are refused by name
    (they would give a frame of side 0 and NaN everywhere downstream)."""
    write_png(tmp_path / "dir" / "face.png", np.full((40, 40, 3), 90, np.uint8))
    pts = tmp_path / "dir" / "face.pts"
    for points in ([[20.0, 20.0]] * 3, [[5.0, 20.0], [9.0, 20.0], [30.0, 20.0]]):
        pts.write_text(format_pts(np.array(points)))
        raises([pts, "span no area"], read_annotations, tmp_path / "dir")
    pts.write_text(format_pts(np.array([[5.0, 20.0], [9.0, 21.0], [30.0, 20.0]])))
    assert len(read_annotations(tmp_path / "dir")) == 1


def test_pts_count_disagreeing_with_header(tmp_path):
    tiny_png(tmp_path / "face.png")
    (tmp_path / "face.pts").write_text("version: 1\nn_points: 68\n{\n1 2\n3 4\n}\n")
    raises([tmp_path / "face.pts", "68", "2 points"], read_annotations, tmp_path)


def test_non_numeric_value_names_file_and_line(tmp_path):
    tiny_png(tmp_path / "face.png")
    (tmp_path / "face.pts").write_text("version: 1\nn_points: 2\n{\n1 2\n3 four\n}\n")
    raises([f"{tmp_path / 'face.pts'}:5", "3 four"], read_annotations, tmp_path)

    path = tmp_path / "faces.csv"
    path.write_text("image,x0,y0\nface.png,1,2\nface.png,1,abc\n")
    raises([f"{path}:3", "non-numeric"], read_annotations, path)
    path.write_text("image,x0,y0\nface.png,1,2\nface.png,nan,2\n")
    raises([f"{path}:3", "non-finite"], read_annotations, path)

    path = tmp_path / "faces.json"
    path.write_text(json.dumps([{"image": "face.png", "landmarks": [[1, "a"]]}]))
    raises([path, "item 0", "landmarks"], read_annotations, path)


def test_csv_structure_errors_name_the_line(tmp_path):
    path = tmp_path / "faces.csv"
    path.write_text("img,x0,y0\nface.png,1,2\n")
    raises([f"{path}:1", "header"], read_annotations, path)
    path.write_text("image,x0,y0,x1\nface.png,1,2,3\n")  # an odd number of coordinates
    raises([f"{path}:1", "header"], read_annotations, path)
    tiny_png(tmp_path / "face.png")
    path.write_text("image,x0,y0,x1,y1\nface.png,1,2,3,4\nface.png,1,2,3\n")
    raises([f"{path}:3", "4 columns", "5"], read_annotations, path)


def test_missing_image(tmp_path):
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "face.pts").write_text("1 2\n3 4\n")
    raises([tmp_path / "dir" / "face.pts", "image"], read_annotations, tmp_path / "dir")

    tiny_png(tmp_path / "here.png")
    path = tmp_path / "faces.csv"
    path.write_text("image,x0,y0\nhere.png,1,2\ngone.png,3,4\n")
    raises([f"{path}:3", "gone.png"], read_annotations, path)

    path = tmp_path / "faces.json"
    path.write_text(json.dumps([{"image": "here.png", "landmarks": [[1, 2]]}, {"image": "gone.png", "landmarks": [[1, 2]]}]))
    raises([path, "item 1", "gone.png"], read_annotations, path)


def test_empty_sources(tmp_path):
    raises([tmp_path, "no annotated images"], read_annotations, tmp_path)
    tiny_png(tmp_path / "a.png")  # images alone are not annotations
    raises([tmp_path, "no annotated images"], read_annotations, tmp_path)
    path = tmp_path / "faces.csv"
    path.write_text("image,x0,y0\n")
    raises([path, "no annotated images"], read_annotations, path)
    path.write_text("")
    raises([f"{path}:1", "header"], read_annotations, path)
    path = tmp_path / "faces.json"
    path.write_text("[]")
    raises([path, "no annotated images"], read_annotations, path)


def test_bad_json(tmp_path):
    path = tmp_path / "faces.json"
    path.write_text('[\n {"image": "a.png",\n  "landmarks": [[1, 2],]}\n]\n')
    raises([f"{path}:3", "invalid JSON"], read_annotations, path)
    path.write_text('{"image": "a.png", "landmarks": [[1, 2]]}')
    raises([path, "list"], read_annotations, path)
    for item in ({"landmarks": [[1, 2]]}, {"image": "a.png"}, {"image": "a.png", "landmarks": [1, 2]},
                 {"image": "a.png", "landmarks": [[1, 2, 3]]}, {"image": "a.png", "landmarks": [[1, None]]},
                 {"image": "a.png", "landmarks": []}, "a.png"):
        path.write_text(json.dumps([item]))
        raises([path, "item 0"], read_annotations, path)


def test_unknown_source(tmp_path):
    raises([tmp_path / "nope.csv"], read_annotations, tmp_path / "nope.csv")
    raises([tmp_path / "nope"], read_annotations, tmp_path / "nope")
    (tmp_path / "faces.txt").write_text("x")
    raises([tmp_path / "faces.txt", ".csv", ".json"], read_annotations, tmp_path / "faces.txt")


def test_annotation_error_is_a_value_error():
    assert issubclass(AnnotationError, ValueError)  # the CLI reports it as a usage error, in one line


# --------------------------------------------------------------------------------------------- frames


def test_frame_pixel_centre_convention_exact(tmp_path):
    """A frame of the same pixel size as the source: the frame is an exact crop and points shift by an integer."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (60, 70, 3), dtype=np.uint8)
    write_png(tmp_path / "f.png", img)
    # tight box [9.5, 41.5]² (32 px between pixel edges), frame_scale 1 -> 32×32 frame at scale 1
    pts = np.array([[9.5, 9.5], [41.5, 41.5], [20.0, 30.0]])
    scheme = LandmarkScheme("three", 3, (), (), (0, 1))
    frame, out = LandmarkDataset([Sample(tmp_path / "f.png", pts)], scheme, 32, 1.0, None)[0][:2]
    np.testing.assert_array_equal(frame.numpy().transpose(1, 2, 0), img[10:42, 10:42])
    np.testing.assert_allclose(out.numpy(), pts - 10, atol=1e-5)
    # the point on the centre of source pixel (x 20, y 30) is on the centre of frame pixel (10, 20), same value
    np.testing.assert_array_equal(frame[:, 20, 10].numpy(), img[30, 20])


@pytest.mark.parametrize("factor", [3, 4])
def test_frame_pixel_centre_convention_when_shrinking(factor):
    """Shrinking by an integer factor: frame pixel (u, v) is the mean of the source block it covers, and the
    centre of that block maps onto the frame pixel's centre."""
    rng = np.random.default_rng(1)
    r = 16
    n = factor * r
    img = rng.integers(0, 256, (n + 5, n + 3, 3), dtype=np.uint8)
    c = (factor - 1) / 2  # source coordinate of the centre of block 0
    pts = np.array([[-0.5, -0.5], [n - 0.5, n - 0.5], [c, c], [factor * 8 + c, factor * 4 + c]])
    scheme = LandmarkScheme("four", 4, (), (), (0, 1))
    frame, out = dataset([Sample(Path("mem.png"), pts)], scheme, r, 1.0, image=img)[0][:2]
    np.testing.assert_allclose(out.numpy(), [[-0.5, -0.5], [r - 0.5, r - 0.5], [0, 0], [8, 4]], atol=1e-5)
    blocks = img[:n, :n].astype(np.float64).reshape(r, factor, r, factor, 3).mean(axis=(1, 3))
    assert np.abs(frame.numpy().transpose(1, 2, 0).astype(np.float64) - blocks).max() <= 1.0


@FAST
@given(
    pts=st.lists(st.tuples(st.floats(0, 500), st.floats(0, 400)), min_size=2, max_size=8),
    resolution=st.sampled_from([16, 64, 256]),
    frame_scale=st.floats(1.0, 2.0),
)
def test_plain_frame_centres_the_landmark_box(pts, resolution, frame_scale):
    pts = np.array(pts)
    m, flip = frame_transform(pts, resolution, frame_scale, None, Augment())  # no rng: no augmentation
    assert not flip
    lo, hi = pts.min(0), pts.max(0)
    side = frame_scale * max(*(hi - lo), 1.0)
    centre = (lo + hi) / 2
    mapped = (np.array([centre - side / 2, centre + side / 2, centre]) @ m[:, :2].T) + m[:, 2]
    r = resolution
    np.testing.assert_allclose(mapped, [[-0.5, -0.5], [r - 0.5, r - 0.5], [r / 2 - 0.5, r / 2 - 0.5]], atol=1e-6 * r)
    np.testing.assert_allclose(m[:, :2], np.eye(2) * r / side, atol=1e-12 * r / side)


@FAST
@given(seed=st.integers(0, 2**32 - 1))
def test_augmented_frame_is_a_clipped_similarity(seed):
    aug = Augment()
    pts = np.array([[10.0, 20.0], [110.0, 20.0], [60.0, 140.0]])
    m, flip = frame_transform(pts, 64, 1.5, np.random.default_rng(seed), aug)
    a = m[:, :2]
    scale = math.sqrt(abs(np.linalg.det(a)))
    np.testing.assert_allclose(a @ a.T, np.eye(2) * scale**2, atol=1e-9)  # rotation × scale (× mirror)
    assert (np.linalg.det(a) < 0) == flip
    nominal = 64 / (1.5 * 120)
    assert math.exp(-2.5 * aug.scale) - 1e-9 <= nominal / scale <= math.exp(2.5 * aug.scale) + 1e-9
    rot = a / scale
    if flip:
        rot = rot * np.array([[-1.0], [1.0]])
    assert abs(math.degrees(math.atan2(rot[1, 0], rot[0, 0]))) <= 2.5 * aug.rotate + 1e-6


# --------------------------------------------------------------------------------------------- dataset items


def test_dataset_item_shapes_dtypes_and_range(tmp_path):
    rng = np.random.default_rng(2)
    write_png(tmp_path / "a.png", rng.integers(0, 256, (150, 120, 3), dtype=np.uint8))
    write_png(tmp_path / "b.png", rng.integers(0, 256, (90, 200, 3), dtype=np.uint8))
    samples = [Sample(tmp_path / "a.png", rng.uniform([20, 30], [100, 120], (68, 2))),
               Sample(tmp_path / "b.png", rng.uniform([50, 10], [150, 80], (68, 2)))]
    for aug in (None, Augment()):
        ds = LandmarkDataset(samples, IBUG68, 48, 1.5, aug, seed=3)
        assert len(ds) == 2
        for i in range(2):
            frame, pts, _ = ds[i]
            assert frame.dtype == torch.uint8 and frame.shape == (3, 48, 48) and frame.is_contiguous()
            assert pts.dtype == torch.float32 and pts.shape == (68, 2)
            assert torch.isfinite(pts).all()
            if aug is None:  # the landmark box fills the middle 1/1.5 of the frame along its longer side
                r = 48
                assert pts.min() >= r / 6 - 0.5 - 1e-4 and pts.max() <= 5 * r / 6 - 0.5 + 1e-4
                span = (pts.max(0).values - pts.min(0).values).max().item()
                assert span == pytest.approx(2 * r / 3, abs=1e-4)
    batch = torch.utils.data.default_collate([ds[0], ds[1]])
    assert batch[0].shape == (2, 3, 48, 48) and batch[1].shape == (2, 68, 2)


def test_dataset_preload_and_determinism(tmp_path):
    rng = np.random.default_rng(3)
    write_png(tmp_path / "a.png", rng.integers(0, 256, (100, 100, 3), dtype=np.uint8))
    samples = [Sample(tmp_path / "a.png", FIVE_PTS / 2)]
    ds = LandmarkDataset(samples, FIVE, 32, 1.5, Augment(), seed=7)
    lazy = LandmarkDataset(samples, FIVE, 32, 1.5, Augment(), seed=7, preload=False)
    assert ds.cache is not None and lazy.cache is None
    (f1, p1, _), (f2, p2, _) = ds[0], lazy[0]
    assert torch.equal(f1, f2) and torch.equal(p1, p2)  # same seed, epoch and index: same item
    ds.epoch = 1
    f3, p3, _ = ds[0]
    assert not torch.equal(p1, p3)  # a new epoch draws new augmentation
    plain = LandmarkDataset(samples, FIVE, 32, 1.5, None)
    assert torch.equal(plain[0][1], plain[0][1])


def test_augmented_landmarks_stay_in_frame_under_rotation_and_scale():
    """Points on a circle stay within 1/3·R·exp(2.5σ) of the frame centre under any rotation and (clipped) scale."""
    angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    pts = np.stack([100 + 40 * np.cos(angles), 90 + 40 * np.sin(angles)], axis=1)
    scheme = LandmarkScheme("ring", 12, (), ((1, 11), (2, 10), (3, 9), (4, 8), (5, 7)), (0, 6))
    aug = Augment(scale=0.1, shift=0, rotate=30, flip=0.5, colour=0, blur=0, noise=0, jpeg=0)
    img = np.zeros((200, 200, 3), np.uint8)
    r = 64
    for seed in range(10):
        _, out = dataset([Sample(Path("mem.png"), pts)], scheme, r, 1.5, aug, seed, image=img)[0][:2]
        dist = (out.numpy() - (r / 2 - 0.5)).__pow__(2).sum(1) ** 0.5
        assert dist.max() <= r / 3 * math.exp(0.25) + 1e-3
        assert dist.min() >= r / 3 * math.exp(-0.25) - 1e-3
        assert out.min() > -0.5 and out.max() < r - 0.5


def test_augment_parse():
    assert Augment.parse("") == Augment() and Augment.parse("none") == Augment.none()
    assert Augment.parse("rotate=6, blur=0,jpeg=0.5") == Augment(rotate=6.0, blur=0.0, jpeg=0.5)  # the rest: defaults
    assert Augment.parse("scale=0.05,scale=0.02").scale == 0.02  # the last one counts


@pytest.mark.parametrize("text, words", [
    ("rotation=6", "unknown augmentation 'rotation'"),
    ("rotate", "rotate needs a number >= 0, got ''"),
    ("rotate=six", "rotate needs a number >= 0, got 'six'"),
    ("blur=-0.1", "blur needs a number >= 0"),
    ("blur=nan", "blur needs a number >= 0"),
    ("flip=2", "flip is a probability (0..1), got 2"),
])
def test_augment_parse_errors(text, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        Augment.parse(text)


def test_photometric_off_is_identity_and_on_keeps_shape():
    img = np.random.default_rng(4).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    np.testing.assert_array_equal(photometric(img, np.random.default_rng(0), Augment.none()), img)
    assert Augment.none() == Augment(0, 0, 0, 0, 0, 0, 0, 0)
    full = Augment(colour=0.25, blur=1.0, noise=1.0, jpeg=1.0)
    out = photometric(img, np.random.default_rng(0), full)
    assert out.shape == img.shape and out.dtype == np.uint8


# --------------------------------------------------------------------------------------------- augmentation keeps content


def _dots_image() -> np.ndarray:
    """Black 190×210 image: a red dot on FIVE point 0, a blue dot on point 1 (its mirror), green on 2 (the axis)."""
    img = np.zeros((190, 210, 3))
    for k, ch in ((0, 0), (1, 2), (2, 1)):
        img[:, :, ch] += 255 * blob(img.shape[:2], FIVE_PTS[k], 3.0)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def _dot_positions(frame: np.ndarray) -> dict[int, np.ndarray]:
    """Centroids (x, y) of the red, blue and green dots in a frame [3, R, R], keyed by the FIVE point they were on."""
    f = frame.astype(np.float64)
    grey = f.sum(0)
    out = {}
    for k, ch in ((0, 0), (1, 2), (2, 1)):
        others = [c for c in range(3) if c != ch]
        colour = f[ch] - f[others].mean(0)
        out[k] = centroid(grey, locate=colour, radius=4)
    return out


def _orientation(a, b, c) -> float:
    return float(np.sign((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])))


@pytest.mark.parametrize(("aug", "resolution", "tol"), [
    (GEOMETRY_ONLY, 96, 0.25),  # frame scale ~0.8: plain bilinear warp (a half-pixel slip would fail)
    (GEOMETRY_ONLY, 40, 0.25),  # frame scale ~0.3: integer area pre-shrink, then warp
    (Augment(), 64, 1.0),  # everything: colour, blur, noise and JPEG too
])
def test_augmentation_keeps_landmarks_on_their_dots(aug, resolution, tol):
    img = _dots_image()
    src = _dot_positions(img.transpose(2, 0, 1))
    for k in range(3):  # the measuring itself is accurate on the source
        assert np.abs(src[k] - FIVE_PTS[k]).max() < 0.05
    source_side = _orientation(src[0], src[1], src[2])
    flips, checked = set(), 0
    for seed in range(10):
        ds = dataset([Sample(Path("mem.png"), FIVE_PTS)], FIVE, resolution, 1.5, aug, seed, image=img)
        frame, pts, _ = ds[0]
        pts = pts.numpy()
        dots = _dot_positions(frame.numpy())
        flipped = _orientation(dots[0], dots[1], dots[2]) != source_side  # the content was mirrored
        flips.add(flipped)
        # a mirrored face relabels: the dot that was on point 0 is now on point 1 and vice versa (flip pairs)
        expect = {0: 1, 1: 0, 2: 2} if flipped else {0: 0, 1: 1, 2: 2}
        for k, label in expect.items():
            if not (3 <= pts[label]).all() or not (pts[label] <= resolution - 4).all():
                continue  # a dot cut by the frame's edge has no measurable centre (shift/scale can push it out)
            checked += 1
            err = np.abs(dots[k] - pts[label]).max()
            assert err <= tol, f"seed {seed}: dot of point {k} at {dots[k]}, label {label} at {pts[label]}"
    assert checked >= 20  # of 30
    assert flips == {True, False}


# --------------------------------------------------------------------------------------------- flips


def test_flip_permutation_is_an_involution_through_the_pairs():
    perm = IBUG68.flip_permutation()
    assert sorted(perm) == list(range(68))
    assert [perm[p] for p in perm] == list(range(68))  # flipping twice is the identity
    assert perm[36] == 45 and perm[45] == 36  # outer eye corners
    assert perm[0] == 16 and perm[48] == 54 and perm[39] == 42
    assert all(perm[i] == i for i in (8, 27, 28, 29, 30, 33, 51, 57, 62, 66))  # the face's axis


@FAST
@given(seed=st.integers(0, 10_000))
def test_flip_matches_mirrored_plain_frame(seed):
    """flip=1: the frame is the plain frame mirrored, and point k is the plain frame's point perm[k] mirrored."""
    rng = np.random.default_rng(seed)
    pts = rng.uniform([20, 30], [180, 150], (68, 2))
    img = rng.integers(0, 256, (170, 200, 3), dtype=np.uint8)
    r = 32
    plain_f, plain_p = dataset([Sample(Path("m.png"), pts)], IBUG68, r, image=img)[0][:2]
    flip_f, flip_p = dataset([Sample(Path("m.png"), pts)], IBUG68, r, augment=Augment(0, 0, 0, 1, 0, 0, 0, 0),
                             image=img)[0][:2]
    assert (flip_f.int() - plain_f.flip(-1).int()).abs().max() <= 1  # the mirror image, up to warp rounding
    mirrored = plain_p.clone()
    mirrored[:, 0] = r - 1 - mirrored[:, 0]
    perm = IBUG68.flip_permutation()
    np.testing.assert_allclose(flip_p.numpy(), mirrored.numpy()[perm], atol=1e-4)
    # left-eye outer corner (45, image right) becomes the right-eye outer corner (36, image left)
    np.testing.assert_allclose(flip_p[36].numpy(), mirrored[45].numpy(), atol=1e-4)
    # flipping the flipped item again gives the plain item back
    again = flip_p.clone()
    again[:, 0] = r - 1 - again[:, 0]
    np.testing.assert_allclose(again.numpy()[perm], plain_p.numpy(), atol=1e-4)


def test_flip_of_symmetric_face_moves_left_eye_corner_onto_right_eye_label():
    pts = symmetric_face()
    img = np.zeros((200, 200, 3))
    img[:, :, :] = 255 * blob((200, 200), pts[45], 3.0)[:, :, None]  # a dot on the left-eye outer corner
    img = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    r = 64
    plain_f, plain_p = dataset([Sample(Path("m.png"), pts)], IBUG68, r, image=img)[0][:2]
    flip_f, flip_p = dataset([Sample(Path("m.png"), pts)], IBUG68, r, augment=Augment(0, 0, 0, 1, 0, 0, 0, 0),
                             image=img)[0][:2]
    # a mirror-symmetric face looks the same mirrored: every label stays where it was
    np.testing.assert_allclose(flip_p.numpy(), plain_p.numpy(), atol=1e-3)
    dot_plain = centroid(plain_f.numpy().sum(0).astype(np.float64))
    dot_flip = centroid(flip_f.numpy().sum(0).astype(np.float64))
    assert np.abs(dot_plain - plain_p[45].numpy()).max() < 0.5
    assert np.abs(dot_flip - flip_p[36].numpy()).max() < 0.5  # the dot is now on the right-eye outer corner
    assert plain_p[36, 0] < r / 2 < plain_p[45, 0]  # label 36 on the image's left, 45 on its right, both times
    assert flip_p[36, 0] < r / 2 < flip_p[45, 0]


# --------------------------------------------------------------------------------------------- shared data


@needs_shared
def test_shared_300w_hires_folder():
    folder = SHARED / "data" / "300w" / "hires"
    samples = read_annotations(folder, num_points=68)
    assert len(samples) == len(list(folder.glob("*.pts")))
    for s in samples:
        assert s.image.is_file() and s.image.stem == s.image.with_suffix(".pts").stem
        assert s.points.shape == (68, 2) and np.isfinite(s.points).all()
    first = samples[0]
    pts_file = first.image.with_suffix(".pts")
    np.testing.assert_array_equal(first.points, read_pts(pts_file))
    lines = [ln.split() for ln in pts_file.read_text().splitlines() if ln[:1].isdigit()]
    np.testing.assert_allclose(first.points, np.array(lines, dtype=np.float64) - 1, rtol=0, atol=1e-9)
    frame, pts, _ = LandmarkDataset([first], IBUG68, 64, 1.5, None)[0]
    assert frame.shape == (3, 64, 64) and pts.min() >= 64 / 6 - 0.6 and pts.max() <= 5 * 64 / 6 - 0.4
