"""Planted outlier types on real normal rows: where each table detector's defaults hold.

For each table (the ODDS sets and the tables of ``heldout_tables.py``) and seed, a random
half of the normal rows (at most 2000) is the training set; the test set is the other
half plus planted outliers, one tenth as many as the test's normal rows, of each of the
four types of ADBench (Han et al., NeurIPS 2022, section 3.3), each type scored apart:

* **global**: every value drawn uniformly from the feature's training range widened by
  10 % on each side (ADBench: uniform over 1.1 times the range);
* **local**: drawn from a Gaussian mixture fitted to the training rows (standardised; up
  to 4 components, full covariances) with every covariance five times as large;
* **dependency**: every value drawn on its own from that feature's training values, so
  each feature keeps its distribution and the relations between them are gone (ADBench
  draws from a vine copula with the dependence removed);
* **clustered**: drawn from the same mixture with every component mean five times as far
  from the centre.

Every detector runs with its library's defaults on the same rows (PyOD's VAE is left
out for its fit time). ROC-AUC per type, averaged over the tables and seeds.

    python benchmarks/tables_planted.py [--sets wine,cardio] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import heldout_tables
import numpy as np
import odds
import torch
from _common import ROOT, machine, markdown_table, write_results
from sklearn.metrics import roc_auc_score
from sklearn.mixture import GaussianMixture
from sklearn.preprocessing import StandardScaler

KINDS = ["global", "local", "dependency", "clustered"]
DETECTORS = ["reconad", "PyOD AutoEncoder", "IForest", "ECOD", "kNN"]
SETS = odds.SETS + ["digits1", "wine"]
NOTES = ROOT / "benchmarks" / "tables_planted_notes.md"


def plant(kind: str, train: np.ndarray, n: int, rng: np.random.RandomState) -> np.ndarray:
    """``n`` outlier rows of ``kind`` (see the module notes), from the training rows."""
    scaler = StandardScaler().fit(train)
    z = scaler.transform(train)
    if kind == "global":
        lo, hi = z.min(0), z.max(0)
        rows = rng.uniform(lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo), size=(n, z.shape[1]))
    elif kind == "dependency":
        rows = np.stack([rng.choice(z[:, j], n) for j in range(z.shape[1])], 1)
    else:
        gmm = GaussianMixture(n_components=min(4, len(z) // 50 + 1), covariance_type="full",
                              reg_covar=1e-3, random_state=0).fit(z)
        if kind == "local":
            gmm.covariances_ = gmm.covariances_ * 5
            gmm.precisions_cholesky_ = np.linalg.cholesky(np.linalg.inv(gmm.covariances_))
        else:
            gmm.means_ = gmm.means_ * 5
        gmm.random_state = rng
        rows = gmm.sample(n)[0]
    return scaler.inverse_transform(rows)


def run_set(name: str, seeds: list[int], detectors: list[str], variants: dict) -> list[dict]:
    X, y = odds.load_set(name)
    normal = X[y == 0]
    records = []
    for seed in seeds:
        rng = np.random.RandomState(seed)
        rows = rng.permutation(len(normal))[:4000]
        train, test = normal[rows[: len(rows) // 2]], normal[rows[len(rows) // 2:]]
        planted = {kind: plant(kind, train, max(10, len(test) // 10), rng) for kind in KINDS}
        for d in detectors:
            det = odds.make(d, seed, variants)
            t0 = time.perf_counter()
            det.fit(train)
            fit_s = time.perf_counter() - t0
            base = det.decision_function(test)
            for kind in KINDS:
                scores = np.r_[base, det.decision_function(planted[kind])]
                labels = np.r_[np.zeros(len(test)), np.ones(len(planted[kind]))]
                records.append({"set": name, "seed": seed, "detector": d, "kind": kind,
                                "roc_auc": float(roc_auc_score(labels, scores)), "fit_s": fit_s})
    return records


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--detectors", default=",".join(DETECTORS))
    ap.add_argument("--variants", default="{}", help="JSON: name -> TabularDetector settings, as in odds.py")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    variants = json.loads(args.variants)
    sets, seeds = args.sets.split(","), [int(s) for s in args.seeds.split(",")]
    detectors = list(dict.fromkeys(args.detectors.split(",") + list(variants)))
    unknown = [s for s in sets if s not in odds.SETS and s not in heldout_tables.NAMES]
    if unknown:
        raise SystemExit(f"unknown tables {unknown}")
    records = []
    for name in sets:
        records += run_set(name, seeds, detectors, variants)
        mine = [r for r in records if r["set"] == name]
        print(f"{name:12s} " + " | ".join(
            kind + " " + " ".join(f"{np.mean([r['roc_auc'] for r in mine if r['kind'] == kind and r['detector'] == d]):.3f}"
                                  for d in detectors) for kind in KINDS), flush=True)

    def mean(d, kind, s=None):
        return float(np.mean([r["roc_auc"] for r in records if r["detector"] == d and r["kind"] == kind
                              and (s is None or r["set"] == s)]))

    summary = [[kind] + [mean(d, kind) for d in detectors] for kind in KINDS]
    summary.append(["**all four**"] + [float(np.mean([mean(d, k) for k in KINDS])) for d in detectors])
    parts = [markdown_table(["type"] + detectors, summary), ""]
    for kind in KINDS:
        parts += [f"### {kind}", "", markdown_table(["table"] + detectors, [[s] + [mean(d, kind, s) for d in detectors]
                                                                             for s in sets]), ""]
    body = "\n".join(parts)
    print("\n" + body)
    if args.no_write:
        return
    cmd = f"python benchmarks/tables_planted.py --seeds {args.seeds}" + (f" --sets {args.sets}" if args.sets != ",".join(SETS) else "")
    md = ("# Planted outlier types: reconad against PyOD\n\n"
          "The four outlier types of ADBench planted among real normal rows of the 12 ODDS sets "
          "and two tables outside ODDS (digits with the 1s as outliers, wine); how they are made "
          "is in the docstring of `benchmarks/tables_planted.py`. Training on a random half of the "
          "normal rows (at most 2000), every detector with its library's defaults on the same rows; "
          f"ROC-AUC of the test's normal rows against each type, means over the tables and seeds {args.seeds}.\n\n"
          f"Command: `{cmd}`  \nMachine: {machine()}.\n\n## Mean ROC-AUC per type\n\n" + body
          + ("\n" + NOTES.read_text(encoding="utf-8") if NOTES.exists() else ""))
    write_results("tables_planted", md, {"machine": machine(), "command": cmd, "records": records})


if __name__ == "__main__":
    main()
