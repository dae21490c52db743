"""fflm.model.layers, heatmaps to points: soft-argmax in input pixels, its gradient, the confidence score and SoftArgmax."""

from __future__ import annotations

import math

import pytest
import torch

from fflm.geometry import cell_centres
from fflm.model.layers import SoftArgmax, confidence, soft_argmax

BIG = 1e4  # exp(-BIG) underflows to exactly 0: a one-hot softmax


def one_hot_logits(h: int, w: int, cells: list[tuple[int, int]], value: float = BIG) -> torch.Tensor:
    logits = torch.zeros(1, 1, h, w)
    for i, j in cells:
        logits[0, 0, i, j] = value
    return logits


def cell_centre(i: int, j: int, stride: int) -> tuple[float, float]:
    """Input-pixel centre of heatmap cell (row i, column j): a stride-s cell covers s input pixels."""
    return stride * j + (stride - 1) / 2, stride * i + (stride - 1) / 2


@pytest.mark.parametrize("stride", [1, 2, 4])
@pytest.mark.parametrize("cell", [(0, 0), (1, 3), (4, 6), (4, 0)])
def test_one_hot_gives_cell_centre(stride, cell):
    h, w = 5, 7
    pts, prob = soft_argmax(one_hot_logits(h, w, [cell]), 1.0, stride)
    assert pts.shape == (1, 1, 2) and prob.shape == (1, 1, h, w)
    assert pts[0, 0].tolist() == list(cell_centre(*cell, stride))  # exact: every other weight is 0


def test_hand_values_stride_4():
    """Cell (1, 2) at stride 4 averages input pixels 8..11 × 4..7: centre (9.5, 5.5)."""
    pts, _ = soft_argmax(one_hot_logits(4, 4, [(1, 2)]), 1.0, 4)
    assert pts[0, 0].tolist() == [9.5, 5.5]


@pytest.mark.parametrize("stride", [1, 2, 4])
def test_two_equal_peaks_give_midpoint(stride):
    a, b = (1, 2), (3, 6)
    pts, prob = soft_argmax(one_hot_logits(5, 8, [a, b], 100.0), 1.0, stride)
    ca, cb = cell_centre(*a, stride), cell_centre(*b, stride)
    want = torch.tensor([(ca[0] + cb[0]) / 2, (ca[1] + cb[1]) / 2])
    torch.testing.assert_close(pts[0, 0], want)
    torch.testing.assert_close(prob[0, 0, a[0], a[1]], torch.tensor(0.5))


@pytest.mark.parametrize("stride,h,w", [(1, 4, 4), (2, 3, 5), (4, 8, 6)])
def test_uniform_gives_map_centre(stride, h, w):
    """The map covers input pixels [-0.5, s·w - 0.5]: its centre is ((s·w - 1)/2, (s·h - 1)/2)."""
    logits = torch.full((2, 3, h, w), 1.7)
    pts, prob = soft_argmax(logits, 1.0, stride)
    want = torch.tensor([(stride * w - 1) / 2, (stride * h - 1) / 2]).expand(2, 3, 2)
    torch.testing.assert_close(pts, want)
    torch.testing.assert_close(prob, torch.full_like(prob, 1 / (h * w)))


def test_beta_sharpens():
    """Logits 0 and ln 3 on a 1×2 map: probabilities 1/4, 3/4 at beta 1 and 1/10, 9/10 at beta 2."""
    logits = torch.tensor([[[[0.0, math.log(3.0)]]]])
    pts1, prob1 = soft_argmax(logits, 1.0, 1)
    pts2, prob2 = soft_argmax(logits, torch.tensor(2.0), 1)
    torch.testing.assert_close(prob1[0, 0, 0], torch.tensor([0.25, 0.75]))
    torch.testing.assert_close(prob2[0, 0, 0], torch.tensor([0.1, 0.9]))
    torch.testing.assert_close(pts1[0, 0], torch.tensor([0.75, 0.0]))
    torch.testing.assert_close(pts2[0, 0], torch.tensor([0.9, 0.0]))


def test_batch_and_channels_are_independent():
    logits = torch.zeros(2, 3, 4, 4)
    logits[0, 0, 0, 0] = logits[0, 1, 3, 3] = logits[1, 2, 1, 2] = BIG
    pts, _ = soft_argmax(logits, 1.0, 2)
    assert pts[0, 0].tolist() == [0.5, 0.5]
    assert pts[0, 1].tolist() == [6.5, 6.5]
    assert pts[1, 2].tolist() == [4.5, 2.5]
    assert pts[1, 0].tolist() == [3.5, 3.5]  # uniform


