"""fflm.pts: the 1-based 300-W .pts format, read as 0-based points."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fflm.pts import AnnotationError, format_pts, parse_pts, read_pts

FAST = settings(max_examples=40, deadline=None)

THREE = """version: 1
n_points: 3
{
1 1
10.5 20.25
640 480
}
"""


def test_reading_subtracts_one():
    pts = parse_pts(THREE)
    assert pts.dtype == np.float64
    np.testing.assert_array_equal(pts, [[0.0, 0.0], [9.5, 19.25], [639.0, 479.0]])


def test_writing_adds_one():
    text = format_pts(np.array([[0.0, 0.0], [9.5, 19.25]]))
    assert text.splitlines() == ["version: 1", "n_points: 2", "{", "1.0 1.0", "10.5 20.25", "}"]


def test_read_file(tmp_path):
    path = tmp_path / "face.pts"
    path.write_text(THREE)
    np.testing.assert_array_equal(read_pts(path), parse_pts(THREE))
    np.testing.assert_array_equal(read_pts(str(path)), parse_pts(THREE))


def test_headerless_and_crlf():
    np.testing.assert_array_equal(parse_pts("1 2\n3 4\n"), [[0.0, 1.0], [2.0, 3.0]])
    np.testing.assert_array_equal(parse_pts("  1 2  \n\n3\t4"), [[0.0, 1.0], [2.0, 3.0]])
    np.testing.assert_array_equal(parse_pts(THREE.replace("\n", "\r\n")), parse_pts(THREE))
    np.testing.assert_array_equal(parse_pts("1e2 -3.5e-1\n"), [[99.0, -1.35]])


# ---------------------------------------------------------------- round trips


@FAST
@given(arrays(np.float64, st.tuples(st.integers(1, 20), st.just(2)),
              elements=st.integers(-2**20, 2**20).map(lambda k: k / 1024)))
def test_round_trip_exact_for_dyadic_values(points):
    """Values with few significant bits (k/1024, as produced by sub-pixel annotation tools) survive the
    +1/-1 of the 1-based format exactly."""
    back = parse_pts(format_pts(points))
    assert back.shape == points.shape
    np.testing.assert_array_equal(back, points)


@FAST
@given(arrays(np.float64, st.tuples(st.integers(1, 20), st.just(2)),
              elements=st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)))
def test_round_trip_close_for_arbitrary_floats(points):
    """Arbitrary floats come back within the rounding of x + 1 (a couple of ulps of |x| + 1)."""
    back = parse_pts(format_pts(points))
    tol = 4 * np.finfo(np.float64).eps * (np.abs(points) + 1)
    assert (np.abs(back - points) <= tol).all()


@pytest.mark.parametrize("x", [0.1, 1e-20, -0.3, 1 / 3, 1e-10])
def test_round_trip_exact_for_arbitrary_floats(x):
    pts = np.array([[x, 2.0]])
    np.testing.assert_array_equal(parse_pts(format_pts(pts)), pts)


def test_file_round_trip(tmp_path):
    pts = np.array([[0.0, 0.0], [1023.5, 767.25], [-3.0, 12.125]])
    path = tmp_path / "out.pts"
    path.write_text(format_pts(pts))
    np.testing.assert_array_equal(read_pts(path), pts)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("line", ["1 2 3", "a b", "7", "1,2", "nan 1", "1 inf"])
def test_malformed_line_names_file_and_line(tmp_path, line):
    path = tmp_path / "broken.pts"
    path.write_text(f"version: 1\nn_points: 3\n{{\n1 1\n{line}\n3 3\n}}\n")
    with pytest.raises(AnnotationError) as e:
        read_pts(path)
    msg = str(e.value)
    assert str(path) in msg and "broken.pts" in msg
    assert f"{path}:5:" in msg  # line 5 of the file


def test_parse_uses_given_source_name():
    with pytest.raises(AnnotationError, match=r"^img_01\.pts:2: "):
        parse_pts("1 1\noops\n", "img_01.pts")


def test_n_points_mismatch():
    with pytest.raises(AnnotationError, match="n_points says 4 but 3 points"):
        parse_pts(THREE.replace("n_points: 3", "n_points: 4"), "x.pts")


def test_bad_n_points_line():
    with pytest.raises(AnnotationError, match=r"x\.pts:2: bad n_points"):
        parse_pts(THREE.replace("n_points: 3", "n_points: three"), "x.pts")


@pytest.mark.parametrize("text", ["", "version: 1\nn_points: 0\n{\n}\n", "\n\n"])
def test_no_points(text):
    with pytest.raises(AnnotationError, match="no points"):
        parse_pts(text, "empty.pts")


def test_unreadable_files(tmp_path):
    with pytest.raises(AnnotationError, match="missing.pts"):
        read_pts(tmp_path / "missing.pts")
    binary = tmp_path / "binary.pts"
    binary.write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(AnnotationError, match="binary.pts"):
        read_pts(binary)


def test_annotation_error_is_a_value_error():
    assert issubclass(AnnotationError, ValueError)
