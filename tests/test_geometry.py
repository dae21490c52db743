"""fflm.geometry: box ↔ crop maps (0-based pixel centres), box helpers, IoU and affine maps."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fflm.geometry import (
    affine_points,
    best_overlap,
    box_iou,
    box_to_local,
    clip_box,
    image_box,
    local_to_box,
    points_box,
    square_box,
)

FAST = settings(max_examples=40, deadline=None)


# ---------------------------------------------------------------- hand-computed values


def test_whole_image_box_is_identity():
    """The box covering a W×H image, resampled to W×H, maps every point to itself (both ways)."""
    w, h = 7, 5
    box = np.array([-0.5, -0.5, w - 0.5, h - 0.5])
    pts = np.array([[0.0, 0.0], [6.0, 4.0], [3.25, 1.75], [-0.5, 4.5]])
    np.testing.assert_allclose(box_to_local(pts, box, (w, h)), pts, atol=1e-12)
    np.testing.assert_allclose(local_to_box(pts, box, (w, h)), pts, atol=1e-12)
    np.testing.assert_array_equal(image_box(w, h), box)


def test_box_to_local_hand_values():
    """Box [9.5, 9.5, 19.5, 19.5] → 5×5 crop: 2 image px per crop px, box edge 9.5 → crop edge -0.5.

    x_crop = (x - 9.5)·5/10 - 0.5, so 10 → -0.25, 14.5 (box centre) → 2.0 (crop centre), 19.5 → 4.5.
    """
    box = np.array([9.5, 9.5, 19.5, 19.5])
    pts = np.array([[10.0, 10.0], [14.5, 14.5], [9.5, 19.5], [11.5, 12.5]])
    want = np.array([[-0.25, -0.25], [2.0, 2.0], [-0.5, 4.5], [0.5, 1.0]])
    np.testing.assert_allclose(box_to_local(pts, box, 5), want, atol=1e-12)


def test_local_to_box_hand_values():
    """Crop pixel centre u of the 5×5 crop lies at 9.5 + (u + 0.5)·2 in the image."""
    box = np.array([9.5, 9.5, 19.5, 19.5])
    crop = np.array([[0.0, 0.0], [4.0, 2.0], [-0.5, 4.5]])
    want = np.array([[10.5, 10.5], [18.5, 14.5], [9.5, 19.5]])
    np.testing.assert_allclose(local_to_box(crop, box, 5), want, atol=1e-12)


def test_non_square_size_and_box():
    """Box [0, 0, 8, 4] → (w, h) = (4, 8): x is halved, y doubled; (2, 1) → (2·0.5 - 0.5, 1·2 - 0.5)."""
    box = np.array([0.0, 0.0, 8.0, 4.0])
    pts = np.array([[2.0, 1.0]])
    np.testing.assert_allclose(box_to_local(pts, box, (4, 8)), [[0.5, 1.5]], atol=1e-12)
    np.testing.assert_allclose(local_to_box(np.array([[0.5, 1.5]]), box, (4, 8)), pts, atol=1e-12)


def test_torch_hand_values_and_kind():
    box = torch.tensor([9.5, 9.5, 19.5, 19.5], dtype=torch.float64)
    pts = torch.tensor([[10.0, 10.0], [14.5, 14.5]], dtype=torch.float64)
    out = box_to_local(pts, box, 5)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    torch.testing.assert_close(out, torch.tensor([[-0.25, -0.25], [2.0, 2.0]], dtype=torch.float64))
    back = local_to_box(out, box, 5)
    assert isinstance(back, torch.Tensor)
    torch.testing.assert_close(back, pts)


def test_batched_boxes_apply_per_item():
    """Boxes [B, 4] and points [B, N, 2]: box b maps only points b."""
    boxes = np.array([[-0.5, -0.5, 9.5, 9.5], [9.5, 9.5, 19.5, 19.5]])
    pts = np.array([[[0.0, 0.0], [9.0, 4.5]], [[10.0, 10.0], [14.5, 14.5]]])
    out = box_to_local(pts, boxes, 5)
    want = np.array([[[-0.25, -0.25], [4.25, 2.0]], [[-0.25, -0.25], [2.0, 2.0]]])
    assert out.shape == (2, 2, 2)
    np.testing.assert_allclose(out, want, atol=1e-12)


def test_box_to_local_is_differentiable():
    """Gradients reach the box (the regional stage's boxes come from predicted points)."""
    box = torch.tensor([9.5, 9.5, 19.5, 19.5], dtype=torch.float64, requires_grad=True)
    pts = torch.tensor([[10.0, 12.0]], dtype=torch.float64, requires_grad=True)
    out = local_to_box(pts, box, 5)
    out.sum().backward()
    # x = x0 + (u + .5)(x1 - x0)/5: dx/dx0 = 1 - 10.5/5, dx/dx1 = 10.5/5; likewise y with 12.5
    torch.testing.assert_close(box.grad, torch.tensor([1 - 2.1, 1 - 2.5, 2.1, 2.5], dtype=torch.float64))
    torch.testing.assert_close(pts.grad, torch.full((1, 2), 2.0, dtype=torch.float64))


# ---------------------------------------------------------------- round trips (hypothesis)


@st.composite
def boxes_and_points(draw, batch=(3,), n=4):
    """Random boxes [*batch, 4] (sides 1..2000) and points [*batch, n, 2] around them."""
    shape = tuple(batch)
    x0 = draw(arrays(np.float64, shape, elements=st.floats(-1000, 1000)))
    y0 = draw(arrays(np.float64, shape, elements=st.floats(-1000, 1000)))
    w = draw(arrays(np.float64, shape, elements=st.floats(1, 2000)))
    h = draw(arrays(np.float64, shape, elements=st.floats(1, 2000)))
    boxes = np.stack([x0, y0, x0 + w, y0 + h], axis=-1)
    rel = draw(arrays(np.float64, shape + (n, 2), elements=st.floats(-0.5, 1.5)))
    pts = boxes[..., None, :2] + rel * (boxes[..., None, 2:] - boxes[..., None, :2])
    return boxes, pts


@FAST
@given(data=boxes_and_points(), size=st.sampled_from([1, 5, 64, 256, (32, 48)]))
def test_round_trip_numpy(data, size):
    boxes, pts = data
    local = box_to_local(pts, boxes, size)
    assert local.shape == pts.shape
    np.testing.assert_allclose(local_to_box(local, boxes, size), pts, rtol=0, atol=1e-8)


@FAST
@given(data=boxes_and_points(batch=(2, 3), n=5), size=st.sampled_from([7, 128]))
def test_round_trip_torch_batched(data, size):
    boxes, pts = (torch.from_numpy(a) for a in data)
    local = box_to_local(pts, boxes, size)
    assert isinstance(local, torch.Tensor) and local.shape == (2, 3, 5, 2)
    torch.testing.assert_close(local_to_box(local, boxes, size), pts, rtol=0, atol=1e-8)
    # same numbers as the numpy path
    np.testing.assert_allclose(local.numpy(), box_to_local(data[1], data[0], size), atol=1e-9)


@FAST
@given(
    frame_xy=st.tuples(st.floats(-500, 3000), st.floats(-500, 2000)),
    frame_side=st.floats(100, 5000),
    region=st.tuples(st.floats(0, 200), st.floats(0, 200), st.floats(4, 60)),
    rel=arrays(np.float64, (6, 2), elements=st.floats(0, 1)),
    torch_input=st.booleans(),
)
def test_full_res_proxy_crop_chain(frame_xy, frame_side, region, rel, torch_input):
    """full-res → proxy (frame box, P=256) → crop (region box given in proxy px, S=128) equals full-res →
    crop directly with the region box mapped to full-res; and the chain inverts back to full-res."""
    P, S = 256, 128
    fx, fy = frame_xy
    frame = np.array([fx, fy, fx + frame_side, fy + frame_side])
    rx, ry, rs = region
    region_proxy = np.array([rx, ry, rx + rs, ry + rs])  # in proxy pixels
    pts = frame[:2] + rel * frame_side
    # box corners are points of the continuous frame, so they map like points
    region_full = local_to_box(region_proxy.reshape(2, 2), frame, P).reshape(4)
    if torch_input:
        frame, region_proxy, region_full, pts = (torch.from_numpy(a) for a in (frame, region_proxy, region_full, pts))
    proxy_pts = box_to_local(pts, frame, P)
    crop_pts = box_to_local(proxy_pts, region_proxy, S)
    direct = box_to_local(pts, region_full, S)
    np.testing.assert_allclose(np.asarray(crop_pts), np.asarray(direct), rtol=1e-9, atol=1e-6)
    back = local_to_box(local_to_box(crop_pts, region_proxy, S), frame, P)
    np.testing.assert_allclose(np.asarray(back), np.asarray(pts), rtol=1e-10, atol=1e-6)


def test_proxy_pixel_is_block_of_full_res_pixels():
    """A 1024-px image seen as a 256 proxy: proxy pixel 0 is the mean of full-res pixels 0..3 (centre 1.5)."""
    frame = image_box(1024, 1024)
    np.testing.assert_allclose(local_to_box(np.array([[0.0, 255.0]]), frame, 256), [[1.5, 1021.5]])
    np.testing.assert_allclose(box_to_local(np.array([[1.5, 1021.5]]), frame, 256), [[0.0, 255.0]])


# ---------------------------------------------------------------- boxes


def test_square_box_hand_values():
    box = np.array([0.0, 0.0, 4.0, 2.0])  # centre (2, 1), larger side 4
    np.testing.assert_allclose(square_box(box), [0.0, -1.0, 4.0, 3.0])
    np.testing.assert_allclose(square_box(box, 1.5), [-1.0, -2.0, 5.0, 4.0])
    tall = np.array([10.0, 0.0, 12.0, 8.0])  # centre (11, 4), side 8
    np.testing.assert_allclose(square_box(tall, 0.5), [9.0, 2.0, 13.0, 6.0])


def test_square_box_batched_and_torch():
    boxes = np.array([[[0.0, 0.0, 4.0, 2.0], [10.0, 0.0, 12.0, 8.0]]])  # [1, 2, 4]
    want = np.array([[[0.0, -1.0, 4.0, 3.0], [7.0, 0.0, 15.0, 8.0]]])
    np.testing.assert_allclose(square_box(boxes), want)
    out = square_box(torch.from_numpy(boxes))
    assert isinstance(out, torch.Tensor)
    np.testing.assert_allclose(out.numpy(), want)


@FAST
@given(data=boxes_and_points(batch=(2,), n=1), scale=st.floats(0.5, 3))
def test_square_box_properties(data, scale):
    boxes, _ = data
    sq = square_box(boxes, scale)
    w, h = sq[..., 2] - sq[..., 0], sq[..., 3] - sq[..., 1]
    np.testing.assert_allclose(w, h, rtol=1e-9)
    np.testing.assert_allclose(w, scale * np.maximum(boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]), rtol=1e-9)
    np.testing.assert_allclose(sq[..., :2] + sq[..., 2:], boxes[..., :2] + boxes[..., 2:], rtol=1e-9, atol=1e-9)


