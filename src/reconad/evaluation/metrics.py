"""Evaluation numbers for labelled scores, built on scikit-learn."""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm


def evaluate(y_true, scores, threshold: float) -> dict:
    """ROC-AUC, PR-AUC (average precision), precision, recall, F1 and the confusion
    matrix at ``threshold`` (score > threshold means anomaly, label 1)."""
    y = np.asarray(y_true).astype(int).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"{y.size} labels for {s.size} scores")
    pred = (s > threshold).astype(int)
    both = len(np.unique(y)) == 2
    tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1]).ravel()
    return {
        "n": int(y.size),
        "n_anomalous": int(y.sum()),
        "roc_auc": float(skm.roc_auc_score(y, s)) if both else float("nan"),
        "pr_auc": float(skm.average_precision_score(y, s)) if both else float("nan"),
        "threshold": float(threshold),
        "precision": float(skm.precision_score(y, pred, zero_division=0)),
        "recall": float(skm.recall_score(y, pred, zero_division=0)),
        "f1": float(skm.f1_score(y, pred, zero_division=0)),
        "confusion": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
    }


def classification_report(y_true, scores, threshold: float) -> str:
    """A printable report: threshold-free numbers, then scikit-learn's per-class table."""
    m = evaluate(y_true, scores, threshold)
    c = m["confusion"]
    pred = (np.asarray(scores) > threshold).astype(int)
    lines = [
        f"ROC-AUC {m['roc_auc']:.4f}   PR-AUC {m['pr_auc']:.4f}   threshold {threshold:.6g}",
        "",
        skm.classification_report(
            np.asarray(y_true).astype(int), pred, labels=[0, 1],
            target_names=["normal", "anomaly"], digits=4, zero_division=0,
        ),
        "confusion matrix (rows: true, columns: predicted)",
        "              normal  anomaly",
        f"  normal  {c['tn']:>10d} {c['fp']:>8d}",
        f"  anomaly {c['fn']:>10d} {c['tp']:>8d}",
    ]
    return "\n".join(lines)


def _flatten_pairs(masks, maps) -> tuple[list[np.ndarray], list[np.ndarray]]:
    masks = [_defects(m) for m in masks]
    maps = [_floats(m) for m in maps]
    if len(masks) != len(maps):
        raise ValueError(f"{len(masks)} masks for {len(maps)} maps")
    for i, (a, b) in enumerate(zip(masks, maps)):
        if a.shape != b.shape:
            raise ValueError(f"mask {i} is {a.shape} but its map is {b.shape}")
    return masks, maps


def _defects(mask) -> np.ndarray:
    """A mask as booleans (defect = value > 0), boolean masks as they are."""
    mask = np.asarray(mask)
    return mask if mask.dtype == bool else mask > 0


def _floats(m) -> np.ndarray:
    """A map as floats, float32 maps as they are (no copy at twice the size)."""
    m = np.asarray(m)
    return m if m.dtype in (np.float32, np.float64) else m.astype(np.float64)


def _normal_sorted(masks, maps) -> np.ndarray:
    """The defect-free pixels' scores of all images, sorted (filled image by image into one
    array: no list of copies to join)."""
    counts = [k.size - int(np.count_nonzero(k)) for k in masks]
    normal = np.empty(sum(counts), dtype=np.result_type(*maps) if maps else np.float64)
    start = 0
    for k, m, n in zip(masks, maps, counts):
        normal[start:start + n] = m[~k]
        start += n
    normal.sort()
    return normal


def _pixel_roc_auc(masks, maps, normal_sorted: np.ndarray) -> float:
    """ROC-AUC of the defect pixels against the defect-free ones: the share of (defect,
    defect-free) pairs ranked right, ties counting half (as ``roc_auc_score``), counted
    against the sorted defect-free scores, so that no array larger than them is made."""
    below = ties = 0.0
    n_defect = 0
    for k, m in zip(masks, maps):
        d = m[k].astype(normal_sorted.dtype, copy=False)
        left = np.searchsorted(normal_sorted, d, side="left")
        below += float(left.sum())
        ties += float((np.searchsorted(normal_sorted, d, side="right") - left).sum())
        n_defect += d.size
    return (below + 0.5 * ties) / (n_defect * normal_sorted.size)


def _lowest_at_least(thresholds: np.ndarray, dtype) -> np.ndarray:
    """Each threshold as the lowest value of ``dtype`` at or above it: a score of that type is
    >= the one exactly when it is >= the other, and ``searchsorted`` against scores of that
    type then makes no copy of them at a wider type."""
    out = thresholds.astype(dtype)
    below = out < thresholds
    out[below] = np.nextafter(out[below], np.inf)
    return out


