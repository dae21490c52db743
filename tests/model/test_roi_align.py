"""fflm.model.layers, RoIAlign: aligned bilinear RoIAlign on grid_sample, with area averaging for large boxes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fflm.model.layers import roi_align, sampling_ratio

# grid_sample normalises coordinates to [-1, 1] and back: integer-aligned samples are pixel values up to
# that rounding (≈1e-6 relative in float32, ≈1e-15 in float64), not bit-exact.
F32 = dict(rtol=0, atol=1e-3)  # on 0..255 images
F64 = dict(rtol=0, atol=1e-9)


def random_images(n=1, c=3, h=40, w=50, seed=0, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, h, w), generator=g).to(dtype)


def smooth_image(h=48, w=64) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    return 128 + 100 * np.sin(xx / 5.0) * np.cos(yy / 7.0)


def aligned_box(a: float, b: float, sw: int, sh: int | None = None) -> list[float]:
    """The box whose sw×sh crop samples exactly pixel centres a..a+sw-1, b..b+sh-1."""
    sh = sw if sh is None else sh
    return [a - 0.5, b - 0.5, a + sw - 0.5, b + sh - 0.5]


# ---------------------------------------------------------------- reference: numpy bilinear, supersampled


def bilinear(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of img [H, W] at pixel-centre coordinates, zero outside the image."""
    h, w = img.shape
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    out = np.zeros_like(x)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            xi, yi = x0 + dx, y0 + dy
            ok = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
            out += wx * wy * np.where(ok, img[yi.clip(0, h - 1), xi.clip(0, w - 1)], 0.0)
    return out


def supersampled(img: np.ndarray, box, s: int, n: int = 32) -> np.ndarray:
    """Mean of the bilinear image over each output pixel's area, n×n samples per pixel."""
    x0, y0, x1, y1 = box
    t = (np.arange(s * n) + 0.5) / (s * n)
    xx, yy = np.meshgrid(x0 + t * (x1 - x0), y0 + t * (y1 - y0))
    return bilinear(img, xx, yy).reshape(s, n, s, n).mean(axis=(1, 3))


# ---------------------------------------------------------------- values


@pytest.mark.parametrize("a,b,s", [(0, 0, 8), (5, 7, 16), (33, 20, 17), (42, 32, 8), (3, 4, 1)])
def test_aligned_box_equals_slicing(a, b, s):
    img = random_images()
    crop = roi_align(img, torch.tensor([aligned_box(a, b, s)]), None, s)
    assert crop.shape == (1, 3, s, s)
    torch.testing.assert_close(crop, img[:, :, b:b + s, a:a + s], **F32)


def test_aligned_box_equals_slicing_float64():
    img = random_images(dtype=torch.float64)
    box = torch.tensor([aligned_box(4, 6, 16)], dtype=torch.float64)
    torch.testing.assert_close(roi_align(img, box, None, 16), img[:, :, 6:22, 4:20], **F64)


def test_non_square_size_is_width_height():
    """size=(w, h): the crop is [K, C, h, w]."""
    img = random_images()
    crop = roi_align(img, torch.tensor([aligned_box(3, 5, 12, 7)]), None, (12, 7))
    assert crop.shape == (1, 3, 7, 12)
    torch.testing.assert_close(crop, img[:, :, 5:12, 3:15], **F32)


def test_half_pixel_shift_averages_neighbours():
    """A box shifted by half a pixel samples midway between pixel centres: the mean of 2×2 neighbours."""
    img = random_images(dtype=torch.float64)
    crop = roi_align(img, torch.tensor([aligned_box(2.5, 3.5, 6)], dtype=torch.float64), None, 6)
    blocks = img[:, :, 3:10, 2:9]
    want = (blocks[..., :-1, :-1] + blocks[..., 1:, :-1] + blocks[..., :-1, 1:] + blocks[..., 1:, 1:]) / 4
    torch.testing.assert_close(crop, want, **F64)


@pytest.mark.parametrize("factor", [2, 4])
def test_shrinking_box_is_block_average(factor):
    """A box factor× larger than the crop, on pixel-block boundaries: each crop pixel is the mean of its
    factor×factor block (sampling_ratio = factor, sub-samples on pixel centres)."""
    s, a, b = 5, 3, 2
    img = random_images(dtype=torch.float64)
    box = torch.tensor([aligned_box(a, b, factor * s)], dtype=torch.float64)
    assert sampling_ratio(box, (s, s)) == factor
    crop = roi_align(img, box, None, s)
    want = F.avg_pool2d(img[:, :, b:b + factor * s, a:a + factor * s], factor)
    torch.testing.assert_close(crop, want, **F64)


