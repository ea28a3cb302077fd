import logging

import numpy as np
import pytest

from reconad.thresholds.adaptive import (FixedThreshold, PotThreshold, RollingQuantileThreshold,
                                        make_threshold)


def normal(loc, n, seed):
    return np.random.default_rng(seed).normal(loc, 0.1, n)


@pytest.mark.parametrize("cls", [RollingQuantileThreshold, PotThreshold])
def test_stays_put_on_stationary_scores(cls):
    t = cls(normal(1.0, 3000, 0))
    start = t.threshold_
    for i in range(10):
        t.update(normal(1.0, 1000, i + 1))
    assert abs(t.threshold_ - start) < 0.05 * start
    assert 1.2 < t.threshold_ < 1.4                  # about the 99 % / 99.9 % point of N(1, 0.1)


@pytest.mark.parametrize("cls", [RollingQuantileThreshold, PotThreshold])
def test_follows_normal_data_that_moves(cls):
    t = cls(normal(1.0, 3000, 0))
    start = t.threshold_
    for i in range(15):
        t.update(normal(1.15, 1000, i + 1))
    assert t.threshold_ > start + 0.1


@pytest.mark.parametrize("cls", [RollingQuantileThreshold, PotThreshold])
def test_a_fault_does_not_raise_it(cls):
    t = cls(normal(1.0, 3000, 0))
    start = t.threshold_
    for i in range(10):
        t.update(normal(3.0, 200, i + 1))            # scores far above the threshold
    assert t.threshold_ == start and t.n_admitted_ == 0


def test_slow_drift_into_a_fault_is_capped_and_logged(caplog):
    lines = []
    t = RollingQuantileThreshold(normal(1.0, 2000, 0), q=0.99, log=lines.append)
    assert t.upper == pytest.approx(1.5 * t.initial_)
    with caplog.at_level(logging.INFO, logger="reconad.thresholds.adaptive"):
        for i in range(300):                          # creeps up 0.01 per 100 scores
            t.update(normal(1.0 + 0.01 * i, 100, i + 1))
    assert t.threshold_ == t.upper and t.at_bound_ == "upper"
    assert lines[0].startswith("adaptive threshold: {'method': 'rolling_quantile', 'q': 0.99")
    assert any("held at its upper bound" in line for line in lines)
    assert any("->" in line for line in lines)
    assert any("upper bound" in r.getMessage() for r in caplog.records)


def test_explicit_bounds_and_run():
    t = RollingQuantileThreshold(normal(1.0, 1000, 0), q=0.95, lower=1.1, upper=1.2, window=300,
                                 min_samples=10)
    th = t.run(normal(0.5, 400, 1), step=50)
    assert th.shape == (400,) and th[0] == pytest.approx(t.initial_) and t.threshold_ == 1.1
    assert np.all(np.diff(th) <= 1e-12)


def test_make_threshold_and_errors():
    ref = normal(1.0, 1000, 0)
    assert isinstance(make_threshold(None, ref, 1.3), FixedThreshold)
    assert make_threshold("fixed", ref, 1.3).update([5.0, 6.0]) == 1.3
    rq = make_threshold({"method": "rolling_quantile", "q": 0.9}, ref, 1.3)
    assert rq.describe()["method"] == "rolling_quantile" and rq.initial_ == 1.3
    pot = make_threshold({"method": "pot", "risk": 0.01}, ref, initial=None)
    assert np.isfinite(pot.describe()["gpd_scale"])
    with pytest.raises(ValueError, match="unknown threshold method 'ewma'"):
        make_threshold("ewma", ref, 1.0)
    with pytest.raises(ValueError, match="rolling_quantile threshold"):
        make_threshold({"method": "rolling_quantile", "quantile": 0.9}, ref, 1.0)
    with pytest.raises(ValueError, match="q must be"):
        RollingQuantileThreshold(ref, q=99)
    with pytest.raises(ValueError, match="NaN"):
        RollingQuantileThreshold(ref).update([np.nan])
    with pytest.raises(ValueError, match="lower bound"):
        RollingQuantileThreshold(ref, lower=2, upper=1)
