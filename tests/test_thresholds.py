import numpy as np
import pytest

from reconad.thresholds import rules as thresholds


def test_percentile_matches_hand_value():
    scores = np.arange(1, 101, dtype=float)  # 1..100
    # numpy's linear interpolation: position 0.95 * 99 = 94.05 -> 95 + 0.05 * 1
    assert thresholds.percentile(scores, 95) == pytest.approx(95.05)
    assert thresholds.compute("percentile", scores) == pytest.approx(95.05)


def test_mean_std_matches_hand_value():
    scores = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]  # mean 5, population std 2
    assert thresholds.mean_std(scores, 3) == pytest.approx(11.0)
    assert thresholds.compute("mean_std", scores, param=1) == pytest.approx(7.0)


def test_target_fpr_flags_at_most_that_share_of_normals():
    scores = np.arange(1, 21, dtype=float)  # 20 normal scores
    t = thresholds.target_fpr(scores, 0.1)  # at most 2 of 20 above
    assert t == 18.0
    assert (scores > t).sum() == 2
    assert thresholds.target_fpr(scores, 0.0) == 20.0


def test_best_f1_by_hand():
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9])
    y = np.array([0, 0, 0, 1, 0, 1, 1, 1])
    # cut between 0.3 and 0.4 flags 5: tp 4 fp 1 -> F1 8/9; cut between 0.4 and 0.6 -> tp 3, fn 1 -> 0.857
    t = thresholds.best_f1(scores, y)
    assert t == pytest.approx(0.35)
    assert ((scores > t) == np.array([0, 0, 0, 1, 1, 1, 1, 1], bool)).all()


def test_youden_by_hand():
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9])
    y = np.array([0, 0, 0, 1, 0, 1, 1, 1])
    # cut at 0.65: tpr 3/4, fpr 0 -> J 0.75; cut at 0.35: tpr 1, fpr 1/4 -> J 0.75; the first (higher) wins
    assert thresholds.youden(scores, y) == pytest.approx(0.65)


def test_ties_are_never_split():
    scores = np.array([1.0, 1.0, 1.0, 2.0, 2.0])
    y = np.array([0, 1, 0, 1, 1])
    t = thresholds.best_f1(scores, y)
    assert t == pytest.approx(1.5)


def test_labels_restrict_unsupervised_rules_to_normals():
    scores = np.array([1.0, 2.0, 3.0, 100.0])
    y = np.array([0, 0, 0, 1])
    assert thresholds.compute("percentile", scores, y=y, param=100) == 3.0


@pytest.mark.parametrize("bad", [[], [np.nan, 1.0], [np.inf]])
def test_bad_scores(bad):
    with pytest.raises(ValueError):
        thresholds.percentile(bad)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown threshold method"):
        thresholds.compute("median", [1.0])
    with pytest.raises(ValueError, match="needs labels"):
        thresholds.compute("f1", [1.0, 2.0])
    with pytest.raises(ValueError, match="both normal"):
        thresholds.best_f1([1.0, 2.0], [0, 0])
