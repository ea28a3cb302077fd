"""feature_knn with the default settings and each EfficientNet-Lite backbone on the synthetic
bricks of tests/test_features.py (24 training images; 8 clean and 8 scratched test images):
image and pixel ROC-AUC.

    python bricks_backbone.py [efficientnet_lite0,efficientnet_lite1,efficientnet_lite2]
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests"))
import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from test_features import _bricks

from reconad import ImageDetector

torch.set_num_threads(1)
train, _ = _bricks(0, 24)
good, _ = _bricks(1, 8)
bad, masks = _bricks(2, 8, scratch=True)
truth = np.concatenate([np.zeros_like(masks), masks])
backbones = (sys.argv[1] if len(sys.argv) > 1 else "efficientnet_lite0,efficientnet_lite1,efficientnet_lite2").split(",")
print("| backbone | image / pixel ROC-AUC |\n|---|---|")
for backbone in backbones:
    det = ImageDetector(model="feature_knn", image_size=144, backbone=backbone, verbose=0,
                        model_kwargs={"batch_vectors": 256}).fit(train)
    s = np.r_[det.decision_function(good), det.decision_function(bad)]
    maps = np.concatenate([det.anomaly_map(good), det.anomaly_map(bad)])
    print(f"| {backbone} | {roc_auc_score([0] * 8 + [1] * 8, s):.3f} / {roc_auc_score(truth.ravel(), maps.ravel()):.3f} |",
          flush=True)
