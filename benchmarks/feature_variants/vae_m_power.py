"""feature_vae's code score with M as a distance: (M / median)^0.5 + code distance / median,
against the default M / median + code distance / median, from one fit (defaults, 20 epochs)
on a planted-defect surface (120 training and 30 test images at 1x, as
``benchmarks/planted_defects.py``) or on the synthetic bricks of the tests (``bricks24``).
Prints the mean image and pixel ROC-AUC of each.

    python vae_m_power.py tiles|brick|grass|gravel|bricks24
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np
import torch

from reconad.detectors import features as fd

torch.set_num_threads(1)
surface = sys.argv[1]


def with_power(det, code_maps, m_maps, power):
    """The code score's maps with M over its median raised to ``power`` (1: the default)."""
    s0 = float(det.code_scale_[0])
    return [(m / s0).clamp_min(0).pow(power) + (c - m / s0) for c, m in zip(code_maps, m_maps)]


if surface == "bricks24":
    from bricks import bad, good, train, truth
    from sklearn.metrics import roc_auc_score

    from reconad import ImageDetector
    det = ImageDetector(model="feature_vae", image_size=144, verbose=0, epochs=20).fit(train)
    images = np.concatenate([good, bad])
    feats, sizes = fd.extract_features(det, images)
    code, m = fd.score_maps(det, feats, "code"), fd.score_maps(det, feats, "unregularised")
    for power in (1.0, 0.5):
        maps = with_power(det, code, m, power)
        image = roc_auc_score([0] * len(good) + [1] * len(bad), fd.image_scores(det, maps))
        pixel = roc_auc_score(truth.ravel(), np.stack(fd.image_maps(det, maps, sizes)).ravel())
        print(f"bricks24, power {power}: image {image:.4f} pixel {pixel:.4f}", flush=True)
else:
    from planted_defects import build_sets, evaluate, run
    train, test, masks, conditions = build_sets(120, 30, surface=surface)
    det, code, sizes, _ = run("feature_vae", {}, {"epochs": 20}, train, test, {})
    m = fd.score_maps(det, fd.extract_features(det, test)[0], "unregularised")
    for power in (1.0, 0.5):
        maps = with_power(det, code, m, power)
        per = evaluate(fd.image_maps(det, maps, sizes), fd.image_scores(det, maps), masks, conditions)
        print(f"{surface}, power {power}: image {np.mean([v['image_auc'] for v in per.values()]):.4f} "
              f"pixel {np.nanmean([v['pixel_auc'] for v in per.values()]):.4f}", flush=True)
