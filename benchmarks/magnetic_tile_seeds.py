"""Magnetic tile, whole 32x32 images: how the GMM's image ROC-AUC varies with the seed,
and each score term of the GMM and the VAE on its own (same data and settings as
``magnetic_tile.py``).

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/magnetic_tile_seeds.py
"""

from __future__ import annotations

import numpy as np
from _common import machine, magnetic_tile_split, markdown_table, write_results
from magnetic_tile import WHOLE, WHOLE_MODELS, load
from sklearn.metrics import roc_auc_score

from reconad import ImageDetector

GMM_TERMS = ("nll", "unregularized", "elbo", "kl", "log_norm")
VAE_TERMS = ("unregularized", "elbo", "kl", "log_norm", "recon_kl")


def main() -> None:
    split = magnetic_tile_split()
    train = np.stack([load(p, WHOLE) for p in split["train"]])
    test = np.stack([load(p, WHOLE) for p in split["test"]])
    y = np.asarray(split["test_labels"])
    rows, data = [], {"machine": machine(), "gmm": {}, "vae": {}}
    for seed in (0, 1, 2, 3):
        det = ImageDetector(verbose=0, random_state=seed, **WHOLE_MODELS["GMM"][0]).fit(train)
        aucs = {s: float(roc_auc_score(y, det.decision_function(test, score=s))) for s in GMM_TERMS}
        data["gmm"][seed] = aucs
        rows.append(["GMM", seed] + [aucs.get(s, "-") for s in ("nll", "unregularized", "elbo", "kl", "log_norm")]
                    + ["-"])
        print(rows[-1], flush=True)
    det = ImageDetector(verbose=0, random_state=0, **WHOLE_MODELS["VAE"][0]).fit(train)
    scores = {s: det.decision_function(test, score=s) for s in VAE_TERMS}
    aucs = {s: float(roc_auc_score(y, v)) for s, v in scores.items()}
    normal_std = {s: float(scores[s][y == 0].std()) for s in ("unregularized", "kl", "log_norm")}
    data["vae"] = {"roc_auc": aucs, "std_over_normal_test_images": normal_std}
    rows.append(["VAE", 0, "-", aucs["unregularized"], aucs["elbo"], aucs["kl"], aucs["log_norm"], aucs["recon_kl"]])
    md = "\n".join([
        "# Magnetic tile: seeds and single score terms (whole 32x32 images)",
        "",
        "Command: `OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/magnetic_tile_seeds.py`",
        "",
        f"Machine: {data['machine']}. Settings and preprocessing as in [magnetic_tile.md](magnetic_tile.md).",
        "",
        markdown_table(["model", "seed", "NLL", "unregularized (M)", "ELBO (D+A+M)", "D", "A", "recon+KL"], rows),
        "",
        "Spread over the defect-free test images of the VAE's terms (standard deviation): "
        + ", ".join(f"{k} {v:.1f}" for k, v in normal_std.items()) + ".",
    ])
    print("\n" + md)
    write_results("magnetic_tile_seeds", md, data)


if __name__ == "__main__":
    main()