def test_shrinking_box_close_to_supersampled_reference():
    img = smooth_image()
    s = 6
    box = aligned_box(10, 7, 4 * s)
    crop = roi_align(torch.from_numpy(img)[None, None], torch.tensor([box], dtype=torch.float64), None, s)
    np.testing.assert_allclose(crop[0, 0].numpy(), supersampled(img, box, s), atol=1.0)


@pytest.mark.parametrize("s", [5, 8, 16])
def test_arbitrary_box_close_to_supersampled_reference(s):
    img = smooth_image()
    box = [3.3, 2.7, 40.1, 39.9]
    crop = roi_align(torch.from_numpy(img)[None, None], torch.tensor([box], dtype=torch.float64), None, s)
    np.testing.assert_allclose(crop[0, 0].numpy(), supersampled(img, box, s, 512 // s), atol=1.0)


def test_point_sampling_would_alias():
    """Why sub-sampling matters: a 1-px checkerboard shrunk 4× must come out flat grey, not black/white."""
    img = torch.zeros(1, 1, 32, 32, dtype=torch.float64)
    img[..., ::2, ::2] = img[..., 1::2, 1::2] = 255.0
    crop = roi_align(img, torch.tensor([aligned_box(0, 0, 32)], dtype=torch.float64), None, 8)
    torch.testing.assert_close(crop, torch.full_like(crop, 127.5), **F64)


def test_zero_outside_image():
    img = random_images(h=20, w=20) + 1  # strictly positive inside
    far = roi_align(img, torch.tensor([aligned_box(30, -40, 8)]), None, 8)
    assert torch.equal(far, torch.zeros_like(far))
    # box straddling the left edge: columns of x < 0 are zero, the rest is the image
    half = roi_align(img, torch.tensor([aligned_box(-4, 5, 8)]), None, 8)
    torch.testing.assert_close(half[..., :4], torch.zeros(1, 3, 8, 4), **F32)
    torch.testing.assert_close(half[..., 4:], img[:, :, 5:13, 0:4], **F32)


def test_outside_counts_as_zero_in_averages():
    """A constant image shrunk through a box half outside: the outside half averages in zeros."""
    img = torch.full((1, 1, 16, 16), 100.0, dtype=torch.float64)
    box = torch.tensor([[-8.5, -0.5, 7.5, 15.5]], dtype=torch.float64)  # left half outside, 16 px → 4 px
    crop = roi_align(img, box, None, 4)
    want = torch.tensor([0.0, 0.0, 100.0, 100.0], dtype=torch.float64).expand(1, 1, 4, 4)
    torch.testing.assert_close(crop, want, **F64)


def test_batch_index_routing():
    imgs = random_images(n=3, seed=1)
    specs = [(2, 1, 1), (0, 10, 3), (2, 20, 20), (1, 0, 30), (0, 41, 31)]  # (image, a, b)
    s = 8
    boxes = torch.tensor([aligned_box(a, b, s) for _, a, b in specs])
    index = torch.tensor([n for n, _, _ in specs])
    crops = roi_align(imgs, boxes, index, s)
    assert crops.shape == (5, 3, s, s)
    for k, (n, a, b) in enumerate(specs):
        torch.testing.assert_close(crops[k], imgs[n, :, b:b + s, a:a + s], **F32)


def test_default_batch_index_is_image_zero():
    imgs = random_images(n=2)
    crops = roi_align(imgs, torch.tensor([aligned_box(1, 2, 4), aligned_box(9, 9, 4)]), None, 4)
    torch.testing.assert_close(crops[0], imgs[0, :, 2:6, 1:5], **F32)
    torch.testing.assert_close(crops[1], imgs[0, :, 9:13, 9:13], **F32)


def test_empty_boxes():
    imgs = random_images(n=2, c=3)
    out = roi_align(imgs, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), 16)
    assert out.shape == (0, 3, 16, 16)
    assert roi_align(imgs, torch.zeros(0, 4), None, (5, 7)).shape == (0, 3, 7, 5)
    assert sampling_ratio(torch.zeros(0, 4), (16, 16)) == 1


def test_sampling_ratio_hand_values():
    """ceil(larger box side / crop side), at least 1, at most max_ratio; the largest box decides."""
    b = torch.tensor([[0.0, 0.0, 100.0, 40.0]])
    assert sampling_ratio(b, (32, 32)) == 4  # 100/32 = 3.125
    assert sampling_ratio(b, (50, 8)) == 5  # height: 40/8
    assert sampling_ratio(torch.tensor([[0.0, 0.0, 10.0, 10.0]]), (32, 32)) == 1
    assert sampling_ratio(torch.tensor([[0.0, 0.0, 1e4, 1e4]]), (32, 32)) == 16
    assert sampling_ratio(torch.tensor([[0.0, 0.0, 1e4, 1e4]]), (32, 32), max_ratio=8) == 8
    two = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 64.0, 64.0]])
    assert sampling_ratio(two, (32, 32)) == 2


