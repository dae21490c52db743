"""fflm.scheme: the built-in 68-point scheme, flip permutations, validation and (de)serialisation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fflm.scheme import IBUG68, LandmarkScheme, Region, load_scheme


def small_scheme(**overrides) -> LandmarkScheme:
    kw = dict(
        name="small",
        num_points=6,
        regions=(Region("a", (0, 1)), Region("b", (3, 4))),
        flip_pairs=((0, 3), (1, 4)),
        norm_points=(0, 3),
        groups={"left": (0, 1, 2), "right": (3, 4, 5)},
    )
    kw.update(overrides)
    return LandmarkScheme(**kw)


# ---------------------------------------------------------------- the 68-point scheme


def test_ibug68_regions():
    assert IBUG68.num_points == 68
    assert [r.name for r in IBUG68.regions] == ["right_eye", "left_eye", "nose", "mouth"]
    assert [len(r.indices) for r in IBUG68.regions] == [11, 11, 9, 20]  # brow 5 + eye 6, nose 9, mouth 20
    refined = IBUG68.refined_indices
    assert len(refined) == 51 and len(set(refined)) == 51
    assert sorted(set(range(68)) - set(refined)) == list(range(17))  # the jaw keeps its global estimate
    assert set(IBUG68.regions[0].indices) == set(range(17, 22)) | set(range(36, 42))
    assert set(IBUG68.regions[3].indices) == set(range(48, 68))
    assert IBUG68.norm_points == (36, 45)


def test_ibug68_flip_permutation():
    perm = IBUG68.flip_permutation()
    assert sorted(perm) == list(range(68))
    assert all(perm[perm[i]] == i for i in range(68))  # an involution
    for a, b in [(36, 45), (0, 16), (48, 54), (17, 26), (39, 42), (31, 35), (60, 64), (65, 67)]:
        assert perm[a] == b and perm[b] == a
    fixed = [i for i in range(68) if perm[i] == i]
    assert fixed == [8, 27, 28, 29, 30, 33, 51, 57, 62, 66]  # chin, nose bridge and tip, mouth midline


def symmetric_shape(scheme: LandmarkScheme, axis: float, seed: int = 0) -> np.ndarray:
    """Random points where each flip pair mirrors across x = axis and unpaired points lie on it."""
    rng = np.random.default_rng(seed)
    pts = np.empty((scheme.num_points, 2))
    pts[:, 0] = axis
    pts[:, 1] = rng.uniform(0, 100, scheme.num_points)
    for a, b in scheme.flip_pairs:
        dx = rng.uniform(1, 40)
        pts[a, 0], pts[b, 0] = axis - dx, axis + dx
        pts[b, 1] = pts[a, 1]
    return pts


def mirror(pts: np.ndarray, width: int) -> np.ndarray:
    """Mirror points of a width-px image: pixel centre x → width - 1 - x."""
    out = pts.copy()
    out[:, 0] = width - 1 - out[:, 0]
    return out


@pytest.mark.parametrize("scheme", [IBUG68, small_scheme()], ids=["ibug68", "small"])
def test_mirroring_a_symmetric_shape_and_permuting_gives_it_back(scheme):
    width = 121  # mirror axis at (width - 1)/2 = 60
    pts = symmetric_shape(scheme, 60.0)
    flipped = mirror(pts, width)[scheme.flip_permutation()]
    np.testing.assert_allclose(flipped, pts, atol=1e-12)


def test_flip_keeps_semantics_on_an_asymmetric_shape():
    """After flipping the image and permuting, point 36 (subject's right outer eye corner) is again the
    leftmost eye point, and flipping twice is the identity."""
    rng = np.random.default_rng(1)
    pts = symmetric_shape(IBUG68, 60.0)
    right_eye = [20.0, 26.0, 34.0, 40.0, 34.0, 26.0]  # 36 outer corner ... 39 inner corner, image left
    pts[36:42, 0] = right_eye
    pts[42:48, 0] = [120 - right_eye[i] for i in (3, 2, 1, 0, 5, 4)]  # partners of 42..47: 39, 38, 37, 36, 41, 40
    pts += rng.uniform(-0.5, 0.5, (68, 2))  # roughly symmetric, not exactly
    perm = IBUG68.flip_permutation()
    flipped = mirror(pts, 121)[perm]
    eyes = flipped[36:48, 0]
    assert flipped[36, 0] == eyes.min() and flipped[45, 0] == eyes.max()
    np.testing.assert_allclose(mirror(flipped, 121)[perm], pts, atol=1e-12)


def test_small_scheme_permutation():
    assert small_scheme().flip_permutation() == [3, 4, 2, 0, 1, 5]


def test_region_mirrors():
    """Region a = (0, 1) mirrors to b = (3, 4) point for point, and back; the 68-point eyes swap (the right
    brow's outer end 17 is the left brow's outer end 26, slot 4 of the left eye's list), nose and mouth stay."""
    assert small_scheme().region_mirrors() == [(1, [0, 1]), (0, [0, 1])]
    assert small_scheme(regions=(Region("a", (0, 1)), Region("b", (4, 3)))).region_mirrors() == [(1, [1, 0]), (0, [1, 0])]
    assert small_scheme(regions=(Region("a", (0, 1)),)).region_mirrors() is None  # no region is a's mirror
    mirrors = IBUG68.region_mirrors()
    assert [j for j, _ in mirrors] == [1, 0, 2, 3]
    assert mirrors[0][1][0] == 4 and IBUG68.regions[1].indices[4] == 26
    perm = IBUG68.flip_permutation()
    for region, (j, order) in zip(IBUG68.regions, mirrors):
        assert [IBUG68.regions[j].indices[o] for o in order] == [perm[i] for i in region.indices]


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize("overrides,message", [
    (dict(regions=(Region("a", (0, 6)),)), "outside"),
    (dict(regions=(Region("a", (-1,)),)), "outside"),
    (dict(regions=(Region("a", (0, 1)), Region("b", (1, 2)))), "more than one region"),
    (dict(regions=(Region("a", (0, 0)),)), "more than one region"),
    (dict(regions=(Region("a", ()),)), "no points"),
    (dict(flip_pairs=((0, 6),)), "bad flip pair"),
    (dict(flip_pairs=((2, 2),)), "bad flip pair"),
    (dict(flip_pairs=((0, 3), (3, 4))), "bad flip pair"),
    (dict(flip_pairs=((0, 3), (0, 4))), "bad flip pair"),
    (dict(norm_points=(1, 1)), "normalisation"),
    (dict(norm_points=(0, 6)), "normalisation"),
    (dict(groups={"g": (0, 9)}), "group"),
    (dict(num_points=1, regions=(), flip_pairs=(), norm_points=(0, 0), groups={}), "at least 2"),
])
def test_validation_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        small_scheme(**overrides)


def test_scheme_without_regions_or_flips_is_valid():
    s = LandmarkScheme("bare", 3, (), (), (0, 2))
    assert s.refined_indices == [] and s.flip_permutation() == [0, 1, 2]


# ---------------------------------------------------------------- serialisation


@pytest.mark.parametrize("scheme", [IBUG68, small_scheme()], ids=["ibug68", "small"])
def test_dict_round_trip(scheme):
    d = scheme.to_dict()
    assert json.loads(json.dumps(d)) == d  # plain JSON types
    assert LandmarkScheme.from_dict(d) == scheme
    assert LandmarkScheme.from_dict(json.loads(json.dumps(d))) == scheme


def test_to_dict_format():
    d = small_scheme().to_dict()
    assert d == {
        "name": "small",
        "num_points": 6,
        "regions": [{"name": "a", "indices": [0, 1]}, {"name": "b", "indices": [3, 4]}],
        "flip_pairs": [[0, 3], [1, 4]],
        "norm_points": [0, 3],
        "groups": {"left": [0, 1, 2], "right": [3, 4, 5]},
    }


def test_from_dict_defaults():
    s = LandmarkScheme.from_dict({"num_points": 4, "norm_points": [0, 3]})
    assert s.name == "custom" and s.regions == () and s.flip_pairs == () and s.groups == {}


@pytest.mark.parametrize("d", [{}, {"num_points": 4}, {"num_points": 4, "norm_points": [0]},
                               {"num_points": 4, "norm_points": [0, 3], "regions": [{"indices": [0]}]},
                               {"num_points": "four", "norm_points": [0, 3]}])
def test_from_dict_malformed(d):
    with pytest.raises(ValueError):
        LandmarkScheme.from_dict(d)


def test_json_file_round_trip(tmp_path):
    path = tmp_path / "ten.json"
    scheme = small_scheme(name="from-file")
    path.write_text(json.dumps(scheme.to_dict()))
    assert load_scheme(path) == scheme
    assert load_scheme(str(path)) == scheme


def test_load_builtin():
    assert load_scheme("68") is IBUG68
    assert load_scheme("ibug68") is IBUG68


def test_load_errors(tmp_path):
    with pytest.raises(ValueError, match="no built-in scheme or file"):
        load_scheme(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read"):
        load_scheme(bad)
    invalid = tmp_path / "invalid.json"
    invalid.write_text(json.dumps({"num_points": 3, "norm_points": [0, 5]}))
    with pytest.raises(ValueError, match="normalisation"):
        load_scheme(invalid)
