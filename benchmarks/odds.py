"""ODDS tabular outlier sets: reconad AE and VAE against PyOD's AutoEncoder, VAE and
IForest, in one process, on the same splits and seeds.

Protocol (normal-only setting): for each set and seed, a random half of the normal rows
is the training set (labels never used; at most --max-train of them, to bound the time); the test set is the other normal rows plus all
outliers. Every detector sees exactly these rows. ROC-AUC on the test set, averaged over
the seeds; fit time and scoring time (whole test set) in seconds, summed over the seeds.
The autoencoders of both libraries train for the same number of epochs with the same batch
size and learning rate; PyOD's keep its own default architecture and preprocessing.

    pip install -e '.[bench]'      # PyOD, for this benchmark only
    python benchmarks/odds.py [--sets cardio,wbc] [--seeds 0,1,2] [--epochs 30] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
import torch
from _common import data_dir, machine, markdown_table, write_results
from sklearn.metrics import roc_auc_score

from reconad import TabularDetector

SETS = ["annthyroid", "breastw", "cardio", "ionosphere", "letter", "mammography", "pima",
        "satellite", "shuttle", "thyroid", "vowels", "wbc"]
DETECTORS = ["reconad AE", "reconad VAE", "PyOD AutoEncoder", "PyOD VAE", "PyOD IForest"]


def load_set(name: str) -> tuple[np.ndarray, np.ndarray]:
    d = np.load(data_dir() / "odds" / f"{name}.npz")
    return d["x"].astype(np.float64), d["y"].astype(int).ravel()


def split(y: np.ndarray, seed: int, max_train: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Training rows: a random half of the normal rows (at most ``max_train`` of them);
    test rows: the other half of the normal rows and all outliers."""
    rng = np.random.RandomState(seed)
    normal = rng.permutation(np.flatnonzero(y == 0))
    half = len(normal) // 2
    train = normal[:half] if max_train is None else normal[:min(half, max_train)]
    return train, np.sort(np.r_[normal[half:], np.flatnonzero(y == 1)])


