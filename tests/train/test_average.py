"""fflm.train.average: the moving average of the weights, its warm-up and its BatchNorm counters, by hand."""

import pytest
from torch import nn

from fflm.train.average import moving_average


def test_the_average_follows_the_warm_up_formula_then_the_decay():
    net = nn.Sequential(nn.Linear(1, 1, bias=False), nn.BatchNorm1d(1))
    ema = moving_average(net, 0.5)
    expected = None
    for k, w in enumerate([3.0, -1.0, 5.0, 2.0, 0.5, 8.0, 4.0, 1.0, 7.0, 6.0, -3.0, 9.0, 2.0, 0.0, 5.0], start=1):
        net[0].weight.data.fill_(w)
        net[1].running_mean.fill_(-w)
        net[1].num_batches_tracked.fill_(k)
        ema.update_parameters(net)
        d = min(0.5, k / (9 + k))  # update k averages with decay min(decay, (1 + n) / (10 + n)), n = k - 1
        expected = w if expected is None else d * expected + (1 - d) * w
        assert ema.module[0].weight.item() == pytest.approx(expected)
        assert ema.module[1].running_mean.item() == pytest.approx(-expected)
        assert ema.module[1].num_batches_tracked.item() == k  # counters are copied, not averaged
    assert 1 / 10 < 0.5 < 15 / 24  # the steps above went through the warm-up and then the fixed decay
