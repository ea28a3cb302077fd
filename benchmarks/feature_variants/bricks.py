"""The synthetic bricks of tests/test_features.py as a benchmark set: 24 training images, 8
clean and 8 scratched test images, and the image and pixel ROC-AUC of a fitted detector."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests"))
import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from test_features import _bricks

torch.set_num_threads(1)
train, _ = _bricks(0, 24)
good, _ = _bricks(1, 8)
bad, masks = _bricks(2, 8, scratch=True)
truth = np.concatenate([np.zeros_like(masks), masks])


def aucs(det, score=None) -> str:
    """``"image / pixel"`` ROC-AUC of ``det`` (fitted on ``train``) on the test bricks."""
    s = np.r_[det.decision_function(good, score=score), det.decision_function(bad, score=score)]
    maps = np.concatenate([det.anomaly_map(good, score=score), det.anomaly_map(bad, score=score)])
    return f"{roc_auc_score([0] * 8 + [1] * 8, s):.3f} / {roc_auc_score(truth.ravel(), maps.ravel()):.3f}"
