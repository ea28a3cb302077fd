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
        f"              normal  anomaly",
        f"  normal  {c['tn']:>10d} {c['fp']:>8d}",
        f"  anomaly {c['fn']:>10d} {c['tp']:>8d}",
    ]
    return "\n".join(lines)


def _flatten_pairs(masks, maps) -> tuple[list[np.ndarray], list[np.ndarray]]:
    masks = [np.asarray(m) > 0 for m in masks]
    maps = [np.asarray(m, dtype=np.float64) for m in maps]
    if len(masks) != len(maps):
        raise ValueError(f"{len(masks)} masks for {len(maps)} maps")
    for i, (a, b) in enumerate(zip(masks, maps)):
        if a.shape != b.shape:
            raise ValueError(f"mask {i} is {a.shape} but its map is {b.shape}")
    return masks, maps


def aupro(masks, maps, max_fpr: float = 0.3, n_steps: int = 300) -> float:
    """Area under the per-region-overlap curve up to ``max_fpr``, divided by ``max_fpr``.

    For a threshold t, the false-positive rate is the share of defect-free pixels with a
    score >= t, and PRO is the mean over connected defect regions (8-connected, per
    image) of the share of the region's pixels with a score >= t. Thresholds are the
    quantiles of the defect-free pixel scores at ``n_steps`` rates from 0 to ``max_fpr``.
    """
    from scipy import ndimage

    masks, maps = _flatten_pairs(masks, maps)
    normal = np.concatenate([m[~k] for k, m in zip(masks, maps)])
    regions = []
    for k, m in zip(masks, maps):
        labels, n = ndimage.label(k, structure=np.ones((3, 3)))
        if n:
            order = np.argsort(labels.ravel(), kind="stable")
            lab, vals = labels.ravel()[order], m.ravel()[order]
            cuts = np.searchsorted(lab, np.arange(1, n + 1))
            regions += [np.sort(v) for v in np.split(vals, cuts)[1:]]
    if not regions or normal.size == 0:
        return float("nan")
    fprs = np.linspace(0.0, max_fpr, n_steps + 1)
    # the first threshold lies just above every defect-free pixel: false-positive rate 0
    thresholds = np.r_[np.nextafter(normal.max(), np.inf), np.quantile(normal, 1.0 - fprs[1:])]
    normal_sorted = np.sort(normal)
    fpr_actual = 1.0 - np.searchsorted(normal_sorted, thresholds, side="left") / normal.size
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
    y = np.concatenate([k.ravel() for k in masks])
    s = np.concatenate([m.ravel() for m in maps])
    both = y.any() and not y.all()
    return {"pixel_roc_auc": float(skm.roc_auc_score(y, s)) if both else float("nan"),
            "aupro": aupro(masks, maps, max_fpr) if both else float("nan"),
            "n_pixels": int(y.size), "n_defect_pixels": int(y.sum())}
