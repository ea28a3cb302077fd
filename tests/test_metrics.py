import numpy as np
import pytest

from reconad.evaluation import metrics


def test_evaluate_counts_and_scores():
    y = np.array([0, 0, 0, 1, 1])
    s = np.array([0.1, 0.2, 0.6, 0.5, 0.9])
    m = metrics.evaluate(y, s, threshold=0.4)
    assert m["confusion"] == {"tn": 2, "fp": 1, "fn": 0, "tp": 2}
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == 1.0
    assert m["f1"] == pytest.approx(0.8)
    assert m["roc_auc"] == pytest.approx(5 / 6)


def test_report_is_printable():
    y = np.array([0, 0, 1, 1])
    text = metrics.classification_report(y, np.array([0.1, 0.2, 0.8, 0.9]), 0.5)
    assert "ROC-AUC 1.0000" in text and "anomaly" in text and "confusion" in text
