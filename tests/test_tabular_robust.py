"""The default ``TabularDetector`` on awkward tables: outliers among the training rows,
constant and duplicated columns, heavy tails, a hundred rows, hundreds of columns."""

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from reconad import TabularDetector
from reconad.detectors.tabular import CODE_WEIGHT


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _parts(n, rng):
    """Rows of a process: a drives b (quadratic) and c (periodic); d is heavy-tailed,
    e skewed; f follows a and d."""
    a = rng.normal(size=n)
    d = rng.lognormal(0.0, 0.5, n)
    return np.c_[a, a**2 + 0.1 * rng.normal(size=n), np.sin(2 * a) + 0.1 * rng.normal(size=n), d,
                 rng.gamma(2.0, 1.0, n), a + d + 0.1 * rng.normal(size=n)]


def _bad_parts(n, rng):
    """Rows whose values each lie in the normal range but break the relations."""
    x = _parts(n, rng)
    x[:, 1] += rng.choice([-1, 1], n) * rng.uniform(2, 4, n)
    x[:, 5] -= 2.5
    return x


def test_outliers_in_training_rows_barely_move_normal_scores():
    rng = np.random.RandomState(0)
    clean, normal, planted, held_out_bad = _parts(1000, rng), _parts(500, rng), _bad_parts(50, rng), _bad_parts(50, rng)
    dirty = np.r_[clean, planted]                       # 50 of 1050 rows, about 5 %, are outliers
    # three seeds: one pair of fits alone moves by 0.1 or more from seed to seed
    on_clean = [TabularDetector(verbose=0, random_state=r).fit(clean) for r in range(3)]
    on_dirty = [TabularDetector(verbose=0, random_state=r).fit(dirty) for r in range(3)]
    s_cleans = [d.decision_function(normal) for d in on_clean]
    s_dirties = [d.decision_function(normal) for d in on_dirty]
    # the order of the normal rows' scores moves about as little as with another seed
    rho_dirty = np.mean([spearmanr(c, d)[0] for c, d in zip(s_cleans, s_dirties)])
    rho_seed = np.mean([spearmanr(s_cleans[i], s_cleans[j])[0] for i, j in ((0, 1), (1, 2), (0, 2))])
    assert rho_dirty >= 0.7 and rho_dirty >= rho_seed - 0.1, (rho_dirty, rho_seed)
    (on_clean, s_clean), (on_dirty, s_dirty) = (on_clean[0], s_cleans[0]), (on_dirty[0], s_dirties[0])
    # their typical score hardly changes
    assert np.median(s_dirty) == pytest.approx(np.median(s_clean), rel=0.25)
    # and the outliers are still found: both the planted ones and new ones
    y = np.r_[np.zeros(len(normal)), np.ones(50)]
    auc_clean = roc_auc_score(y, np.r_[s_clean, on_clean.decision_function(held_out_bad)])
    auc_dirty = roc_auc_score(y, np.r_[s_dirty, on_dirty.decision_function(held_out_bad)])
    assert auc_clean > 0.97 and auc_dirty > auc_clean - 0.03, (auc_clean, auc_dirty)
    assert roc_auc_score(y, np.r_[s_dirty, on_dirty.decision_function(planted)]) > 0.95


def test_contamination_flags_the_planted_rows():
    rng = np.random.RandomState(1)
    dirty = np.r_[_parts(950, rng), _bad_parts(50, rng)]
    det = TabularDetector(contamination=0.05, verbose=0).fit(dirty)
    flagged = det.decision_scores_ > det.threshold_
    assert flagged.mean() == pytest.approx(0.05, abs=0.01)
    truth = np.r_[np.zeros(950), np.ones(50)]
    assert roc_auc_score(truth, det.decision_scores_) > 0.95  # the planted rows score high
    assert flagged[950:].mean() > 0.4                   # about half of them are in the top 5 %


