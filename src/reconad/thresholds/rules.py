"""Threshold rules: from scores (and optionally labels) to one cut-off.

A sample is anomalous when its score is strictly greater than the threshold.
"""

from __future__ import annotations

import numpy as np

METHODS = ("percentile", "mean_std", "fpr", "margin", "f1", "youden")
DEFAULTS = {"percentile": 95.0, "mean_std": 3.0, "fpr": 0.05, "margin": 2.0}
MARGIN_QUANTILE = 0.999


def _check_scores(scores) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if scores.size == 0:
        raise ValueError("cannot set a threshold from an empty set of scores")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores contain NaN or infinite values")
    return scores


def percentile(scores, q: float = 95.0) -> float:
    """The q-th percentile of (normal) scores."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be in [0, 100], got {q}")
    return float(np.percentile(_check_scores(scores), q))


def mean_std(scores, k: float = 3.0) -> float:
    """Mean plus k standard deviations of (normal) scores."""
    s = _check_scores(scores)
    return float(s.mean() + k * s.std())


def target_fpr(scores, fpr: float = 0.05) -> float:
    """The smallest threshold that flags at most a fraction ``fpr`` of the normal scores."""
    if not 0 <= fpr < 1:
        raise ValueError(f"target false-positive rate must be in [0, 1), got {fpr}")
    s = np.sort(_check_scores(scores))[::-1]
    allowed = int(np.floor(fpr * s.size + 1e-9))  # this many may lie above the threshold
    return float(s[allowed]) if allowed < s.size else float(s[-1])


def margin(scores, factor: float = 2.0, q: float = MARGIN_QUANTILE) -> float:
    """``factor`` times the ``q``-quantile (0.999) of (normal) scores: a threshold at a
    safe distance above nearly all of them. With scores of the very data a model was
    trained on, which it rebuilds better than new normal data, the factor is that
    distance (the SKAB protocol uses the 0.999 quantile of the training windows x 4/3)."""
    if not factor > 0:
        raise ValueError(f"margin factor must be positive, got {factor}")
    if not 0 <= q <= 1:
        raise ValueError(f"quantile q must be in [0, 1], got {q}")
    return float(np.quantile(_check_scores(scores), q) * factor)


def _cuts(scores, y):
    """Candidate cuts between distinct sorted scores, with TP and FP counts above each."""
    s = _check_scores(scores)
    y = np.asarray(y).ravel().astype(int)
    if y.shape != s.shape:
        raise ValueError(f"{y.size} labels for {s.size} scores")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (normal) or 1 (anomaly)")
    if y.min() == y.max():
        raise ValueError("labels must contain both normal (0) and anomalous (1) samples")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    tp = np.cumsum(y)
    fp = np.cumsum(1 - y)
    # a cut after position i is valid where the next score is strictly lower
    last = np.r_[s[1:] < s[:-1], True]
    nxt = np.r_[s[1:], s[-1] - 1.0]
    thresholds = (s + nxt) / 2.0
    thresholds[-1] = s[-1] - max(1e-12, abs(s[-1]) * 1e-12)
    # the cut that flags nothing at all
    tp = np.r_[0, tp[last]]
    fp = np.r_[0, fp[last]]
    thresholds = np.r_[s[0], thresholds[last]]
    return thresholds, tp, fp, int(y.sum()), int((1 - y).sum())


def best_f1(scores, y) -> float:
    """The threshold with the best F1 on labelled scores (ties: the highest threshold)."""
    thresholds, tp, fp, pos, _ = _cuts(scores, y)
    fn = pos - tp
    f1 = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    return float(thresholds[int(np.argmax(f1))])


def youden(scores, y) -> float:
    """The threshold at the ROC point farthest above the diagonal (max TPR - FPR)."""
    thresholds, tp, fp, pos, neg = _cuts(scores, y)
    j = tp / pos - fp / neg
    return float(thresholds[int(np.argmax(j))])


def compute(method: str, scores, y=None, param: float | None = None) -> float:
    """Apply threshold rule ``method``. Unsupervised rules use only normal scores (y == 0)
    when labels are given; ``f1`` and ``youden`` need labels."""
    if method not in METHODS:
        raise ValueError(f"unknown threshold method {method!r}; choose one of {', '.join(METHODS)}")
    if method in ("f1", "youden"):
        if y is None:
            raise ValueError(f"threshold method {method!r} needs labels y")
        return best_f1(scores, y) if method == "f1" else youden(scores, y)
    scores = _check_scores(scores)
    if y is not None:
        y = np.asarray(y).ravel()
        if y.shape != scores.shape:
            raise ValueError(f"{y.size} labels for {scores.size} scores")
        scores = scores[y == 0]
    p = DEFAULTS[method] if param is None else float(param)
    if method == "percentile":
        return percentile(scores, p)
    if method == "mean_std":
        return mean_std(scores, p)
    if method == "margin":
        return margin(scores, p)
    return target_fpr(scores, p)