def make(name: str, args, seed: int):
    common = dict(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr)
    if name == "reconad AE":
        return TabularDetector(model="ae", device="cpu", verbose=0, random_state=seed, **common)
    if name == "reconad VAE":
        return TabularDetector(model="vae", device="cpu", verbose=0, random_state=seed, **common)
    from pyod.models.auto_encoder import AutoEncoder
    from pyod.models.iforest import IForest
    from pyod.models.vae import VAE

    pyod_common = dict(epoch_num=args.epochs, batch_size=args.batch_size, lr=args.lr,
                       random_state=seed, verbose=0, device="cpu")
    if name == "PyOD AutoEncoder":
        return AutoEncoder(**pyod_common)
    if name == "PyOD VAE":
        return VAE(**pyod_common)
    return IForest(random_state=seed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--detectors", default=",".join(DETECTORS))
    ap.add_argument("--max-train", type=int, default=3000,
                    help="at most this many training rows (0: the whole normal half)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (same for all)")
    ap.add_argument("--no-write", action="store_true", help="print only (for trying settings)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    sets, seeds = args.sets.split(","), [int(s) for s in args.seeds.split(",")]
    detectors = args.detectors.split(",")
    results: dict = {"machine": machine(), "load_average_start": os.getloadavg(), "epochs": args.epochs,
                     "batch_size": args.batch_size, "lr": args.lr, "seeds": seeds,
                     "max_train": args.max_train, "sets": {}}
    for set_name in sets:
        X, y = load_set(set_name)
        per = {d: {"auc": [], "fit_s": 0.0, "score_s": 0.0} for d in detectors}
        for seed in seeds:
            tr, te = split(y, seed, args.max_train or None)
            for d in detectors:
                det = make(d, args, seed)
                t0 = time.perf_counter()
                det.fit(X[tr])
                t1 = time.perf_counter()
                scores = det.decision_function(X[te])
                t2 = time.perf_counter()
                per[d]["auc"].append(float(roc_auc_score(y[te], scores)))
                per[d]["fit_s"] += t1 - t0
                per[d]["score_s"] += t2 - t1
        results["sets"][set_name] = {
            "n": int(len(y)), "features": int(X.shape[1]), "outliers": int(y.sum()),
            "detectors": {d: {"roc_auc": float(np.mean(v["auc"])), "roc_auc_per_seed": v["auc"],
                              "fit_s": v["fit_s"], "score_s": v["score_s"]} for d, v in per.items()}}
        print(f"{set_name:12s} " + "  ".join(
            f"{d}: {np.mean(v['auc']):.3f} ({v['fit_s']:.1f}s)" for d, v in per.items()), flush=True)
    results["load_average_end"] = os.getloadavg()

    summary = {}
    for d in detectors:
        aucs = [results["sets"][s]["detectors"][d]["roc_auc"] for s in sets]
        summary[d] = {"mean_roc_auc": float(np.mean(aucs)),
                      "fit_s": float(sum(results["sets"][s]["detectors"][d]["fit_s"] for s in sets)),
                      "score_s": float(sum(results["sets"][s]["detectors"][d]["score_s"] for s in sets))}
    results["summary"] = summary
    rows = [[s] + [results["sets"][s]["detectors"][d]["roc_auc"] for d in detectors] for s in sets]
    rows.append(["**mean**"] + [summary[d]["mean_roc_auc"] for d in detectors])
    auc_table = markdown_table(["set"] + detectors, rows)
    time_rows = [[d, f"{summary[d]['mean_roc_auc']:.4f}", f"{summary[d]['fit_s']:.1f}",
                  f"{summary[d]['score_s']:.2f}"] for d in detectors]
    time_table = markdown_table(["detector", "mean ROC-AUC", "fit time, all sets and seeds (s)",
                                 "scoring time (s)"], time_rows)
    print("\n" + auc_table + "\n\n" + time_table)
    if args.no_write:
        return
    cmd = (f"python benchmarks/odds.py --seeds {args.seeds} --epochs {args.epochs} "
           f"--batch-size {args.batch_size} --lr {args.lr} --max-train {args.max_train}")
    if args.sets != ",".join(SETS):
        cmd += f" --sets {args.sets}"
    try:
        import pyod
        pyod_version = pyod.__version__
    except ImportError:
        pyod_version = "not installed"
    md = (
        "# ODDS tabular outlier sets: reconad against PyOD\n\n"
        "Protocol (normal-only setting): for each set and seed a random half of the normal "
        "rows is the training set (no labels used"
        + (f"; at most {args.max_train} rows of that half, which only shortens training on "
           "annthyroid, mammography and shuttle" if args.max_train else "")
        + "); the test set is the other half of the normal rows plus all outliers. All detectors run in one process on the same rows; "
        f"ROC-AUC on the test set is the mean over seeds {args.seeds}. The autoencoders of "
        f"both libraries train {args.epochs} epochs with batch size {args.batch_size} and "
        f"learning rate {args.lr} (Adam); everything else is each library's default "
        "(reconad: standard scaling fitted on the training rows, dense AE 64-32-latent with "
        "latent about a quarter of the features and its output bounded to the training range "
        "of each feature, 10 % of the training rows held out to keep "
        "the best epoch; PyOD AutoEncoder: 64-32 with batch norm and dropout 0.2, its own "
        "standard scaling; PyOD VAE: 128-64-32, latent 2; IForest: 100 trees). Torch uses "
        f"{args.threads} thread(s) for all.\n\n"
        f"Command: `{cmd}`  \n"
        f"Machine: {results['machine']}; PyOD {pyod_version}. The machine was shared with other "
        f"jobs (load average {results['load_average_start'][0]:.1f} at the start, "
        f"{results['load_average_end'][0]:.1f} at the end), so times are noisy; all detectors "
        "ran interleaved under the same load.\n\n"
        "## ROC-AUC\n\n" + auc_table + "\n\n## Mean ROC-AUC and times\n\n" + time_table + "\n"
    )
    write_results("odds", md, results)


if __name__ == "__main__":
    main()
