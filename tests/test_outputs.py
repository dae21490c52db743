"""fflm.outputs: JSON, JSON Lines, CSV, .pts and overlay writers, with hand-built Face objects."""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import stat

import numpy as np
import pytest

import fflm.fileio as fileio
from fflm.imageio import read_image
from fflm.fileio import atomic_write
from fflm.outputs import (
    REGION_COLOURS,
    ImageResult,
    csv_header,
    draw_overlay,
    overlay_path,
    pts_name,
    read_csv,
    render,
    to_csv,
    to_json,
    to_jsonl,
    write_image,
    write_pts_files,
    write_results,
)
from fflm.pipeline import Face
from fflm.pts import read_pts
from fflm.scheme import IBUG68

N = 68


def make_face(seed: int = 0, score: float = 0.9, box=(10.0, 20.0, 110.0, 140.0), eighths: bool = False) -> Face:
    """A face with 68 landmarks. `eighths`: coordinates are multiples of 1/8, exact in 3 decimals."""
    rng = np.random.default_rng(seed)
    if eighths:
        lm = rng.integers(-4, 1600, (N, 2)) / 8.0
    else:  # what the pipeline produces: float32 values widened to float64
        lm = rng.uniform(-0.5, 199.5, (N, 2)).astype(np.float32).astype(np.float64)
    scores = rng.uniform(0, 1, N)
    return Face(np.array(box, dtype=np.float64), score, lm, scores)


def test_csv_header():
    h = csv_header(3)
    assert h == ["image", "width", "height", "face", "score", "quality", "box_x0", "box_y0", "box_x1", "box_y1",
                 "x_0", "y_0", "x_1", "y_1", "x_2", "y_2", "score_0", "score_1", "score_2", "track", "time_ms"]
    assert len(csv_header(N)) == 12 + 3 * N


def test_csv_has_the_image_size_and_the_landmark_scores():
    f = make_face(eighths=True)
    [row] = read_csv(to_csv([ImageResult("a.png", 200, 160, [f])], N))
    assert (row["width"], row["height"]) == (200, 160)
    np.testing.assert_allclose(row["landmark_scores"], f.landmark_scores, atol=5e-5 + 1e-9)
    np.testing.assert_array_equal(row["landmarks"], f.landmarks)
    assert row["box"] == [10.0, 20.0, 110.0, 140.0]
    assert row["track"] is None and row["time_ms"] is None


# --- JSON ----------------------------------------------------------------------------------------------------


def test_json_single_object_vs_list():
    r = ImageResult("a.png", 200, 160, [make_face()])
    one = json.loads(to_json([r], single=True))
    assert isinstance(one, dict) and one["image"] == "a.png"
    many = json.loads(to_json([r], single=False))
    assert isinstance(many, list) and many == [one]
    two = json.loads(to_json([r, ImageResult("b.png", 5, 4)], single=True))  # single only means one result
    assert isinstance(two, list) and [d["image"] for d in two] == ["a.png", "b.png"]


def test_json_content_is_rounded_original_pixels():
    f = make_face(score=0.123456)
    d = json.loads(to_json([ImageResult("a.png", 200, 160, [f])], single=True))
    assert (d["width"], d["height"]) == (200, 160)
    assert "frame" not in d and "error" not in d
    [face] = d["faces"]
    assert face["box"] == [10.0, 20.0, 110.0, 140.0]
    assert face["score"] == 0.1235
    assert len(face["landmarks"]) == N and all(len(p) == 2 for p in face["landmarks"])
    np.testing.assert_allclose(face["landmarks"], f.landmarks, atol=5e-4 + 1e-9)
    np.testing.assert_allclose(face["landmark_scores"], f.landmark_scores, atol=5e-5 + 1e-9)
    assert "global_landmarks" not in face


def test_json_error_result():
    results = [ImageResult("a.png", 200, 160, [make_face()]), ImageResult("bad.jpg", error="cannot decode bad.jpg")]
    d = json.loads(to_json(results, single=False))
    assert d[1] == {"image": "bad.jpg", "error": "cannot decode bad.jpg"}
    assert "faces" in d[0] and "error" not in d[0]