def test_constant_and_duplicated_columns():
    rng = np.random.RandomState(2)
    x = _parts(400, rng)
    table = np.c_[x, np.full(400, 7.0), x[:, 0]]        # a constant column and a copy of a
    det = TabularDetector(verbose=0).fit(table)
    scores = det.decision_function(table)
    assert np.isfinite(scores).all()
    moved = table[:5].copy()
    moved[:, 6] = 8.0                                   # the constant column changes
    assert det.decision_function(moved).min() > scores.max()


def test_one_row_repeated_is_refused():
    row = np.arange(5.0)
    with pytest.raises(ValueError, match="all 50 training rows are the same row"):
        TabularDetector(verbose=0).fit(np.tile(row, (50, 1)))
    with pytest.raises(ValueError, match="need at least 2 normal rows"):
        TabularDetector(verbose=0).fit(row[None, :])


def test_hundred_rows():
    rng = np.random.RandomState(3)
    det = TabularDetector(verbose=0).fit(_parts(100, rng))
    normal, bad = det.decision_function(_parts(200, rng)), det.decision_function(_bad_parts(20, rng))
    assert roc_auc_score(np.r_[np.zeros(200), np.ones(20)], np.r_[normal, bad]) > 0.9


def test_three_hundred_columns():
    rng = np.random.RandomState(4)
    factors = rng.normal(size=(600, 5))
    mixing = rng.normal(size=(5, 300))
    table = factors @ mixing + 0.1 * rng.normal(size=(600, 300))  # 300 columns on 5 factors
    det = TabularDetector(verbose=0).fit(table[:500])
    normal = det.decision_function(table[500:])
    bad = table[500:520].copy()
    bad[:, :30] = rng.normal(scale=table.std(0)[:30], size=(20, 30))  # a tenth of the columns off
    assert det.n_features_ == 300 and np.isfinite(normal).all()
    assert roc_auc_score(np.r_[np.zeros(100), np.ones(20)], np.r_[normal, det.decision_function(bad)]) > 0.95


def test_robust_scaling_ignores_extreme_rows():
    rng = np.random.RandomState(5)
    x = rng.normal(size=(500, 2))
    x[:5, 0] = 1e6                                      # five extreme values
    det = TabularDetector(verbose=0, epochs=1).fit(x)
    assert det.encoder_.scale_[0] == pytest.approx(1.0, rel=0.2)   # the IQR of the normal rows


def test_bad_settings():
    x = _parts(50, np.random.RandomState(6))
    with pytest.raises(ValueError, match="trim must be in"):
        TabularDetector(trim=0.5).fit(x)
    with pytest.raises(ValueError, match="members must be"):
        TabularDetector(members=0).fit(x)
    with pytest.raises(ValueError, match="combine must be"):
        TabularDetector(combine="max").fit(x)
    with pytest.raises(ValueError, match="subsample must be"):
        TabularDetector(subsample=0).fit(x)
    with pytest.raises(ValueError, match="subsample must be"):
        TabularDetector(subsample=1.5).fit(x)


def test_median_combination_is_the_middle_member_score():
    rng = np.random.RandomState(7)
    x, rows = _parts(400, rng), np.r_[_parts(20, rng), _bad_parts(20, rng)]
    det = TabularDetector(verbose=0, members=3, combine="median", epochs=5).fit(x)
    with torch.no_grad():
        errors = det._feature_errors(torch.from_numpy(det._matrix(rows))).numpy()
    per_member = (errors / det.error_scale_[:, None, :]).mean(2)         # (3, rows)
    per_member = per_member / det.member_scale_[:, None]                 # each member's training median
    with torch.no_grad():                                                # and the code term, at half weight
        xb = torch.from_numpy(det._matrix(rows)).float()
        surprise = det._code_surprise(det.model_.codes(xb.unsqueeze(0).expand(3, -1, -1))).numpy()
    per_member = per_member + CODE_WEIGHT * surprise / det.code_scale_[:, None]
    np.testing.assert_allclose(det.decision_function(rows), np.median(per_member, 0), rtol=1e-5)
    det.set_params(combine="mean")
    np.testing.assert_allclose(det.decision_function(rows), per_member.mean(0), rtol=1e-5)
