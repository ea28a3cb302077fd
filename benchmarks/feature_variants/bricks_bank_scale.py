"""feature_knn with bank_scale "none" and "local" on the synthetic bricks of tests/test_features.py,
for banks that keep a share of the 2376 training vectors (1.0: all of them, the default's bank
there): image and pixel ROC-AUC of the scratched bricks against clean ones. Also the stages
s16 + s32 alone with every vector kept.

    python bricks_bank_scale.py [shares, default 1,0.84,0.63,0.5,0.38,0.33,0.25,0.17,0.08]
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
shares = [float(s) for s in (sys.argv[1] if len(sys.argv) > 1 else "1,0.84,0.63,0.5,0.38,0.33,0.25,0.17,0.08").split(",")]
POOL = 2376  # 24 bricks of 144 x 144 pixels: 9 x 11 s16 locations each
runs = [("s16 + s32, all", {"stages": ("s16", "s32"), "grid": None, "memory_size": POOL})]
runs += [(f"{share:.2f} of the vectors", {"memory_size": max(1, round(share * POOL))}) for share in shares]
print("| bank | plain: image / pixel | local: image / pixel |\n|---|---|---|")
for name, kw in runs:
    cells = []
    for scale in ("none", "local"):
        det = ImageDetector(model="feature_knn", image_size=144, verbose=0,
                            model_kwargs={"batch_vectors": 256, "bank_scale": scale, **kw}).fit(train)
        s = np.r_[det.decision_function(good), det.decision_function(bad)]
        maps = np.concatenate([det.anomaly_map(good), det.anomaly_map(bad)])
        cells.append(f"{roc_auc_score([0] * 8 + [1] * 8, s):.3f} / {roc_auc_score(truth.ravel(), maps.ravel()):.3f}")
    print(f"| {name} ({len(det.memory_bank_)}) | {cells[0]} | {cells[1]} |", flush=True)
