"""ODDS tabular outlier sets: reconad's ``TabularDetector()`` against PyOD's AutoEncoder and
VAE, Isolation Forest, ECOD and kNN, each with its library's defaults, in two settings.

* **normal-only**: for each set and seed, a random half of the normal rows is the
  training set; the test set is the other normal rows plus all outliers.
* **contaminated**: a stratified 60/40 split of all rows; the detectors are fitted on
  the 60 % (outliers included, no labels) and scored on the 40 %.

In both, at most ``--max-train`` training rows (a random subset) are used, to bound the
time. Every detector sees exactly the same rows: for one setting and seed, one process
fits and scores all detectors set after set (``--jobs`` runs several (setting, seed)
pairs at once, each with one torch thread). ROC-AUC and average precision on the test
rows are averaged over the seeds; fit and scoring times are summed over the seeds.

    pip install -e '.[bench]'      # PyOD, for this benchmark only
    python benchmarks/odds.py [--sets cardio,wbc] [--seeds 0,1,2,3,4] [--jobs 2]

``--collection heldout`` runs the same on the tables of ``heldout_tables.py`` (built from
the data scikit-learn ships, outside ODDS) and writes docs/tables_heldout.md.

``--variants`` adds reconad detectors with other settings, for ablations, e.g.
``--detectors reconad --variants '{"standard scaling": {"scaler": "standard"}}' --no-write``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import time
import warnings
from pathlib import Path

import heldout_tables
import numpy as np
import torch
from _common import ROOT, data_dir, machine, markdown_table, write_results
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import train_test_split

SETS = ["annthyroid", "breastw", "cardio", "ionosphere", "letter", "mammography", "pima",
        "satellite", "shuttle", "thyroid", "vowels", "wbc"]
COLLECTIONS = {"odds": SETS, "heldout": heldout_tables.NAMES}
SETTINGS = ["normal-only", "contaminated"]
DETECTORS = ["reconad", "PyOD AutoEncoder", "PyOD VAE", "IForest", "ECOD", "kNN"]
LEVEL = 0.005  # "level with IForest": ROC-AUC at most this much below it
NOTES = ROOT / "benchmarks" / "odds_notes.md"
HELDOUT_NOTES = ROOT / "benchmarks" / "tables_heldout_notes.md"


def load_set(name: str) -> tuple[np.ndarray, np.ndarray]:
    if name in heldout_tables.NAMES:
        return heldout_tables.load(name)
    d = np.load(data_dir() / "odds" / f"{name}.npz")
    return d["x"].astype(np.float64), d["y"].astype(int).ravel()


def split(y: np.ndarray, setting: str, seed: int, max_train: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Training and test row indices for ``setting`` (see the module notes)."""
    rng = np.random.RandomState(seed)
    if setting == "normal-only":
        normal = rng.permutation(np.flatnonzero(y == 0))
        half = len(normal) // 2
        train, test = normal[:half], np.r_[normal[half:], np.flatnonzero(y == 1)]
    else:
        train, test = train_test_split(np.arange(len(y)), test_size=0.4, stratify=y, random_state=seed)
        train = rng.permutation(train)
    if max_train:
        train = train[:max_train]
    return np.sort(train), np.sort(test)


def make(name: str, seed: int, variants: dict):
    if name == "reconad" or name in variants:
        from reconad import TabularDetector

        return TabularDetector(device="cpu", verbose=0, random_state=seed, **variants.get(name, {}))
    if name == "PyOD AutoEncoder":
        from pyod.models.auto_encoder import AutoEncoder

        return AutoEncoder(random_state=seed, verbose=0, device="cpu")
    if name == "PyOD VAE":
        from pyod.models.vae import VAE

        return VAE(random_state=seed, verbose=0, device="cpu")
    if name == "IForest":
        from pyod.models.iforest import IForest

        return IForest(random_state=seed)
    if name == "ECOD":
        from pyod.models.ecod import ECOD

        return ECOD()
    if name == "kNN":
        from pyod.models.knn import KNN

        return KNN()
    raise ValueError(f"unknown detector {name!r}")