def test_cell_centres_as_torch_and_numpy():
    xs = cell_centres(3, 4, torch.device("cpu"), torch.float32)
    assert xs.dtype == torch.float32 and xs.tolist() == [1.5, 5.5, 9.5]
    assert cell_centres(2, 4).tolist() == [1.5, 5.5] and cell_centres(3, 1).tolist() == [0.0, 1.0, 2.0]


# ---------------------------------------------------------------- gradients


@pytest.mark.parametrize("beta,stride", [(1.0, 1), (0.7, 4)])
def test_gradient_matches_closed_form(beta, stride):
    """d x̄ / d l_k = beta · p_k · (x_k - x̄) (the derivative of a softmax expectation)."""
    torch.manual_seed(0)
    logits = torch.randn(1, 2, 3, 4, requires_grad=True)
    pts, prob = soft_argmax(logits, beta, stride)
    xs, ys = (cell_centres(n, stride, torch.device("cpu"), torch.float32) for n in (4, 3))
    gx, = torch.autograd.grad(pts[0, 1, 0], logits, retain_graph=True)
    gy, = torch.autograd.grad(pts[0, 0, 1], logits)
    p = prob.detach()
    want_x = beta * p[0, 1] * (xs[None, :] - pts[0, 1, 0].detach())
    want_y = beta * p[0, 0] * (ys[:, None] - pts[0, 0, 1].detach())
    torch.testing.assert_close(gx[0, 1], want_x, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(gy[0, 0], want_y, rtol=1e-4, atol=1e-6)
    assert gx[0, 0].abs().max() == 0 and gy[0, 1].abs().max() == 0  # other channels untouched


def test_gradient_matches_finite_difference_float32():
    torch.manual_seed(1)
    logits = torch.randn(1, 1, 3, 3)
    w = torch.tensor([[[0.3, -1.2]]])

    def f(l):
        return (soft_argmax(l, 1.0, 2)[0] * w).sum()

    l = logits.clone().requires_grad_(True)
    g, = torch.autograd.grad(f(l), l)
    eps = 1e-2
    num = torch.zeros_like(logits)
    for idx in range(9):
        d = torch.zeros(9)
        d[idx] = eps
        d = d.view_as(logits)
        num.view(-1)[idx] = (f(logits + d) - f(logits - d)) / (2 * eps)
    torch.testing.assert_close(g, num, rtol=1e-2, atol=1e-3)


def test_gradcheck_double():
    torch.manual_seed(0)
    logits = torch.randn(1, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda l: soft_argmax(l, 0.8, 2)[0], (logits,))


def test_double_in_double_out():
    pts, prob = soft_argmax(torch.zeros(1, 1, 2, 2, dtype=torch.float64), 1.0, 1)
    assert pts.dtype == torch.float64 and prob.dtype == torch.float64


def test_half_precision_logits_are_computed_in_float32():
    """The float32 softmax exists for reduced-precision logits: a bfloat16 one-hot still gives exact centres."""
    pts, _ = soft_argmax(one_hot_logits(8, 8, [(5, 7)], 100.0).bfloat16(), 1.0, 4)
    assert pts.dtype == torch.float32
    assert pts[0, 0].tolist() == [29.5, 21.5]


# ---------------------------------------------------------------- confidence


@pytest.mark.parametrize("stride", [1, 4])
def test_confidence_one_hot_is_one(stride):
    pts, prob = soft_argmax(one_hot_logits(8, 8, [(2, 5)]), 1.0, stride)
    torch.testing.assert_close(confidence(prob, pts, stride), torch.ones(1, 1))


def test_confidence_uniform_is_small():
    """Uniform 8×8 map: the soft-argmax is the centre (between 4 cells); only those 4 cells lie within
    1.5 cells (the next ring is at √2.5 > 1.5), so the mass inside is 4/64."""
    pts, prob = soft_argmax(torch.zeros(1, 1, 8, 8), 1.0, 2)
    torch.testing.assert_close(confidence(prob, pts, 2), torch.tensor([[4 / 64]]))


def test_confidence_centred_spread_3x3():
    """Mass spread over a 3×3 block around a cell: the farthest cells are √2 < 1.5 away, all counted;
    a radius below 1 counts only the centre cell (1/9)."""
    logits = torch.full((1, 1, 7, 7), -BIG)
    logits[0, 0, 2:5, 1:4] = 0.0
    pts, prob = soft_argmax(logits, 1.0, 2)
    assert pts[0, 0].tolist() == [4.5, 6.5]  # cell (3, 2) at stride 2
    torch.testing.assert_close(confidence(prob, pts, 2), torch.ones(1, 1))
    torch.testing.assert_close(confidence(prob, pts, 2, radius=0.9), torch.tensor([[1 / 9]]))


def test_confidence_bimodal_is_zero():
    """Two equal peaks 4 cells apart: the soft-argmax lies between them, 2 cells from each."""
    pts, prob = soft_argmax(one_hot_logits(8, 8, [(3, 1), (3, 5)], 100.0), 1.0, 1)
    torch.testing.assert_close(confidence(prob, pts, 1), torch.zeros(1, 1))


def test_confidence_in_unit_interval():
    torch.manual_seed(0)
    for scale in (0.1, 1.0, 10.0, 1000.0):
        logits = torch.randn(3, 5, 6, 6) * scale
        pts, prob = soft_argmax(logits, 1.0, 2)
        c = confidence(prob, pts, 2)
        assert c.shape == (3, 5)
        assert (c >= 0).all() and (c <= 1).all()


# ---------------------------------------------------------------- module


def test_softargmax_learnable_is_a_parameter():
    m = SoftArgmax(2.0, learnable=True)
    assert [n for n, _ in m.named_parameters()] == ["log_beta"]
    assert [n for n, _ in m.named_buffers()] == []
    torch.testing.assert_close(m.log_beta.detach(), torch.tensor(-math.log(2.0)))
    logits = torch.tensor([[[[0.0, math.log(9.0)]]]])  # beta 0.5: weights 1 : 3
    pts, _ = m(logits, 1)
    torch.testing.assert_close(pts[0, 0], torch.tensor([0.75, 0.0]))
    pts[0, 0, 0].backward()
    assert m.log_beta.grad is not None and m.log_beta.grad != 0


def test_softargmax_fixed_is_a_buffer():
    m = SoftArgmax(0.5, learnable=False)
    assert list(m.parameters()) == []
    assert [n for n, _ in m.named_buffers()] == ["log_beta"]
    assert "log_beta" in m.state_dict()
    torch.testing.assert_close(m.log_beta.exp(), torch.tensor(2.0))
    logits = torch.tensor([[[[0.0, math.log(3.0)]]]])  # beta 2: weights 1 : 9
    pts, _ = m(logits, 1)
    torch.testing.assert_close(pts[0, 0], torch.tensor([0.9, 0.0]))


def _confidence_over_whole_maps(prob: torch.Tensor, points: torch.Tensor, stride: int, radius: float) -> torch.Tensor:
    """The definition, every cell tested: the mass of the cells whose centres lie within `radius` cells."""
    _, _, h, w = prob.shape
    xs, ys = (torch.arange(m, dtype=prob.dtype) * stride + (stride - 1) / 2 for m in (w, h))
    dx2 = ((xs[None, None, :] - points[..., 0:1]) / stride) ** 2
    dy2 = ((ys[None, None, :] - points[..., 1:2]) / stride) ** 2
    return (prob * ((dy2[..., :, None] + dx2[..., None, :]) <= radius**2)).sum(dim=(2, 3)).clamp(0.0, 1.0)


@pytest.mark.parametrize("stride, radius", [(1, 1.5), (4, 1.5), (4, 0.9), (2, 2.0), (8, 0.4)])
def test_confidence_reads_only_the_window_and_matches_the_whole_map_sum(stride, radius):
    """Points anywhere: inside, on cell centres and half-cells (the disc's edge exactly on a cell), at the map's
    edges and outside it; the windowed sum equals the sum over every cell of the map."""
    torch.manual_seed(7)
    h, w = 9, 12
    prob = torch.softmax(torch.randn(3, 40, h * w) * 3, dim=-1).reshape(3, 40, h, w)
    cells = torch.cat([torch.rand(3, 24, 2) * torch.tensor([w + 4.0, h + 4.0]) - 2,  # some outside the map
                       torch.randint(-1, 13, (3, 16, 2)).float() / 2], dim=1)  # centres, half cells, edges
    points = cells * stride + (stride - 1) / 2
    torch.testing.assert_close(confidence(prob, points, stride, radius),
                               _confidence_over_whole_maps(prob, points, stride, radius), atol=1e-6, rtol=0)
