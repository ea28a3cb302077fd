"""Training the ensemble's members apart, and denoising, on the ODDS sets (reconad only).

``TabularDetector()`` trains its members side by side in one batched network. This script
measures what the members would give if each were a detector of its own
(``TabularDetector(members=1)``, its own random seed, validation rows, epoch choice,
scaling, output bounds and error scales), fitted on all training rows or on a random share
of them, with the members' scores (each divided by its median over the training rows)
averaged or their median taken; and two denoising variants of the default (noise on the
inputs during training only). Same rows as ``benchmarks/odds.py``; IForest's figures for
comparison come from ``docs/odds.json``.

    python benchmarks/odds_members.py --seeds 0,1,2 --settings contaminated \\
        --variants default,apart:1.0:4:mean,apart:0.5:4:median,drop:0.1,gauss:0.2

Variants: ``default``; ``l1`` (``score="l1"``); ``drop:p`` (each input value set to 0, the
training median, with probability p); ``gauss:s`` (Gaussian noise of s, in the scaled
units); ``apart:share:k:how`` (k members fitted apart, each on ``share`` of the training
rows, combined by ``how``, ``mean`` or ``median``). The results are in
benchmarks/odds_notes.md ("Members trained apart").
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
import torch
from _common import ROOT
from odds import SETS, load_set, split
from sklearn.metrics import roc_auc_score

from reconad import TabularDetector
from reconad.detectors.tabular import TabularDetector as _Base

CHOOSING = ["annthyroid", "cardio", "letter", "pima", "shuttle", "vowels"]


class NoisyInputs(torch.nn.Module):
    """The ensemble with its inputs corrupted in training mode only."""

    def __init__(self, inner: torch.nn.Module, kind: str, level: float):
        super().__init__()
        self.inner, self.kind, self.level = inner, kind, level
        self.box = inner.box

    def forward(self, x):
        if self.training:
            x = x * (torch.rand_like(x) >= self.level) if self.kind == "drop" else x + self.level * torch.randn_like(x)
        return self.inner(x)


class NoisyDetector(_Base):
    def __init__(self, kind="drop", level=0.1, **kw):
        super().__init__(**kw)
        self.kind, self.level = kind, level

    def _build(self):
        return NoisyInputs(super()._build(), self.kind, self.level)


def scores(variant: str, Xtr, Xte, seed: int) -> np.ndarray:
    common = dict(device="cpu", verbose=0)
    if variant == "default":
        return TabularDetector(random_state=seed, **common).fit(Xtr).decision_function(Xte)
    if variant == "l1":
        return TabularDetector(random_state=seed, score="l1", **common).fit(Xtr).decision_function(Xte)
    kind, *args = variant.split(":")
    if kind in ("drop", "gauss"):
        det = NoisyDetector(kind=kind, level=float(args[0]), random_state=seed, **common)
        return det.fit(Xtr).decision_function(Xte)
    if kind == "apart":
        share, k, how = float(args[0]), int(args[1]), args[2]
        rng, out = np.random.RandomState(seed), []
        for m in range(k):
            rows = rng.choice(len(Xtr), max(8, int(share * len(Xtr))), replace=False)
            det = TabularDetector(random_state=seed * 10 + m, members=1, **common).fit(Xtr[rows])
            out.append(det.decision_function(Xte) / np.median(det.decision_function(Xtr)))
        return np.median(out, 0) if how == "median" else np.mean(out, 0)
    raise ValueError(f"unknown variant {variant!r}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--settings", default="normal-only,contaminated")
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--variants", default="default,apart:1.0:4:mean")
    ap.add_argument("--out", default=None, help="also write the records to this JSON file")
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    variants, sets = args.variants.split(","), args.sets.split(",")
    iforest = {(r["setting"], r["seed"], r["set"]): r["roc_auc"]
               for r in json.loads((ROOT / "docs" / "odds.json").read_text())["records"] if r["detector"] == "IForest"}
    records = []
    for setting in args.settings.split(","):
        for seed in [int(s) for s in args.seeds.split(",")]:
            for name in sets:
                X, y = load_set(name)
                train, test = split(y, setting, seed, 3000)
                rec = {"setting": setting, "seed": seed, "set": name, "IForest": iforest[(setting, seed, name)]}
                for v in variants:
                    t0 = time.perf_counter()
                    rec[v] = float(roc_auc_score(y[test], scores(v, X[train], X[test], seed)))
                    rec[v + " fit+score s"] = time.perf_counter() - t0
                records.append(rec)
                print(setting, seed, name, " ".join(f"{v}: {rec[v]:.3f}" for v in variants), flush=True)
        rs = [r for r in records if r["setting"] == setting]
        print(f"\n{setting}: mean ROC-AUC (choosing sets / other six / all), sets level with IForest, time")
        for v in variants:
            mean = lambda group: np.mean([r[v] for r in rs if r["set"] in group])  # noqa: E731
            level = sum(np.mean([r[v] for r in rs if r["set"] == s]) >=
                        np.mean([r["IForest"] for r in rs if r["set"] == s]) - 0.005 for s in sets)
            other = [s for s in sets if s not in CHOOSING]
            print(f"  {v:24s} {mean(CHOOSING):.4f} / {mean(other):.4f} / {mean(sets):.4f}  "
                  f"{level}/{len(sets)}  {sum(r[v + ' fit+score s'] for r in rs):.0f} s")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(records, f, indent=1)


if __name__ == "__main__":
    main()
