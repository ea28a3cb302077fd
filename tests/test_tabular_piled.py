"""Features on which many training rows share the lowest or highest value (a count that is
mostly 0, a pixel mostly blank): their typical error is not their median error alone."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score

from reconad import TabularDetector
from reconad.detectors import tabular as tabular_detector
from reconad.detectors.tabular import _typical_error, piled_features, row_range

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _rows(n=1000, seed=0):
    rng = np.random.RandomState(seed)
    counts = np.where(rng.uniform(size=n) < 0.6, 0.0, rng.uniform(1, 10, n))   # 60 % exactly 0
    tail = rng.normal(size=n)
    tail[0] = 8.0                                                              # one extreme row
    full = np.minimum(rng.uniform(0, 20, n), 16.0)                             # 20 % at the top, 16
    return torch.tensor(np.c_[counts, tail, full, np.full(n, 3.0)], dtype=torch.float32)


def test_piled_features_are_those_with_many_rows_on_a_bound():
    rows = _rows()
    parts = [rows[:700], rows[700:]]
    lower, upper = row_range(parts)
    assert torch.equal(lower[0], rows.amin(0)) and torch.equal(upper[0], rows.amax(0))
    assert piled_features(parts, lower, upper).tolist() == [True, False, True, True]


def test_piled_features_are_counted_per_member():
    rows = _rows()[:500, :1]                                         # 60 % at 0
    spread = torch.linspace(0.0, 9.0, 500).unsqueeze(1)              # each value once
    parts = [torch.stack([rows, spread])]                            # (members, K, F)
    piled = piled_features(parts, *row_range(parts))
    assert piled.shape == (2, 1) and piled[:, 0].tolist() == [True, False]


def test_typical_error_of_a_piled_feature_counts_its_rare_values():
    errors = np.zeros((100, 2))
    errors[:, 1] = 1.0
    errors[:10, 0] = 5.0                                             # 10 % of the rows rebuilt badly
    plain = _typical_error(errors, axis=0)
    piled = _typical_error(errors, axis=0, piled=np.array([True, True]))
    assert plain[0] < 1e-5                                           # the median sees only the pile
    assert piled[0] == pytest.approx(0.5) and piled[1] == pytest.approx(1.0)


def _digits_auc(seed=0):
    """Handwritten digits, most pixels mostly blank: train on half of the rows of digits
    1-9, score the other half and 50 zeros."""
    d = load_digits()
    rng = np.random.RandomState(seed)
    normal = rng.permutation(np.flatnonzero(d.target != 0))
    zeros = rng.choice(np.flatnonzero(d.target == 0), 50, replace=False)
    train, test = normal[: len(normal) // 2], np.r_[normal[len(normal) // 2:], zeros]
    det = TabularDetector(verbose=0).fit(d.data[train])
    return roc_auc_score((d.target[test] == 0).astype(int), det.decision_function(d.data[test]))


def test_mostly_blank_pixels_do_not_drown_the_digit(monkeypatch):
    """With the median alone, a rare stroke on a pixel that is blank in almost every
    training digit gets a huge weight and the score follows such strokes, not the digit."""
    with_piles = _digits_auc()
    monkeypatch.setattr(tabular_detector, "PILED_SHARE", 2.0)       # no feature counts as piled
    median_only = _digits_auc()
    assert with_piles >= 0.75
    assert with_piles >= median_only + 0.08
