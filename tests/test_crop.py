"""fflm.crop: crops from the uint8 image through a window, with an integer area pre-reduction for large boxes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fflm.crop
from fflm.crop import _whole_blocks, crop_u8, reduction_factor, window_for
from fflm.model.layers import roi_align

H, W = 600, 800



@pytest.fixture(scope="module")
def smooth_u8() -> np.ndarray:
    """An 800×600 RGB image varying smoothly (so that the area pre-filter changes little)."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    img = np.stack([128 + 100 * np.sin(xx / 37.0) * np.cos(yy / 53.0), 60 + 0.2 * xx, 200 - 0.3 * yy], -1)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def as_float(img: np.ndarray, dtype=torch.float32) -> torch.Tensor:
    return torch.from_numpy(img).permute(2, 0, 1)[None].to(dtype)


def reference(img: np.ndarray, boxes, size: int, ratio: int | None = None) -> torch.Tensor:
    """roi_align over the whole float image (what crop_u8 avoids doing), black beyond its edges."""
    b = torch.tensor(np.asarray(boxes, dtype=np.float64).reshape(-1, 4))
    h, w = img.shape[:2]
    return roi_align(as_float(img, torch.float64), b, None, size, ratio, inside=(-0.5, -0.5, w - 0.5, h - 0.5)).float()


# ---------------------------------------------------------------- no pre-reduction: same as roi_align


@pytest.mark.parametrize("boxes,size", [
    ([[100.3, 50.7, 180.2, 130.6]], 48),  # inside
    ([[10.0, 20.0, 40.0, 50.0], [300.5, 400.25, 322.5, 422.25]], 16),  # two boxes, each from its own window
    ([[-40.2, -30.5, 60.1, 69.8]], 64),  # partly outside, top-left
    ([[750.7, 560.2, 830.9, 640.4]], 48),  # partly outside, bottom-right
    ([[-5.0, 100.0, 805.0, 140.0]], 64),  # wider than the image (short side decides: no reduction)
])
def test_small_boxes_equal_roi_align_on_whole_image(smooth_u8, boxes, size):
    assert all(reduction_factor(np.array([b]), size) == 1 for b in boxes)
    out = crop_u8(smooth_u8, np.array(boxes), size)
    assert out.shape == (len(boxes), 3, size, size) and out.dtype == torch.float32
    for k, b in enumerate(np.array(boxes)):
        ratio = max(1, round(float((b[2:] - b[:2]).max()) / size))  # one bilinear sample up to 1.5 px per crop px
        torch.testing.assert_close(out[k : k + 1], reference(smooth_u8, [b], size, ratio), rtol=0, atol=0.02)


def test_random_image_aligned_box_is_exact_slice(face_image):
    """An aligned 24-px box on a 24-px crop: the crop is the image's pixels (up to float rounding)."""
    a, b, s = 31, 17, 24
    out = crop_u8(face_image, np.array([[a - 0.5, b - 0.5, a + s - 0.5, b + s - 0.5]]), s)
    want = torch.from_numpy(face_image[b:b + s, a:a + s]).permute(2, 0, 1).float()
    torch.testing.assert_close(out[0], want, rtol=0, atol=1e-3)


# ---------------------------------------------------------------- with pre-reduction


def test_reduction_factor_hand_values():
    """f = floor(short side / S): at least one window pixel per crop pixel remains."""
    assert reduction_factor(np.array([[0.0, 0.0, 512.0, 512.0]]), 32) == 16
    assert reduction_factor(np.array([[0.0, 0.0, 512.0, 200.0]]), 32) == 6  # 200/32 = 6.25
    assert reduction_factor(np.array([[0.0, 0.0, 63.0, 63.0]]), 32) == 1
    assert reduction_factor(np.array([[0.0, 0.0, 127.0, 127.0]]), 32) == 3
    two = np.array([[0.0, 0.0, 512.0, 512.0], [0.0, 0.0, 128.0, 128.0]])
    assert reduction_factor(two, 32) == 4  # the smallest box decides


def test_window_for_hand_values():
    assert window_for(np.array([[10.2, 20.7, 30.1, 40.0]]), 100, 100) == (8, 18, 34, 43)
    assert window_for(np.array([[-10.0, -5.0, 120.0, 30.0]]), 100, 50) == (0, 0, 100, 33)