def test_jsonl_one_object_per_line():
    results = [ImageResult("a.png", 200, 160, [make_face()]), ImageResult("b.png", 30, 20, []),
               ImageResult("bad.jpg", error="boom"), ImageResult("clip.mp4", 64, 48, [make_face(1)], frame=7)]
    text = to_jsonl(results)
    lines = text.splitlines()
    assert text.endswith("\n") and len(lines) == 4
    objs = [json.loads(line) for line in lines]
    assert [o["image"] for o in objs] == ["a.png", "b.png", "bad.jpg", "clip.mp4"]
    assert objs[1]["faces"] == [] and objs[2]["error"] == "boom" and objs[3]["frame"] == 7
    assert objs == [r.to_dict() for r in results]
    assert render(results, "jsonl", N) == text


# --- CSV -----------------------------------------------------------------------------------------------------


def test_csv_round_trip_exact_to_three_decimals():
    faces = [make_face(0, 0.95, eighths=True), make_face(1, 0.5, (1.5, 2.25, 50.125, 60.0), eighths=True)]
    text = to_csv([ImageResult("dir/a.png", 200, 160, faces)], N)
    assert text.splitlines()[0].split(",") == csv_header(N)
    rows = read_csv(text)
    assert len(rows) == 2
    for k, (row, f) in enumerate(zip(rows, faces)):
        assert row["image"] == "dir/a.png" and row["face"] == k
        assert row["score"] == round(f.score, 4)
        assert row["box"] == list(f.box)
        np.testing.assert_array_equal(row["landmarks"], f.landmarks)  # multiples of 1/8: exact in 3 decimals


def test_csv_rounds_to_three_decimals():
    f = make_face(3)
    row = read_csv(to_csv([ImageResult("a.png", 200, 160, [f])], N))[0]
    got = np.asarray(row["landmarks"])
    assert got.shape == (N, 2)
    np.testing.assert_allclose(got, f.landmarks, atol=5e-4 + 1e-9)
    np.testing.assert_array_equal(got * 1000, np.round(got * 1000))
    raw = next(csv.DictReader(io.StringIO(to_csv([ImageResult("a.png", 200, 160, [f])], N))))
    assert all(len(raw[f"x_{i}"].split(".")[1]) == 3 for i in range(N))
    assert raw["score"] == "0.9000"


def test_csv_faceless_image_and_errors():
    results = [ImageResult("a.png", 200, 160, [make_face()]), ImageResult("empty.png", 40, 30, []),
               ImageResult("bad.jpg", error="cannot decode"), ImageResult("c.png", 200, 160, [make_face(2)])]
    text = to_csv(results, N)
    raw = list(csv.reader(io.StringIO(text)))
    assert [r[0] for r in raw[1:]] == ["a.png", "empty.png", "c.png"]  # the error is left out
    none_row = raw[2]
    assert none_row[1:4] == ["40", "30", "none"] and len(none_row) == 12 + 3 * N and all(v == "" for v in none_row[4:])
    rows = read_csv(text)
    assert rows[1] == {"image": "empty.png", "width": 40, "height": 30, "face": None, "time_ms": None}
    assert rows[0]["face"] == 0 and rows[2]["face"] == 0
    assert "bad.jpg" not in text


# --- video frames --------------------------------------------------------------------------------------------


def test_video_frame_labels_and_names():
    r = ImageResult("videos/video.mp4", 64, 48, [make_face(), make_face(1)], frame=3)
    assert r.label == "videos/video.mp4#3"
    assert ImageResult("a.png").label == "a.png"
    rows = read_csv(to_csv([r], N))
    assert [row["image"] for row in rows] == ["videos/video.mp4#3"] * 2
    d = json.loads(to_json([r], single=True))
    assert d["image"] == "videos/video.mp4" and d["frame"] == 3
    assert pts_name(r, 1) == "video_f000003_1.pts"
    assert pts_name(ImageResult("x/photo.final.jpg"), 0) == "photo.final_0.pts"
    frame0 = ImageResult("v.avi", 4, 4, frame=0, error="bad frame")
    assert json.loads(to_jsonl([frame0])) == {"image": "v.avi", "frame": 0, "error": "bad frame"}