def aupro(masks, maps, max_fpr: float = 0.3, n_steps: int = 300, normal_sorted: np.ndarray | None = None) -> float:
    """Area under the per-region-overlap curve up to ``max_fpr``, divided by ``max_fpr``.

    For a threshold t, the false-positive rate is the share of defect-free pixels with a
    score >= t, and PRO is the mean over connected defect regions (8-connected, per
    image) of the share of the region's pixels with a score >= t. Thresholds are the
    quantiles of the defect-free pixel scores at ``n_steps`` rates from 0 to ``max_fpr``.
    """
    from scipy import ndimage

    masks, maps = _flatten_pairs(masks, maps)
    normal_sorted = _normal_sorted(masks, maps) if normal_sorted is None else normal_sorted
    regions = []
    for k, m in zip(masks, maps):
        labels, n = ndimage.label(k, structure=np.ones((3, 3)))
        if n:
            where = np.flatnonzero(labels)  # the defect pixels only, grouped by region below
            lab = labels.ravel()[where]
            order = np.argsort(lab, kind="stable")
            lab, vals = lab[order], m.ravel()[where[order]]
            cuts = np.searchsorted(lab, np.arange(2, n + 1))
            regions += [np.sort(v) for v in np.split(vals, cuts)]
    if not regions or normal_sorted.size == 0:
        return float("nan")
    fprs = np.linspace(0.0, max_fpr, n_steps + 1)
    # the first threshold lies just above every defect-free pixel: false-positive rate 0
    # (quantiles of the sorted scores, as np.quantile's linear rule)
    q = (1.0 - fprs[1:]) * (normal_sorted.size - 1)
    lo = np.floor(q).astype(np.int64)
    hi = np.minimum(lo + 1, normal_sorted.size - 1)
    quantiles = normal_sorted[lo] + (q - lo) * (normal_sorted[hi].astype(np.float64) - normal_sorted[lo])
    thresholds = _lowest_at_least(np.r_[np.nextafter(np.float64(normal_sorted[-1]), np.inf), quantiles],
                                  normal_sorted.dtype)
    fpr_actual = 1.0 - np.searchsorted(normal_sorted, thresholds, side="left") / normal_sorted.size
    pro = np.mean([1.0 - np.searchsorted(r, thresholds, side="left") / r.size for r in regions], axis=0)
    fpr_actual = np.clip(fpr_actual, 0.0, max_fpr)
    if fpr_actual[-1] < max_fpr:  # ties or few pixels: carry the last PRO to max_fpr
        fpr_actual, pro = np.r_[fpr_actual, max_fpr], np.r_[pro, pro[-1]]
    trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy < 2 has only trapz
    return float(trapezoid(pro, fpr_actual) / max_fpr)


def localization_metrics(masks, maps, max_fpr: float = 0.3) -> dict:
    """Pixel-level ROC-AUC over all pixels of all images and AUPRO (up to ``max_fpr``).
    ``masks`` and ``maps`` are sequences of ``(H, W)`` arrays (sizes may differ per image);
    mask pixels > 0 are defects."""
    masks, maps = _flatten_pairs(masks, maps)
    n_pixels = sum(k.size for k in masks)
    n_defect = sum(int(k.sum()) for k in masks)
    if not 0 < n_defect < n_pixels:
        return {"pixel_roc_auc": float("nan"), "aupro": float("nan"), "n_pixels": n_pixels,
                "n_defect_pixels": n_defect}
    normal_sorted = _normal_sorted(masks, maps)
    return {"pixel_roc_auc": _pixel_roc_auc(masks, maps, normal_sorted),
            "aupro": aupro(masks, maps, max_fpr, normal_sorted=normal_sorted),
            "n_pixels": n_pixels, "n_defect_pixels": n_defect}
# --- series metrics -----------------------------------------------------------------------

def _ranges(labels: np.ndarray) -> np.ndarray:
    """``(k, 2)`` start and end (inclusive) of each run of non-zero labels."""
    pos = np.r_[0, (np.asarray(labels) > 0).astype(np.int8), 0]
    edges = np.flatnonzero(np.diff(pos))
    return edges.reshape(-1, 2) - np.array([0, 1])


def point_adjust(y_true, y_pred) -> np.ndarray:
    """Point-adjusted predictions: every step of a true anomaly range counts as detected
    when at least one of its steps is flagged (the lenient protocol of many papers; it
    inflates scores, so it is reported apart, never as plain F1)."""
    y = np.asarray(y_true).astype(int).ravel()
    p = np.asarray(y_pred).astype(int).ravel().copy()
    for s, e in _ranges(y):
        if p[s:e + 1].any():
            p[s:e + 1] = 1
    return p