def run_pair(task: tuple) -> list[dict]:
    """All sets and detectors for one (setting, seed), in this process."""
    setting, seed, sets, detectors, max_train, threads, variants = task
    torch.set_num_threads(threads)
    warnings.filterwarnings("ignore")
    records = []
    for set_name in sets:
        X, y = load_set(set_name)
        train, test = split(y, setting, seed, max_train)
        for d in detectors:
            det = make(d, seed, variants)
            t0 = time.perf_counter()
            det.fit(X[train])
            t1 = time.perf_counter()
            scores = det.decision_function(X[test])
            t2 = time.perf_counter()
            records.append({"setting": setting, "set": set_name, "seed": seed, "detector": d,
                            "roc_auc": float(roc_auc_score(y[test], scores)),
                            "average_precision": float(average_precision_score(y[test], scores)),
                            "fit_s": t1 - t0, "score_s": t2 - t1, "n_train": int(len(train)),
                            "train_outliers": int(y[train].sum())})
        print(f"{setting:12s} seed {seed} {set_name:12s} " + "  ".join(
            f"{r['detector']}: {r['roc_auc']:.3f}" for r in records[-len(detectors):]), flush=True)
    return records


def summarise(records: list[dict], sets: list[str], detectors: list[str]) -> dict:
    out = {}
    for setting in SETTINGS:
        rows = [r for r in records if r["setting"] == setting]
        if not rows:
            continue
        per_set = {s: {d: {} for d in detectors} for s in sets}
        for s in sets:
            for d in detectors:
                mine = [r for r in rows if r["set"] == s and r["detector"] == d]
                per_set[s][d] = {"roc_auc": float(np.mean([r["roc_auc"] for r in mine])),
                                 "roc_auc_per_seed": [r["roc_auc"] for r in mine],
                                 "average_precision": float(np.mean([r["average_precision"] for r in mine])),
                                 "fit_s": float(sum(r["fit_s"] for r in mine)),
                                 "score_s": float(sum(r["score_s"] for r in mine))}
        means = {d: {"roc_auc": float(np.mean([per_set[s][d]["roc_auc"] for s in sets])),
                     "average_precision": float(np.mean([per_set[s][d]["average_precision"] for s in sets])),
                     "fit_s": float(sum(per_set[s][d]["fit_s"] for s in sets)),
                     "score_s": float(sum(per_set[s][d]["score_s"] for s in sets))} for d in detectors}
        level = None
        if "reconad" in detectors and "IForest" in detectors:
            level = [s for s in sets
                     if per_set[s]["reconad"]["roc_auc"] >= per_set[s]["IForest"]["roc_auc"] - LEVEL]
        out[setting] = {"sets": per_set, "means": means, "level_with_iforest": level}
    return out


