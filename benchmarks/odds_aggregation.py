"""How ``TabularDetector()``'s per-feature errors and members are combined, on the ODDS sets
and the held-out tables (reconad only).

For every table, setting and seed (the rows of ``benchmarks/odds.py``) the default detector
is fitted once; every combination below then scores the test rows from the same fitted
members, so the differences come from the combination alone:

* **errors**: a member's standardised per-feature errors (squared error over its typical
  training error) are averaged (the default, ``mean``), or combined by a power mean
  ``(mean e^p)^(1/p)`` with p < 1 (``p0.5``, ``p0.75``, ...: a few features with a huge
  error count for less), by the mean of the highest quarter of them (``top0.25``) or by
  their maximum (``max``). Each member's result is divided by its median over the
  training rows, and the code term is added at its weight, as in the detector.
* **members**: the median of the members' scores (the default), the mean of the middle
  half (``trim``), or the median of each member's rank of the row among the training rows
  (``rank``).

Mean ROC-AUC on the six choosing sets, the six other ODDS sets and the held-out tables,
both settings, and the ODDS sets level with IForest (``docs/odds.json``, same seeds).

    python benchmarks/odds_aggregation.py --seeds 0,1,2 [--jobs 2]

The results are in benchmarks/odds_notes.md ("How the per-feature errors are combined").
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import warnings

import heldout_tables
import numpy as np
import torch
from _common import ROOT
from odds import LEVEL, SETS, SETTINGS, load_set, split
from sklearn.metrics import roc_auc_score

from reconad import TabularDetector
from reconad.models.tabular import median_of_members

CHOOSING = ["annthyroid", "cardio", "letter", "pima", "shuttle", "vowels"]
ERRORS = ["mean", "p0.5", "p0.75", "p0.85", "top0.25", "max"]
MEMBERS = ["median", "trim", "rank"]


def member_parts(det: TabularDetector, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every member's standardised per-feature errors ``(members, N, F)`` and its code term
    (the code's surprise over its scale) ``(members, N)`` for the rows ``X``."""
    xb = torch.as_tensor(det._matrix(X), dtype=torch.float32)
    det.model_.eval()
    with torch.no_grad():
        errors, codes = det._errors_and_codes(xb)
        errors = errors / torch.as_tensor(det.error_scale_, dtype=errors.dtype).unsqueeze(1)
        code = det._code_surprise(codes) / torch.as_tensor(det.code_scale_, dtype=errors.dtype).unsqueeze(1)
    return errors.numpy().astype(np.float64), code.numpy().astype(np.float64)


def combine_errors(errors: np.ndarray, how: str) -> np.ndarray:
    if how == "mean":
        return errors.mean(2)
    if how == "max":
        return errors.max(2)
    if how.startswith("top"):
        k = max(1, round(float(how[3:]) * errors.shape[2]))
        return np.sort(errors, 2)[:, :, -k:].mean(2)
    p = float(how[1:])
    return (errors ** p).mean(2) ** (1 / p)


def combine_members(per_member: np.ndarray, train: np.ndarray, how: str) -> np.ndarray:
    if how == "median":
        return median_of_members(torch.as_tensor(per_member)).numpy()
    if how == "trim":
        k = per_member.shape[0] // 4
        return np.sort(per_member, 0)[k:per_member.shape[0] - k].mean(0)
    return np.median([np.searchsorted(np.sort(t), s) / len(t) for s, t in zip(per_member, train)], 0)


def run_table(task: tuple) -> dict:
    name, seed = task
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    X, y = load_set(name)
    out = {}
    for setting in SETTINGS:
        train, test = split(y, setting, seed, 3000)
        det = TabularDetector(device="cpu", verbose=0, random_state=seed).fit(X[train])
        e_test, c_test = member_parts(det, X[test])
        e_train, c_train = member_parts(det, X[train])
        for how in ERRORS:
            r_test, r_train = combine_errors(e_test, how), combine_errors(e_train, how)
            scale = np.maximum(np.median(r_train, 1, keepdims=True), 1e-12)
            s_test = r_test / scale + det.code_weight() * c_test
            s_train = r_train / scale + det.code_weight() * c_train
            for members in MEMBERS:
                out[(name, setting, how, members)] = float(roc_auc_score(
                    y[test], combine_members(s_test, s_train, members)))
    print(f"{name} seed {seed}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--jobs", type=int, default=1)
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    tables = SETS + heldout_tables.NAMES
    with mp.get_context("spawn").Pool(args.jobs) as pool:
        parts = pool.map(run_table, [(t, s) for s in seeds for t in tables])
    auc: dict = {}
    for part in parts:
        for key, v in part.items():
            auc.setdefault(key, []).append(v)
    auc = {k: float(np.mean(v)) for k, v in auc.items()}
    iforest: dict = {}
    for r in json.load(open(ROOT / "docs" / "odds.json"))["records"]:
        if r["detector"] == "IForest" and r["seed"] in seeds:
            iforest.setdefault((r["set"], r["setting"]), []).append(r["roc_auc"])
    print("| errors | members | " + " | ".join(f"{s}: choosing six / other six / held-out / level with IForest"
                                               for s in SETTINGS) + " |")
    print("|---|---|" + "---|" * len(SETTINGS))
    for how in ERRORS:
        for members in MEMBERS:
            cells = []
            for setting in SETTINGS:
                def mean(names):
                    return np.mean([auc[(n, setting, how, members)] for n in names])
                level = sum(auc[(n, setting, how, members)] >= np.mean(iforest[(n, setting)]) - LEVEL for n in SETS)
                cells.append(f"{mean(CHOOSING):.4f} / {mean([n for n in SETS if n not in CHOOSING]):.4f} / "
                             f"{mean(heldout_tables.NAMES):.4f} / {level}")
            print(f"| {how} | {members} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
