"""feature_knn with each EfficientNet-Lite backbone and several coreset seeds (the random
training locations pooled and the coreset's start): how much of the difference between
backbones is larger than the spread over seeds. Features extracted once per backbone.

    python backbone_seeds.py [--backbones efficientnet_lite0,efficientnet_lite1,efficientnet_lite2] [--seeds 0,1,2]
"""
import argparse
import os
import sys

import numpy as np
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from _common import magnetic_tile_split  # noqa: E402

from reconad import ImageDetector  # noqa: E402
from reconad.detectors import features as fd  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--backbones", default="efficientnet_lite0,efficientnet_lite1,efficientnet_lite2")
ap.add_argument("--seeds", default="0,1,2")
args = ap.parse_args()
torch.set_num_threads(1)
split = magnetic_tile_split()
train, test = [str(p) for p in split["train"]], [str(p) for p in split["test"]]
y = np.array(split["test_labels"])
masks = [np.asarray(Image.open(p).convert("L")) > 127 for p in split["test_masks"]]
truth = np.concatenate([k.ravel() for k in masks])
for backbone in args.backbones.split(","):
    det = ImageDetector(model="feature_knn", backbone=backbone, verbose=0)
    fd.load_pyramid(det)
    train_feats, _ = fd.extract_features(det, train)
    test_feats, sizes = fd.extract_features(det, test)
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        det.set_params(random_state=seed)
        fd.fit_features(det, train_feats)
        maps = fd.score_maps(det, test_feats)
        image = roc_auc_score(y, fd.image_scores(det, maps))
        full = fd.anomaly_maps_from_features(det, test_feats, sizes)
        pixel = roc_auc_score(truth, np.concatenate([m.ravel() for m in full]).astype(np.float32))
        rows.append((image, pixel))
        print(f"{backbone} seed {seed}: image {image:.4f} pixel {pixel:.4f}", flush=True)
    a = np.array(rows)
    print(f"{backbone}: image {a[:, 0].mean():.4f} (range {np.ptp(a[:, 0]):.4f}), "
          f"pixel {a[:, 1].mean():.4f} (range {np.ptp(a[:, 1]):.4f})", flush=True)
