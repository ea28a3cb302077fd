"""feature_knn with and without bank_scale="local" on the synthetic bricks of tests/test_features.py:
image and pixel ROC-AUC of the scratched bricks against clean ones."""
import sys; import os; sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests"))
import numpy as np, torch
torch.set_num_threads(1)
from test_features import _bricks
from reconad import ImageDetector
from sklearn.metrics import roc_auc_score
train, _ = _bricks(0, 24); good, _ = _bricks(1, 8); bad, masks = _bricks(2, 8, scratch=True)
S8 = {"stages": ("s8", "s16", "s32"), "grid": "s16"}
for bs, kw in (("none", {}), ("local", {"bank_scale": "local"}), ("s8", S8), ("s8 + local", {**S8, "bank_scale": "local"})):
    det = ImageDetector(model="feature_knn", image_size=144, verbose=0, model_kwargs={"batch_vectors": 256, **kw}).fit(train)
    sg, sb = det.decision_function(good), det.decision_function(bad)
    maps = np.concatenate([det.anomaly_map(good), det.anomaly_map(bad)])
    t = np.concatenate([np.zeros_like(masks), masks])
    print(bs, "image", roc_auc_score([0]*8+[1]*8, np.r_[sg, sb]), "pixel", roc_auc_score(t.ravel(), maps.ravel()))