@pytest.mark.parametrize("box,size", [
    pytest.param([20.25, 10.5, 560.25, 550.5], 32, id="inside-f16"),
    pytest.param([250.0, 200.0, 570.0, 520.0], 32, id="inside-f10"),
    pytest.param([-59.5, -43.8, 452.5, 468.2], 32, id="partly-outside-top-left-f16"),
    pytest.param([300.5, 100.5, 812.5, 612.5], 32, id="partly-outside-bottom-right-f16"),
])
def test_large_boxes_close_to_supersampled_roi_align(smooth_u8, box, size):
    """With the area pre-filter the crop differs slightly from a finely sampled roi_align of the whole
    image: less than one grey level on average on a smooth image. Where the image's own edge crosses the
    box, the reduced image blurs that edge over about f pixels, so single pixels may differ more there."""
    assert reduction_factor(np.array([box]), size) > 1
    out = crop_u8(smooth_u8, np.array([box]), size)
    err = (out - reference(smooth_u8, [box], size, ratio=16)).abs()
    assert err.mean() < 1.0, float(err.mean())
    inside = box[0] >= -0.5 and box[1] >= -0.5 and box[2] <= W - 0.5 and box[3] <= H - 0.5
    if inside:
        assert err.max() < 4.0, float(err.max())


@pytest.mark.parametrize("box,size", [
    pytest.param([100.3, 50.7, 180.2, 130.6], 32, id="f1"),
    pytest.param([100.0, 100.0, 356.0, 356.0], 32, id="f4-window-multiple"),
    pytest.param([250.0, 200.0, 570.0, 520.0], 32, id="f5-window-multiple"),
    # f = 16; window 68..389 (321 px) grown forward to 68..404, whole blocks
    pytest.param([100.0, 100.0, 356.0, 356.0], 16, id="f16-grown"),
    # f = 17; x window 58..676 grown to 58..687; y window 0..590 grown to 0..595
    pytest.param([92.18, 6.25, 640.45, 554.52], 32, id="f17-grown"),
    # f = 21; the window reaches the image's right and bottom edges, so it grows backwards (254..800, 201..600)
    pytest.param([300.0, 250.0, 799.5, 599.5], 16, id="f21-grown-backwards"),
])
def test_uniform_image_gives_uniform_crop(box, size):
    """Any box wholly inside a constant image must crop to that constant, pre-reduced or not."""
    img = np.full((H, W, 3), 100, np.uint8)
    out = crop_u8(img, np.array([box]), size)
    torch.testing.assert_close(out, torch.full_like(out, 100.0), rtol=0, atol=1e-3)


@pytest.mark.parametrize("box,size,tol", [
    # odd f: a block mean of f consecutive integers is an integer, so the uint8 reduced window is exact
    pytest.param([40.0, 40.0, 120.0, 120.0], 16, 1e-3, id="f5"),
    pytest.param([33.3, 47.9, 113.3, 127.9], 16, 1e-3, id="f5-fractional"),
    # even f: block means end in .5 and cv2 rounds them back to uint8 (at most half a grey level)
    pytest.param([40.0, 40.0, 136.0, 136.0], 16, 0.5 + 1e-3, id="f6-uint8-rounding"),
])
def test_pre_reduction_keeps_coordinates_exact(box, size, tol):
    """On a linear ramp every average is the ramp's value at the averaged area's centre, so crop pixel u
    must read the ramp at x0 + (u + 0.5)·side/S: a misplaced reduced grid would shift every value."""
    yy, xx = np.mgrid[0:H, 0:W]
    img = np.stack([np.clip(xx - 20, 0, 255), np.clip(yy - 20, 0, 255), np.full_like(xx, 77)], -1).astype(np.uint8)
    b = np.array([box])
    assert reduction_factor(b, size) > 1
    out = crop_u8(img, b, size)[0]
    t = np.arange(size) + 0.5
    cx = box[0] + t * (box[2] - box[0]) / size - 20
    cy = box[1] + t * (box[3] - box[1]) / size - 20
    inner = slice(1, -1)  # edge pixels are the business of test_uniform_image_gives_uniform_crop
    n = size - 2
    np.testing.assert_allclose(out[0, inner, inner].numpy(), np.broadcast_to(cx[inner], (n, n)), rtol=0, atol=tol)
    np.testing.assert_allclose(out[1, inner, inner].numpy(), np.broadcast_to(cy[inner, None], (n, n)), rtol=0, atol=tol)
    np.testing.assert_allclose(out[2].numpy(), 77.0, rtol=0, atol=1e-3)