def binary_counts(y_true, y_pred) -> dict:
    """Pointwise confusion counts and F1 = TP / (TP + (FP + FN) / 2), FAR = FP / (FP + TN),
    MAR = FN / (FN + TP)."""
    y = np.asarray(y_true).astype(bool).ravel()
    p = np.asarray(y_pred).astype(bool).ravel()
    if y.shape != p.shape:
        raise ValueError(f"{y.size} labels for {p.size} predictions")
    tp, fp = int((y & p).sum()), int((~y & p).sum())
    fn, tn = int((y & ~p).sum()), int((~y & ~p).sum())
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "f1": tp / (tp + (fp + fn) / 2) if tp + fp + fn else 0.0,
            "far": fp / (fp + tn) if fp + tn else 0.0,
            "mar": fn / (fn + tp) if fn + tp else 0.0}


def _buffered_labels(y: np.ndarray, buffer: int) -> np.ndarray:
    """Soft labels of the range-based PR curve: 1 inside a true range; outside, within
    ``buffer // 2`` steps of it, ``sqrt(1 - d / buffer)`` at distance ``d`` (capped at 1)."""
    soft = y.astype(np.float64)
    half = buffer // 2
    if half == 0:
        return soft
    n = len(y)
    d = np.arange(1, half + 1)
    w = np.sqrt(1 - d / buffer)
    for s, e in _ranges(y):
        after = e + d
        soft[after[after < n]] += w[after < n]
        before = s - d
        soft[before[before >= 0]] += w[before >= 0]
    return np.minimum(soft, 1.0)


def _check_pair(y_true, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).astype(int).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"{y.size} labels for {s.size} scores")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or infinite values")
    return y, s


def _range_ap(y: np.ndarray, order: np.ndarray, rank: np.ndarray, last: np.ndarray, buffer: int) -> float:
    soft = _buffered_labels(y, buffer)
    ranges = _ranges(soft)
    p_new = (y.sum() + soft.sum()) / 2
    tp = np.cumsum(soft[order])
    # the rank at which each (buffered) range is first flagged; ranges hit among the top k
    lengths = ranges[:, 1] - ranges[:, 0] + 1
    seg_of = np.repeat(np.arange(len(ranges)), lengths)
    members = np.concatenate([np.arange(a, b + 1) for a, b in ranges])
    first_hit = np.full(len(ranges), len(y))
    np.minimum.at(first_hit, seg_of, rank[members])
    hit = np.searchsorted(np.sort(first_hit), np.arange(len(y)), side="right")
    recall = np.r_[0.0, (np.minimum(tp / p_new, 1.0) * hit / len(ranges))[last]]
    precision = np.r_[1.0, (tp / np.arange(1, len(y) + 1))[last]]
    # trapezoids between consecutive thresholds, from (recall 0, precision 1)
    return float(np.sum(np.diff(recall) * (precision[1:] + precision[:-1]) / 2))


def _ranking(s: np.ndarray):
    order = np.argsort(-s, kind="stable")
    rank = np.empty(len(s), dtype=np.int64)
    rank[order] = np.arange(len(s))
    sorted_s = s[order]
    last = np.r_[sorted_s[1:] != sorted_s[:-1], True]  # a threshold after each tie group
    return order, rank, last


def range_pr_auc(y_true, scores, buffer: int) -> float:
    """Area under the range-based precision-recall curve for one buffer length
    (Paparrizos et al., VLDB 2022). Labels become soft (see ``_buffered_labels``); at
    each threshold (every distinct score; steps with score >= it are flagged)
    TP = sum of the soft labels of flagged steps, recall = min(TP / P', 1) x (share of
    the buffered anomaly ranges with a flagged step), P' = (P + sum of soft labels) / 2,
    precision = TP / flagged steps; the area is summed by trapezoids over the thresholds,
    from (recall 0, precision 1), as in the authors' reference code."""
    y, s = _check_pair(y_true, scores)
    if y.sum() == 0:
        return float("nan")
    return _range_ap(y, *_ranking(s), int(buffer))


def vus_pr(y_true, scores, max_buffer: int = 120) -> float:
    """Volume under the range-based PR surface (VUS-PR, Paparrizos et al., VLDB 2022):
    the mean of ``range_pr_auc`` over buffer lengths 0, 1, ..., ``max_buffer``."""
    y, s = _check_pair(y_true, scores)
    if y.sum() == 0:
        return float("nan")
    ranking = _ranking(s)
    return float(np.mean([_range_ap(y, *ranking, b) for b in range(int(max_buffer) + 1)]))


def series_evaluate(y_true, scores, threshold: float, max_buffer: int = 120) -> dict:
    """Per-step numbers for a series: ROC-AUC, PR-AUC, VUS-PR, pointwise F1/FAR/MAR at
    ``threshold`` and, apart, the point-adjusted F1 (``f1_point_adjusted``)."""
    y = np.asarray(y_true).astype(int).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    out = evaluate(y, s, threshold)
    pred = s > threshold
    out.update({k: v for k, v in binary_counts(y, pred).items() if k in ("far", "mar")})
    out["vus_pr"] = vus_pr(y, s, max_buffer) if y.any() else float("nan")
    out["f1_point_adjusted"] = binary_counts(y, point_adjust(y, pred))["f1"]
    return out