# --- .pts ----------------------------------------------------------------------------------------------------


def test_pts_files_round_trip(tmp_path):
    results = [ImageResult("imgs/a.png", 200, 160, [make_face(0), make_face(1)]),
               ImageResult("b.png", 40, 30, []),
               ImageResult("bad.png", error="x"),
               ImageResult("clip.mp4", 64, 48, [make_face(2)], frame=12)]
    written = write_pts_files(results, tmp_path / "pts")
    assert [p.name for p in written] == ["a_0.pts", "a_1.pts", "clip_f000012_0.pts"]
    assert sorted(p.name for p in (tmp_path / "pts").iterdir()) == ["a_0.pts", "a_1.pts", "clip_f000012_0.pts"]
    for path, face in zip(written, [results[0].faces[0], results[0].faces[1], results[3].faces[0]]):
        back = read_pts(path)
        assert back.shape == (N, 2)
        np.testing.assert_array_equal(back, face.landmarks)


def test_pts_files_are_one_based(tmp_path):
    f = make_face()
    f.landmarks = np.array([[0.0, 0.0], [10.5, 3.25]])
    [path] = write_pts_files([ImageResult("a.png", 20, 20, [f])], tmp_path)
    text = path.read_text()
    assert text.startswith("version: 1\nn_points: 2\n{\n")
    body = text.split("{\n")[1].split("\n}")[0].splitlines()
    assert [tuple(map(float, line.split())) for line in body] == [(1.0, 1.0), (11.5, 4.25)]
    np.testing.assert_array_equal(read_pts(path), f.landmarks)


def test_pts_round_trip_exact_for_any_float(tmp_path):
    f = make_face()
    f.landmarks = np.array([[0.1, 0.3], [12.345, 0.7], [63.3, 127.9]])
    [path] = write_pts_files([ImageResult("a.png", 200, 200, [f])], tmp_path)
    np.testing.assert_array_equal(read_pts(path), f.landmarks)


def test_write_results_pts_needs_a_folder(tmp_path):
    r = [ImageResult("a.png", 200, 160, [make_face()])]
    with pytest.raises(ValueError, match="--out"):
        write_results(r, "pts", None, N)
    assert write_results(r, "pts", tmp_path / "out", N) is None
    assert (tmp_path / "out" / "a_0.pts").is_file()


def test_write_results_text_to_stdout_or_file(tmp_path):
    r = [ImageResult("a.png", 200, 160, [make_face()])]
    text = write_results(r, "csv", None, N)
    assert text == to_csv(r, N)
    assert write_results(r, "json", tmp_path / "sub" / "o.json", N, single=True) is None
    assert json.loads((tmp_path / "sub" / "o.json").read_text())["image"] == "a.png"
    with pytest.raises(ValueError):
        render(r, "pts", N)
    with pytest.raises(ValueError):
        render(r, "xml", N)


# --- atomic writes -------------------------------------------------------------------------------------------


def test_atomic_write_str_and_bytes_leave_no_temp_files(tmp_path):
    target = tmp_path / "deep" / "er" / "out.txt"
    atomic_write(target, "héllo\n")
    assert target.read_bytes() == "héllo\n".encode()
    atomic_write(target, b"\x00\x01binary")
    assert target.read_bytes() == b"\x00\x01binary"
    assert os.listdir(target.parent) == ["out.txt"]


def test_atomic_write_failure_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "out.json"
    target.write_text("old contents")

    def broken_replace(src, dst):
        raise OSError(errno.EIO, "disk on fire", str(src))

    monkeypatch.setattr(fileio.os, "replace", broken_replace)
    with pytest.raises(fileio.OutputError) as e:
        atomic_write(target, "new contents")
    assert str(e.value) == f"cannot write {target}: input/output error"  # no temp name, no errno number
    assert target.read_text() == "old contents"
    assert os.listdir(tmp_path) == ["out.json"]  # the temporary file was removed


def test_atomic_write_interrupted_while_writing(tmp_path, monkeypatch):
    """An exception while the data is being written (here: encoding fails) also leaves nothing behind."""
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(UnicodeEncodeError):
        atomic_write(target, "\udcff")  # a lone surrogate cannot be encoded
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["out.txt"]


