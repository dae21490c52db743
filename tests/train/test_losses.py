"""fflm.train.losses: the paper's Eq. 1 (l2) and the l1, wing and ion alternatives, on hand-computed tensors."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fflm.scheme import IBUG68
from fflm.train.losses import LOSSES, landmark_loss, point_loss

FAST = settings(max_examples=30, deadline=None)
ONE = torch.ones(1, dtype=torch.float64)


def t(x) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


# two points: the first exact, the second off by (0.3, 0.4) (distance 0.5)
PRED = t([[[0.0, 0.0], [1.3, 2.4]]])
TRUTH = t([[[0.0, 0.0], [1.0, 2.0]]])


def test_l2_is_mean_squared_distance():
    assert point_loss(PRED, TRUTH, "l2", ONE).item() == pytest.approx((0 + 0.25) / 2)


def test_l1_is_mean_of_abs_dx_plus_abs_dy():
    assert point_loss(PRED, TRUTH, "l1", ONE).item() == pytest.approx((0 + 0.7) / 2)


def test_ion_is_mean_distance_over_norm():
    norm = t([0.5])
    assert point_loss(PRED, TRUTH, "ion", norm).item() == pytest.approx((0 + 0.5 / 0.5) / 2, abs=1e-5)
    # per face: each face's errors divided by its own distance
    pred = torch.cat([PRED, PRED])
    truth = torch.cat([TRUTH, TRUTH])
    got = point_loss(pred, truth, "ion", t([0.5, 2.0])).item()
    assert got == pytest.approx((0.5 / 0.5 + 0.5 / 2.0) / 4, abs=1e-5)


def wing_px(x: float, w: float = 10.0, eps: float = 2.0) -> float:
    """Feng et al. 2018, written out: w·ln(1 + |x|/ε) below w, |x| − C above, C = w − w·ln(1 + w/ε)."""
    x = abs(x)
    return w * math.log(1 + x / eps) if x < w else x - (w - w * math.log(1 + w / eps))


def test_wing_both_sides_of_the_threshold():
    # coordinates are frame-normalised; wing works on them ×256 (frame pixels at R=256) and divides back
    pred = t([[[5 / 256, 0.0], [0.0, -20 / 256]]])  # 5 px in x (log side) and 20 px in y (linear side)
    truth = torch.zeros_like(pred)
    hand = (10 * math.log(3.5) + (20 - 10 + 10 * math.log(6))) / 2 / 256  # per point: sum over x, y; mean over points
    assert point_loss(pred, truth, "wing", ONE).item() == pytest.approx(hand, rel=1e-9)
    assert wing_px(5) == pytest.approx(10 * math.log(3.5)) and wing_px(20) == pytest.approx(10 + 10 * math.log(6))


@pytest.mark.parametrize("px", [0.0, 0.5, 3.0, 9.999, 10.0, 10.001, 15.0, 100.0, -7.0, -30.0])
def test_wing_matches_the_written_out_formula(px):
    pred = t([[[px / 256, 0.0]]])
    got = point_loss(pred, torch.zeros_like(pred), "wing", ONE).item()
    assert got == pytest.approx(wing_px(px) / 256, rel=1e-9, abs=1e-15)


def test_wing_is_continuous_at_the_threshold_with_the_slopes_of_each_piece():
    def value_and_slope(px):
        d = t([[[px / 256, 0.0]]]).requires_grad_()
        loss = point_loss(d, torch.zeros_like(d), "wing", ONE)
        loss.backward()
        return loss.item() * 256, d.grad[0, 0, 0].item()

    below, slope_below = value_and_slope(10 - 1e-7)
    above, slope_above = value_and_slope(10 + 1e-7)
    assert below == pytest.approx(above, abs=1e-5)  # C makes the two pieces meet at w
    assert slope_below == pytest.approx(10 / (2 + 10))  # d/dx w·ln(1 + x/ε) = w/(ε + x), x in frame px
    assert slope_above == pytest.approx(1.0)  # the linear piece
    _, slope_small = value_and_slope(1.0)
    assert slope_small == pytest.approx(10 / 3)  # steep for small errors: that is the point of wing


@pytest.mark.parametrize("kind", LOSSES)
def test_zero_at_perfect_prediction_with_finite_gradients(kind):
    truth = t([[[0.2, 0.3], [0.7, 0.35], [0.5, 0.8]]])
    pred = truth.clone().requires_grad_()
    loss = point_loss(pred, truth, kind, t([0.5]))
    assert loss.item() == pytest.approx(0.0, abs=1e-5)  # ion keeps a 1e-12 under its square root
    loss.backward()
    assert torch.isfinite(pred.grad).all()
    assert pred.grad.abs().max().item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("kind", LOSSES)
def test_gradients_finite_and_pointing_back(kind):
    torch.manual_seed(0)
    truth = torch.rand(3, 5, 2, dtype=torch.float64)
    pred = (truth + 0.2 * torch.randn_like(truth)).requires_grad_()
    pred_far = (truth + 5.0).detach().requires_grad_()
    for p in (pred, pred_far):
        loss = point_loss(p, truth, kind, torch.full((3,), 0.3, dtype=torch.float64))
        loss.backward()
        assert torch.isfinite(loss) and loss.item() > 0
        assert torch.isfinite(p.grad).all()
        with torch.no_grad():  # a small step against the gradient lowers the loss
            lower = point_loss(p - 1e-3 * p.grad / p.grad.norm(), truth, kind, torch.full((3,), 0.3, dtype=torch.float64))
        assert lower < loss


def test_unknown_loss():
    with pytest.raises(ValueError, match="unknown loss 'l3'.*l2, l1, wing, ion"):
        point_loss(PRED, TRUTH, "l3", ONE)
    assert LOSSES == ("l2", "l1", "wing", "ion")


coords = st.floats(-2, 2, allow_nan=False)


@FAST
@given(
    p=st.lists(st.tuples(coords, coords), min_size=1, max_size=6),
    q=st.lists(st.tuples(coords, coords), min_size=6, max_size=6),
    k=st.floats(0.1, 10),
)
def test_point_loss_properties(p, q, k):
    n = len(p)
    pred, truth = t([p]), t([q[:n]])
    d = pred - truth
    l2 = point_loss(pred, truth, "l2", ONE)
    assert l2.item() == pytest.approx(sum(float(dx) ** 2 + float(dy) ** 2 for dx, dy in d[0]) / n, rel=1e-9, abs=1e-12)
    assert l2.item() == pytest.approx(2 * torch.nn.functional.mse_loss(pred, truth).item(), rel=1e-9, abs=1e-12)
    # homogeneity: l2 quadratic, l1 linear, ion invariant when errors and the normalising distance scale together
    assert point_loss(truth + k * d, truth, "l2", ONE).item() == pytest.approx(k**2 * l2.item(), rel=1e-9, abs=1e-12)
    l1 = point_loss(pred, truth, "l1", ONE).item()
    assert point_loss(truth + k * d, truth, "l1", ONE).item() == pytest.approx(k * l1, rel=1e-9, abs=1e-12)
    ion = point_loss(pred, truth, "ion", t([0.7])).item()
    assert point_loss(k * pred, k * truth, "ion", t([0.7 * k])).item() == pytest.approx(ion, rel=1e-4, abs=1e-4)
    # symmetric in the sign of the error, never negative
    for kind in LOSSES:
        a = point_loss(pred, truth, kind, t([0.7])).item()
        assert a >= 0
        assert point_loss(truth, pred, kind, t([0.7])).item() == pytest.approx(a, rel=1e-9, abs=1e-12)


# --------------------------------------------------------------------------------------------- Eq. 1


def test_landmark_loss_is_eq1_global_plus_refined():
    """Frame side 100 px; truth in frame pixels. Two global stacks and two regional stages are averaged."""
    side = 100.0
    truth = t([[[10.0, 10.0], [50.0, 20.0], [30.0, 60.0], [80.0, 90.0]]])
    refined_idx = [1, 3]
    off = t([3.0, 4.0])  # 5 px -> 0.05 normalised -> 0.0025 squared
    outputs = {
        "global": [truth + off, truth.clone()],  # stacks: 0.0025 and 0 -> 0.00125
        "refined": [truth[:, refined_idx] + 2 * off, truth[:, refined_idx] + 2 * off],  # 10 px -> 0.01
    }
    total, parts = landmark_loss(outputs, truth, side, refined_idx, (0, 1), "l2")
    assert parts["global"] == pytest.approx(0.00125)
    assert parts["regional"] == pytest.approx(0.01)
    assert total.item() == pytest.approx(0.00125 + 0.01)
    # the refined term is a mean over the refined points only (1/N_att), not over all points
    outputs["refined"] = [truth[:, refined_idx] + off * t([[2.0], [0.0]])]  # point 1 off by 10 px, point 3 exact
    _, parts = landmark_loss(outputs, truth, side, refined_idx, (0, 1), "l2")
    assert parts["regional"] == pytest.approx(0.01 / 2)


def test_landmark_loss_without_refined_points():
    truth = t([[[10.0, 10.0], [50.0, 20.0]]])
    outputs = {"global": [truth + t([0.0, 10.0])], "refined": []}
    total, parts = landmark_loss(outputs, truth, 100.0, [], (0, 1), "l2")
    assert total.item() == pytest.approx(0.01) and parts == {"global": pytest.approx(0.01)}
    total, parts = landmark_loss(outputs, truth, 100.0, [0], (0, 1), "l2")
    assert "regional" not in parts and total.item() == pytest.approx(0.01)


def _face68(iod: float, dx: float = 0.0) -> torch.Tensor:
    """68 points in a row 1 px apart, with the outer eye corners (scheme norm points) `iod` px apart."""
    pts = torch.zeros(68, 2, dtype=torch.float64)
    pts[:, 0] = torch.arange(68, dtype=torch.float64) + dx
    pts[:, 1] = 100.0
    a, b = IBUG68.norm_points
    pts[a, 0], pts[b, 0] = 100.0 + dx, 100.0 + iod + dx
    return pts


def test_ion_is_normalised_by_the_schemes_outer_eye_corners():
    assert IBUG68.norm_points == (36, 45)
    truth = torch.stack([_face68(40.0), _face68(80.0)])
    err = t([1.2, 1.6])  # 2 px on every point
    outputs = {"global": [truth + err], "refined": [truth[:, IBUG68.refined_indices]]}
    for side in (256.0, 1000.0):  # normalised coordinates: the frame side cancels out
        total, parts = landmark_loss(outputs, truth, side, IBUG68.refined_indices, IBUG68.norm_points, "ion")
        assert parts["global"] == pytest.approx((2 / 40 + 2 / 80) / 2, rel=1e-6)
        assert parts["regional"] == pytest.approx(0.0, abs=1e-4)
        assert total.item() == pytest.approx(parts["global"] + parts["regional"])
    # normalised by the truth's distance, not the prediction's
    moved = truth + err
    moved[:, 45, 0] += 30
    outputs = {"global": [moved], "refined": []}
    total, _ = landmark_loss(outputs, truth, 256.0, [], IBUG68.norm_points, "ion")
    expect = ((67 * 2 + math.hypot(31.2, 1.6)) / 40 + (67 * 2 + math.hypot(31.2, 1.6)) / 80) / (2 * 68)
    assert total.item() == pytest.approx(expect, rel=1e-6)
    # other norm points, other distance: points 0 and 1 are 1 px apart
    outputs = {"global": [truth + err], "refined": []}
    total, _ = landmark_loss(outputs, truth, 256.0, [], (0, 1), "ion")
    assert total.item() == pytest.approx(2.0, rel=1e-6)


def test_ion_with_coincident_norm_points_stays_finite():
    truth = _face68(0.0).unsqueeze(0)
    pred = (truth + 1.0).requires_grad_()
    total, _ = landmark_loss({"global": [pred], "refined": []}, truth, 256.0, [], IBUG68.norm_points, "ion")
    total.backward()
    assert torch.isfinite(total) and torch.isfinite(pred.grad).all()


@pytest.mark.parametrize("kind", LOSSES)
def test_landmark_loss_zero_and_gradients(kind):
    torch.manual_seed(1)
    truth = torch.rand(2, 68, 2, dtype=torch.float64) * 200 + 20
    ridx = IBUG68.refined_indices
    g = [truth.clone().requires_grad_() for _ in range(2)]
    r = [truth[:, ridx].clone().requires_grad_()]
    total, parts = landmark_loss({"global": g, "refined": r}, truth, 256.0, ridx, IBUG68.norm_points, kind)
    assert total.item() == pytest.approx(0.0, abs=1e-5)
    assert set(parts) == {"global", "regional"} and all(isinstance(v, float) for v in parts.values())
    g = [(truth + torch.randn_like(truth)).requires_grad_() for _ in range(2)]
    r = [(truth[:, ridx] + torch.randn_like(truth[:, ridx])).requires_grad_()]
    total, _ = landmark_loss({"global": g, "refined": r}, truth, 256.0, ridx, IBUG68.norm_points, kind)
    total.backward()
    assert total.item() > 0
    for x in g + r:
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_landmark_loss_float32_like_training():
    truth = torch.rand(4, 68, 2) * 256
    pred = (truth + torch.randn_like(truth)).requires_grad_()
    for kind in LOSSES:
        total, _ = landmark_loss({"global": [pred], "refined": []}, truth, 256.0, [], IBUG68.norm_points, kind)
        assert total.dtype == torch.float32 and total.ndim == 0 and torch.isfinite(total)