def test_window_padded_to_whole_blocks_keeps_the_grid():
    """The whole 800×600 image at 32 px: f = 18 and the window is padded by 10 and 12 pixels beyond the image
    (repeating its edge). A constant image must crop to its constant up to its very edges: neither the
    padding nor the half shrunk pixel at each edge (9 image pixels) may blend in black."""
    img = np.full((H, W, 3), 100, np.uint8)
    box = np.array([[-0.5, -0.5, W - 0.5, H - 0.5]])
    assert reduction_factor(box, 32) == 18
    out = crop_u8(img, box, 32)
    torch.testing.assert_close(out, torch.full((1, 3, 32, 32), 100.0), rtol=0, atol=1e-3)


def test_whole_blocks_hand_values():
    assert _whole_blocks(68, 389, 16, 800) == (68, 404, 0)  # forward
    assert _whole_blocks(258, 800, 21, 800) == (254, 800, 0)  # backward, at the far edge
    assert _whole_blocks(0, 800, 18, 800) == (0, 800, 10)  # neither: pad
    assert _whole_blocks(10, 30, 5, 100) == (10, 30, 0)  # already whole


# ---------------------------------------------------------------- only the window becomes a tensor


def test_touches_only_the_window(monkeypatch):
    """A 6000×4000 photo and a 3600-px box: the float copy that is resampled is about 2·S on a side."""
    seen_src, seen_numpy = [], []
    real_resample, real_from_numpy = fflm.crop._resample, torch.from_numpy

    def spy_resample(src, *args):
        seen_src.append((src.shape, src.dtype))
        return real_resample(src, *args)

    def spy_from_numpy(a):
        seen_numpy.append(a.shape)
        return real_from_numpy(a)

    monkeypatch.setattr(fflm.crop, "_resample", spy_resample)
    monkeypatch.setattr(torch, "from_numpy", spy_from_numpy)
    img = np.zeros((4000, 6000, 3), np.uint8)  # untouched pages: cheap
    s = 64
    box = np.array([[1000.0, 200.0, 4600.0, 3800.0]])
    out = crop_u8(img, box, s)
    assert out.shape == (1, 3, s, s)
    assert len(seen_src) == 1
    shape, dtype = seen_src[0]
    assert dtype == np.float32 and shape[2] == 3
    assert max(shape[:2]) <= 4 * s + 8, shape
    assert all(np.prod(a) <= (4 * s + 8) ** 2 * 3 for a in seen_numpy), seen_numpy


def test_window_without_reduction_is_box_plus_margin(monkeypatch, face_image):
    seen = []
    real = fflm.crop._resample
    monkeypatch.setattr(fflm.crop, "_resample", lambda src, *a: (seen.append(src.shape), real(src, *a))[1])
    crop_u8(face_image, np.array([[50.0, 40.0, 90.0, 80.0]]), 32)  # 40 px → f = 1; window 48..93 × 38..83
    assert seen == [(45, 45, 3)]


# ---------------------------------------------------------------- outside


@pytest.mark.parametrize("box", [[-500.0, -500.0, -100.0, -100.0], [900.0, 10.0, 1000.0, 110.0],
                                 [10.0, 700.0, 110.0, 800.0]])
def test_box_wholly_outside_gives_zeros(smooth_u8, box):
    out = crop_u8(smooth_u8, np.array([box]), 16)
    assert out.shape == (1, 3, 16, 16)
    assert torch.equal(out, torch.zeros_like(out))


def test_partly_outside_is_black_outside(smooth_u8):
    """Box [-48.5, 99.5, 47.5, 195.5] → 64 px (1.5 px per crop px): the left 32 columns lie at x < -0.5
    and are black, as in training (column 31's bilinear sub-samples reach within a pixel of the image, so
    it is left out); the right half is the image."""
    box = np.array([[-48.5, 99.5, 47.5, 195.5]])
    assert reduction_factor(box, 64) == 1
    out = crop_u8(smooth_u8, box, 64)
    torch.testing.assert_close(out[..., :31], torch.zeros(1, 3, 64, 31), rtol=0, atol=1e-3)
    assert (out[..., 32:] > 10).all()


def test_a_crop_does_not_depend_on_the_other_boxes(smooth_u8):
    """Eyes and a mouth 1.5× larger: each box is cut at its own rate, as if it were alone."""
    boxes = np.array([[100.0, 100.0, 245.0, 245.0], [300.0, 100.0, 441.0, 241.0], [150.0, 300.0, 352.0, 502.0]])
    together = crop_u8(smooth_u8, boxes, 32)
    for k, b in enumerate(boxes):
        torch.testing.assert_close(together[k : k + 1], crop_u8(smooth_u8, b[None], 32), rtol=0, atol=0)