def test_points_box():
    pts = np.array([[1.0, 5.0], [3.0, 2.0], [-1.0, 4.0]])
    np.testing.assert_array_equal(points_box(pts), [-1.0, 2.0, 3.0, 5.0])
    batch = np.stack([pts, pts * 2])
    np.testing.assert_array_equal(points_box(batch), [[-1.0, 2.0, 3.0, 5.0], [-2.0, 4.0, 6.0, 10.0]])


def test_clip_box():
    box = np.array([-3.0, 2.0, 12.0, 9.0])
    out = clip_box(box, 10, 8)
    np.testing.assert_array_equal(out, [-0.5, 2.0, 9.5, 7.5])
    np.testing.assert_array_equal(box, [-3.0, 2.0, 12.0, 9.0])  # input untouched
    inside = np.array([[1.0, 1.0, 5.0, 5.0], [20.0, -9.0, 30.0, -1.0]])
    np.testing.assert_array_equal(clip_box(inside, 10, 8), [[1.0, 1.0, 5.0, 5.0], [9.5, -0.5, 9.5, -0.5]])


def test_box_iou_hand_values():
    a = np.array([[0, 0, 2, 2], [0, 0, 4, 4]], dtype=float)
    b = np.array([[1, 1, 3, 3], [0, 0, 2, 2], [2, 0, 4, 2], [5, 5, 6, 6]], dtype=float)
    iou = box_iou(a, b)
    assert iou.shape == (2, 4)
    want = np.array([
        [1 / 7, 1.0, 0.0, 0.0],  # overlap 1 of union 4 + 4 - 1; identical; touching edge; disjoint
        [4 / 16, 4 / 16, 4 / 16, 0.0],  # contained boxes: inter = area of the small one
    ])
    np.testing.assert_allclose(iou, want, atol=1e-12)