# ---------------------------------------------------------------- gradients


def smooth_torch(h=40, w=48) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    return (100 + 50 * torch.sin(xx / 4.0) + 30 * torch.cos(yy / 3.0 + xx / 9.0))[None, None]


def test_gradient_to_box_matches_finite_difference():
    img = smooth_torch()
    weights = torch.randn(1, 1, 6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    box0 = torch.tensor([[5.3, 4.1, 30.7, 28.9]], dtype=torch.float64)

    def f(b):
        return (roi_align(img, b, None, 6, ratio=2) * weights).sum()

    box = box0.clone().requires_grad_(True)
    grad, = torch.autograd.grad(f(box), box)
    assert (grad.abs() > 1e-3).all(), grad
    eps = 1e-6  # bilinear is piecewise linear: small steps do not cross a pixel centre
    num = torch.zeros(4, dtype=torch.float64)
    for i in range(4):
        d = torch.zeros(1, 4, dtype=torch.float64)
        d[0, i] = eps
        num[i] = (f(box0 + d) - f(box0 - d)) / (2 * eps)
    torch.testing.assert_close(grad[0], num, rtol=1e-5, atol=1e-6)


def test_gradient_to_box_translation():
    """Moving the whole box right by dx moves every sample: d(sum)/dx0 + d(sum)/dx1 = sum of d/dx."""
    img = smooth_torch()
    box = torch.tensor([[5.3, 4.1, 30.7, 28.9]], dtype=torch.float64, requires_grad=True)
    roi_align(img, box, None, 6, ratio=2).sum().backward()
    g = box.grad[0]
    eps = 1e-6
    shift = torch.tensor([[eps, 0.0, eps, 0.0]], dtype=torch.float64)
    with torch.no_grad():
        num = (roi_align(img, box + shift, None, 6, ratio=2).sum() - roi_align(img, box - shift, None, 6, ratio=2).sum()) / (2 * eps)
    torch.testing.assert_close(g[0] + g[2], num, rtol=1e-5, atol=1e-6)


def test_gradient_to_image_aligned_box():
    """For an aligned box the crop is a slice: d(sum crop)/d image is 1 on the slice, 0 elsewhere."""
    img = random_images(n=2).requires_grad_(True)
    boxes = torch.tensor([aligned_box(3, 4, 8), aligned_box(20, 10, 8)])
    roi_align(img, boxes, torch.tensor([1, 0]), 8).sum().backward()
    want = torch.zeros_like(img)
    want[1, :, 4:12, 3:11] = 1
    want[0, :, 10:18, 20:28] = 1
    torch.testing.assert_close(img.grad, want, **F32)


def test_gradient_to_image_block_average():
    img = random_images(dtype=torch.float64).requires_grad_(True)
    roi_align(img, torch.tensor([aligned_box(2, 3, 16)], dtype=torch.float64), None, 4).sum().backward()
    want = torch.zeros_like(img)
    want[:, :, 3:19, 2:18] = 1 / 16
    torch.testing.assert_close(img.grad, want, **F64)


def test_inside_repeats_edges_within_the_picture_and_weighs_cells_beyond_it():
    """A constant 10×10 image of 50. Box [5.5, 9.5]² at 4 px, 2 sub-samples: the last sub-sample (9.25) lies
    between the last pixel centre and the image's edge (9.5). Zero padding blends it with black (37.5, so the
    last column averages 43.75); with `inside` it reads 50. Box [-1, 9]² at 5 px, 2 sub-samples: the first
    sub-sample's cell [-1, 0] is half outside the picture (edge -0.5), so column 0 is (0.5 + 1)/2 · 50."""
    img = torch.full((1, 1, 10, 10), 50.0)
    edge = (-0.5, -0.5, 9.5, 9.5)
    box = torch.tensor([[5.5, 5.5, 9.5, 9.5]])
    assert roi_align(img, box, None, 4, 2)[0, 0, 0].tolist() == pytest.approx([50.0, 50.0, 50.0, 43.75], abs=1e-3)
    assert roi_align(img, box, None, 4, 2, inside=edge)[0, 0, 0].tolist() == pytest.approx([50.0] * 4, abs=1e-3)
    out = roi_align(img, torch.tensor([[-1.0, -1.0, 9.0, 9.0]]), None, 5, 2, inside=edge)[0, 0]
    assert out[2].tolist() == pytest.approx([37.5, 50.0, 50.0, 50.0, 50.0], abs=1e-3)
    assert out[0, 0].item() == pytest.approx(37.5 * 0.75, abs=1e-3)  # half a cell outside in x and in y