def test_atomic_write_respects_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "out.csv", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.csv").stat().st_mode) == 0o644


def test_atomic_write_from_many_threads_keeps_the_umask(tmp_path, monkeypatch):
    """Workers write overlays at once: reading the umask (which sets it) must not leak a 0 umask into the
    process or into another thread's file. A slow os.umask widens the window between set and restore."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    real = os.umask
    old = real(0o027)

    def slow_umask(mask: int) -> int:
        previous = real(mask)
        time.sleep(0.001)
        return previous

    monkeypatch.setattr(os, "umask", slow_umask)
    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda k: atomic_write(tmp_path / f"f{k}.txt", "x"), range(200)))
        assert real(0o027) == 0o027
    finally:
        real(old)
    assert {stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()} == {0o640}


# --- overlays and images -------------------------------------------------------------------------------------


def test_draw_overlay_marks_points_and_box_only():
    img = np.zeros((160, 200, 3), np.uint8)
    lm = np.full((N, 2), [100.0, 80.0])
    lm[0] = [50.0, 60.0]  # jaw: in no region, drawn white
    lm[36] = [150.0, 100.0]  # right eye: region 0's colour
    face = Face(np.array([20.0, 20.0, 180.0, 140.0]), 1.0, lm, np.ones(N))
    out = draw_overlay(img, [face], IBUG68)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert not img.any()  # the input is not drawn on
    assert tuple(out[60, 50]) == (255, 255, 255)
    assert tuple(out[100, 150]) == REGION_COLOURS[0]
    assert tuple(out[80, 100]) == REGION_COLOURS[3]  # mouth (point 67) drawn last at the shared position
    assert out[20, 100].min() > 150 and out[140, 60].min() > 150  # top and bottom edges of the box
    assert out[80, 20].min() > 150 and out[80, 180].min() > 150  # left and right edges
    changed = out.any(axis=2)
    assert not changed[:15].any() and not changed[146:].any()  # far outside the box
    assert not changed[:, :15].any() and not changed[:, 186:].any()
    assert not changed[30:50, 30:90].any() and not changed[110:130, 60:140].any()  # inside, far from points


def test_draw_overlay_without_faces_is_a_copy():
    img = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    out = draw_overlay(img, [], IBUG68)
    np.testing.assert_array_equal(out, img)
    assert out is not img


def test_write_image_read_image_png_round_trip(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (21, 33, 3), dtype=np.uint8)
    rgb[0, 0] = (255, 0, 0)
    write_image(tmp_path / "o" / "x.png", rgb)
    back = read_image(tmp_path / "o" / "x.png")
    np.testing.assert_array_equal(back, rgb)
    assert os.listdir(tmp_path / "o") == ["x.png"]


def test_write_image_jpeg(tmp_path):
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[:] = (200, 30, 30)
    write_image(tmp_path / "x.jpg", rgb)
    back = read_image(tmp_path / "x.jpg")
    assert np.abs(back.astype(int) - rgb).max() <= 10


def test_write_image_unknown_extension_is_a_value_error(tmp_path):
    with pytest.raises(ValueError):
        write_image(tmp_path / "x.xyz", np.zeros((4, 4, 3), np.uint8))


def test_overlay_path(tmp_path):
    r = ImageResult("in/photo.jpg", 10, 10)
    assert overlay_path(tmp_path / "o.png", r, many=False) == tmp_path / "o.png"
    assert overlay_path(tmp_path / "o.png", r, many=True) == tmp_path / "o.png" / "photo.fflm.jpg"
    assert overlay_path(tmp_path / "dir", r, many=False) == tmp_path / "dir" / "photo.fflm.jpg"
    folder = tmp_path / "looks.png"
    folder.mkdir()
    assert overlay_path(folder, r, many=False) == folder / "photo.fflm.jpg"
    frame = ImageResult("clip.mp4", 10, 10, frame=42)
    assert overlay_path(tmp_path, frame, many=True) == tmp_path / "clip_f000042.fflm.jpg"