def test_best_overlap_picks_the_most_overlapping_box_above_the_bar():
    truth = np.array([0.0, 0.0, 10.0, 10.0])
    boxes = np.array([[20.0, 20.0, 30.0, 30.0], [5.0, 0.0, 15.0, 10.0], [0.0, 0.0, 10.0, 8.0]])  # IoU 0, 1/3, 0.8
    assert best_overlap(boxes, truth) == 2
    assert best_overlap(boxes[:2], truth) == 1
    assert best_overlap(boxes[:2], truth, min_iou=0.4) is None
    assert best_overlap(boxes[:1], truth) is None  # no overlap at all
    assert best_overlap(boxes[:1], truth, min_iou=-1.0) == 0  # any box
    assert best_overlap(np.zeros((0, 4)), truth) is None


def test_box_iou_symmetric_and_single_boxes():
    a, b = [0.0, 0.0, 3.0, 1.0], [1.0, 0.0, 4.0, 1.0]  # inter 2, union 4
    np.testing.assert_allclose(box_iou(a, b), [[0.5]])
    np.testing.assert_allclose(box_iou(b, a), [[0.5]])
    assert box_iou(np.zeros((0, 4)), np.array([a])).shape == (0, 1)


# ---------------------------------------------------------------- affine


def test_affine_points_hand_values():
    pts = np.array([[1.0, 0.0], [2.0, 3.0]])
    shift = np.array([[1.0, 0.0, 3.0], [0.0, 1.0, -2.0]])
    np.testing.assert_allclose(affine_points(pts, shift), [[4.0, -2.0], [5.0, 1.0]])
    rot90 = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0]])  # (x, y) → (-y, x)
    np.testing.assert_allclose(affine_points(pts, rot90), [[0.0, 1.0], [-3.0, 2.0]])
    batch = np.stack([pts, pts + 1])  # [2, 2, 2]
    assert affine_points(batch, shift).shape == (2, 2, 2)


