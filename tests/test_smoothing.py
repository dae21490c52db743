"""fflm.smoothing: the One-Euro filter against its hand-computed lag and noise reduction."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fflm.smoothing import OneEuro, OneEuroParams, smoothing_factor

DT = 0.1
HALF = 1 / (2 * math.pi * DT)  # the cut-off whose weight at DT is 1/2 (τ = DT)


def ramp(f: OneEuro, v: np.ndarray, n: int, scale: float = 1.0) -> np.ndarray:
    """The filter's output on points moving at velocity v (per second), sampled every DT: [n, points, 2]."""
    return np.array([f(np.array([v * k * DT]), k * DT, scale)[0] for k in range(n)])


def test_smoothing_factor_by_hand():
    assert smoothing_factor(HALF, DT) == pytest.approx(0.5)
    assert smoothing_factor(1.0, 0.04) == pytest.approx(1 / (1 + 1 / (2 * math.pi * 0.04)))


def test_without_beta_a_ramp_lags_by_tau_times_speed():
    # weight 1/2: y_n = (x_n + y_(n-1)) / 2, so the lag behind x_n = v·n·DT is v·DT·(1 - 2^-n)
    out = ramp(OneEuro(OneEuroParams(min_cutoff=HALF, beta=0.0)), np.array([3.0, -1.0]), 12)
    x = np.array([3.0, -1.0]) * np.arange(12)[:, None] * DT
    lag = (x - out) / (np.array([3.0, -1.0]) * DT)
    assert np.allclose(lag, (1 - 0.5 ** np.arange(12))[:, None])


def test_without_beta_white_noise_is_reduced_to_sqrt_a_over_2_minus_a():
    rng = np.random.default_rng(0)
    f = OneEuro(OneEuroParams(min_cutoff=HALF, beta=0.0))
    noise = rng.normal(0, 1, (20000, 1, 2))
    out = np.array([f(x, k * DT) for k, x in enumerate(noise)])[1000:]
    # variance of an exponential filter of weight a on unit white noise: a / (2 - a) = 1/3
    assert out.std() == pytest.approx(math.sqrt(1 / 3), rel=0.03)


def test_beta_cuts_the_lag_on_a_fast_ramp_to_its_steady_state():
    # steady state on a ramp: the speed estimate is v + L/DT, the lag L = v·τ with τ = 1/(2π(m + β(v + L/DT)/s)),
    # i.e. (2πβ/(DT·s))·L² + 2π(m + βv/s)·L - v = 0
    m, beta, s, v = 1.0, 0.5, 20.0, 40.0
    a, b = 2 * math.pi * beta / (DT * s), 2 * math.pi * (m + beta * v / s)
    lag = (-b + math.sqrt(b * b + 4 * a * v)) / (2 * a)
    out = ramp(OneEuro(OneEuroParams(min_cutoff=m, beta=beta, d_cutoff=5.0)), np.array([v, 0.0]), 200, s)
    assert v * 199 * DT - out[-1, 0] == pytest.approx(lag, rel=1e-6)
    slow = ramp(OneEuro(OneEuroParams(min_cutoff=m, beta=0.0)), np.array([v, 0.0]), 200, s)
    assert v * 199 * DT - slow[-1, 0] == pytest.approx(v / (2 * math.pi * m), rel=1e-6)  # 6.4 against 2.4
    assert lag < 0.4 * v / (2 * math.pi * m)


def test_the_cutoff_follows_the_points_2d_speed_not_the_axes():
    p = OneEuroParams(min_cutoff=1.0, beta=0.5)
    along_x = ramp(OneEuro(p), np.array([40.0, 0.0]), 50, 20.0)
    diagonal = ramp(OneEuro(p), np.array([40.0, 40.0]) / math.sqrt(2), 50, 20.0)
    assert np.allclose(np.linalg.norm(diagonal, axis=-1), along_x[:, 0])


def test_the_first_sample_and_a_change_of_shape_or_a_time_going_back_restart_the_filter():
    f = OneEuro()
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert np.array_equal(f(x, 0.0), x)
    assert not np.array_equal(f(x + 10, 0.1), x + 10)
    assert np.array_equal(f(x[:1] + 5, 0.2), x[:1] + 5)
    assert np.array_equal(f(x[:1] - 5, 0.2), x[:1] - 5)


@pytest.mark.parametrize("kw", [{"min_cutoff": 0.0}, {"d_cutoff": -1.0}, {"beta": -0.1}])
def test_bad_parameters(kw):
    with pytest.raises(ValueError, match="One-Euro"):
        OneEuroParams(**kw)