def setting_markdown(setting: str, summary: dict, sets: list[str], detectors: list[str]) -> str:
    per_set, means = summary["sets"], summary["means"]
    best = max(detectors, key=lambda d: means[d]["roc_auc"])
    rows = [[s] + [per_set[s][d]["roc_auc"] for d in detectors] for s in sets]
    rows.append(["**mean**"] + [means[d]["roc_auc"] for d in detectors])
    ap_rows = [["**mean average precision**"] + [means[d]["average_precision"] for d in detectors]]
    time_rows = [[d, f"{means[d]['roc_auc']:.4f}", f"{means[d]['average_precision']:.4f}",
                  f"{means[d]['fit_s']:.1f}", f"{means[d]['score_s']:.2f}"] for d in detectors]
    text = [f"## {setting}\n", markdown_table(["set"] + detectors, rows + ap_rows), "",
            f"Best mean ROC-AUC: **{best}** ({means[best]['roc_auc']:.4f}).", ""]
    if summary["level_with_iforest"] is not None:
        level = summary["level_with_iforest"]
        behind = [s for s in sets if s not in level]
        text += [f"reconad is level with IForest (ROC-AUC at most {LEVEL} below it) on "
                 f"**{len(level)} of {len(sets)}** sets; behind on: "
                 + (", ".join(f"{s} ({per_set[s]['reconad']['roc_auc']:.3f} against "
                              f"{per_set[s]['IForest']['roc_auc']:.3f})" for s in behind) or "none") + ".", ""]
    text += [markdown_table(["detector", "mean ROC-AUC", "mean average precision",
                             "fit time, all sets and seeds (s)", "scoring time (s)"], time_rows), ""]
    return "\n".join(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--collection", default="odds", choices=sorted(COLLECTIONS),
                    help="odds: the 12 ODDS sets; heldout: the tables of heldout_tables.py")
    ap.add_argument("--sets", default=None, help="comma-separated (default: the whole collection)")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--settings", default=",".join(SETTINGS))
    ap.add_argument("--detectors", default=",".join(DETECTORS))
    ap.add_argument("--max-train", type=int, default=3000,
                    help="at most this many training rows, a random subset (0: all of them)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process (same for all)")
    ap.add_argument("--jobs", type=int, default=1, help="(setting, seed) pairs run at once")
    ap.add_argument("--variants", default="{}",
                    help="JSON: name -> TabularDetector settings, run as extra detectors")
    ap.add_argument("--no-write", action="store_true", help="print only (for trying settings)")
    args = ap.parse_args()
    variants = json.loads(args.variants)
    every = COLLECTIONS[args.collection]
    sets, seeds = (args.sets.split(",") if args.sets else every), [int(s) for s in args.seeds.split(",")]
    settings, detectors = args.settings.split(","), list(dict.fromkeys(args.detectors.split(",") + list(variants)))
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise SystemExit(f"unknown settings {unknown}; choose from {SETTINGS}")
    load_start = os.getloadavg()
    torch.set_num_threads(args.threads)  # as in every worker, so the machine line says what ran
    tasks = [(st, seed, sets, detectors, args.max_train or None, args.threads, variants)
             for st in settings for seed in seeds]
    started = time.perf_counter()
    if args.jobs > 1:
        with mp.get_context("spawn").Pool(args.jobs) as pool:
            parts = pool.map(run_pair, tasks, chunksize=1)
    else:
        parts = [run_pair(t) for t in tasks]
    records = [r for part in parts for r in part]
    summary = summarise(records, sets, detectors)
    body = "\n".join(setting_markdown(st, summary[st], sets, detectors) for st in SETTINGS if st in summary)
    print("\n" + body)
    if args.no_write:
        return
    try:
        import pyod
        pyod_version = pyod.__version__
    except ImportError:
        pyod_version = "not installed"
    cmd = (f"python benchmarks/odds.py --seeds {args.seeds} --max-train {args.max_train} "
           f"--threads {args.threads} --jobs {args.jobs}")
    if args.collection != "odds":
        cmd += f" --collection {args.collection}"
    if args.sets:
        cmd += f" --sets {args.sets}"
    if args.settings != ",".join(SETTINGS):
        cmd += f" --settings {args.settings}"
    results = {"machine": machine(), "pyod": pyod_version, "command": cmd, "seeds": seeds,
               "max_train": args.max_train, "threads": args.threads, "jobs": args.jobs,
               "load_average_start": load_start, "load_average_end": os.getloadavg(),
               "wall_s": time.perf_counter() - started, "summary": summary, "records": records}
    heldout = args.collection == "heldout"
    notes_path = HELDOUT_NOTES if heldout else NOTES
    notes = notes_path.read_text(encoding="utf-8") if notes_path.exists() else ""
    title = ("# Tables outside ODDS: reconad against PyOD\n\n"
             "The tables of `benchmarks/heldout_tables.py` (built from the data scikit-learn ships: "
             "handwritten digits with one digit as the outliers, ODDS' wine protocol, iris with one "
             "species as the outliers), built to check the defaults chosen on ODDS on other tables; "
             "one default (the error scale of mostly-0 columns) was changed after a look at them, "
             "see the notes below. Same two settings and protocol as docs/odds.md. " if heldout else
             "# ODDS tabular outlier sets: reconad against PyOD\n\nTwelve ODDS sets. ")
    md = (
        title + "Two settings. **normal-only**: a random half of the normal rows is "
        "the training set, the test set is the other half plus all outliers. **contaminated**: "
        "a stratified 60/40 split of all rows, fitted on the 60 % (its outliers included, no "
        "labels), scored on the 40 %. In both, at most "
        f"{args.max_train or 'all'} training rows (a random subset; "
        + ("no table here has more" if heldout else "this shortens only annthyroid, mammography, satellite and shuttle")
        + "). Every detector runs with its "
        "library's defaults (`TabularDetector()`; PyOD's `AutoEncoder()`, `VAE()`, "
        "`IForest()`, `ECOD()`, `KNN()`), on the same rows; one process fits and scores all "
        f"detectors for one setting and seed, with {args.threads} torch thread(s). ROC-AUC and "
        f"average precision are means over seeds {args.seeds}; times are summed over the "
        "seeds.\n\n"
        f"Command: `{cmd}`  \n"
        f"Machine: {results['machine']}; PyOD {pyod_version}. The machine was shared with other "
        f"jobs (load average {load_start[0]:.1f} at the start, {results['load_average_end'][0]:.1f} "
        "at the end), so times are noisy; all detectors ran interleaved under the same load.\n\n"
        + body + ("\n" + notes if notes else "")
    )
    write_results("tables_heldout" if heldout else "odds", md, results)


if __name__ == "__main__":
    main()