@pytest.mark.parametrize("angle,scale", [(90, 1.0), (-90, 1.0), (180, 1.0), (0, 2.0)])
def test_affine_points_matches_warp_affine(angle, scale):
    """A single bright pixel warped by cv2.warpAffine lands where affine_points sends its centre."""
    img = np.zeros((21, 21), np.uint8)
    src = (8, 9)  # lands on integer pixel centres for all these maps
    img[src[1], src[0]] = 255
    m = cv2.getRotationMatrix2D((10.0, 10.0), angle, scale)
    out = cv2.warpAffine(img, m, (21, 21), flags=cv2.INTER_LINEAR)
    ys, xs = np.nonzero(out == out.max())
    assert len(xs) == 1  # bilinear keeps a unique maximum at the image of an integer centre
    np.testing.assert_allclose(affine_points(np.array([src], float), m)[0], [xs[0], ys[0]], atol=1e-9)


def test_face_size_is_the_root_of_the_box_area():
    from fflm.geometry import face_size

    assert face_size(np.array([10.0, 20.0, 19.0, 36.0])) == pytest.approx(12.0)  # 9 × 16
    np.testing.assert_allclose(face_size(np.array([[0, 0, 4, 9], [5, 5, 3, 9], [0, 0, 2, 2]], float)), [6.0, 0.0, 2.0])
    assert face_size(np.zeros((0, 4))).shape == (0,)


def test_cell_centres_are_the_centres_of_the_pixels_each_cell_covers():
    """Cell j of stride s covers pixels j·s … j·s + s - 1: its centre is their mean, as in a cv2.resize by 1/s."""
    from fflm.geometry import cell_centres

    for s in (1, 2, 4, 8):
        np.testing.assert_allclose(cell_centres(5, s), [np.mean(range(j * s, j * s + s)) for j in range(5)])
    assert cell_centres(3, 2, dtype=torch.float64).dtype == torch.float64
