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
