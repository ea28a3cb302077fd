"""SKAB outlier detection, leaderboard protocol (see ../shared/data/README.md).

34 files of valve1, valve2 and other; a new model per file on its first 400 rows; a
StandardScaler fitted on those rows; windows of 60 rows, stride 1; window score = sum over
sensors of the mean absolute error over time; threshold = 0.999 quantile of the training
windows' scores x 4/3; test row i is flagged when the windows starting at rows i-59 ... i-1
all exceed it; confusion counts pooled pointwise over the 34 test parts.

    python benchmarks/skab.py                    # every configuration (about 15 min, 2 cores)
    python benchmarks/skab.py --only conv_ae --files 6   # a quick look

ROC-AUC (pooled) and VUS-PR (mean over files) use the continuous form of the flag rule:
a row's score is the smallest threshold-normalised score of the windows i-59 ... i-1.

Rows whose rule is ("anomaly-free", q, target) set the threshold factor once, for all files,
from the anomaly-free recording (normal operation of the same rig, never a test label): the
protocol is simulated on chunks of that recording (a model on each chunk's first 400 rows,
the next 750 rows as its test part) and the factor is the smallest multiple of 0.05 that
flags at most ``target`` of the simulated test rows.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import json
import time

import numpy as np
import pandas as pd
import torch
from _common import ROOT, data_dir, machine, markdown_table, write_results
from torch import nn

from reconad import SeriesDetector
from reconad.evaluation import metrics
from reconad.data.csv import read_csv
from reconad.models.conv1d import Conv1dAE
from reconad.models import catalogue

N_TRAIN = 400
FREE_CHUNK = 1150  # anomaly-free chunks: 400 training rows + 750 test rows, about one file's length
# published SKAB outlier-detection rows: (name, strict board F1/FAR/MAR, original board F1/FAR/MAR)
PUBLISHED = [
    ("Conv-AE", (0.78, 0.1355, 0.2802), (0.77, 0.0638, 0.2965)),
    ("MSET", (0.78, 0.3973, 0.1413), (0.77, 0.1793, 0.1608)),
    ("T²+Q, PCA-based", (0.76, 0.2662, 0.2492), (0.75, 0.1209, 0.2662)),
    ("LSTM-AE", (0.74, 0.2996, 0.2592), (0.73, 0.1365, 0.2760)),
    ("MSCRED", (0.40, 0.3104, 0.6905), (0.74, 0.1219, 0.2899)),
    ("LSTM-VAE", (0.56, 0.0913, 0.5503), (0.56, 0.0913, 0.5503)),
    ("Vanilla AE", (0.39, 0.0259, 0.7515), (0.38, 0.0118, 0.7572)),
    ("Isolation forest", (0.29, 0.0256, 0.8289), (0.28, 0.0116, 0.8328)),
]
CONV_AE_STRICT, CONV_AE_ORIGINAL = PUBLISHED[0][1], PUBLISHED[0][2]


class OneChannelConvAE(Conv1dAE):
    """The leaderboard's Conv-AE as published: its last transposed convolution has one
    output channel, which the loss and the score broadcast over all 8 sensors."""

    def __init__(self, input_shape, **kw):
        super().__init__(input_shape, **kw)
        last = self.decoder[-1]
        self.decoder[-1] = nn.ConvTranspose1d(last.in_channels, 1, last.kernel_size[0],
                                              padding=last.padding[0])


catalogue.add(catalogue.ModelEntry(
    "skab_conv_ae_1ch", "series", "reconstruction", OneChannelConvAE, "mse", "mae", ("mae", "mse"),
    None, exportable=False, data_parallel=True,
    description="SKAB leaderboard Conv-AE with its one-channel output (benchmark only)"))


# the settings the rows below were measured with before the detector's defaults changed
OLD = dict(slow_sensors=None, score_last=1.0, combine="mean", threshold_method="percentile")
OLD_SUM = dict(OLD, sensor_reduce="sum")

# name, detector settings, (quantile, factor), n seeds, note
CONFIGS = {
    "conv_ae_leaderboard": dict(
        label="Conv-AE, leaderboard set-up (reproduction)",
        params=dict(model="skab_conv_ae_1ch", window=60, epochs=100, batch_size=32, patience=5,
                    loss="mse", validation_fraction=0.1, **OLD_SUM),
        rule=(0.999, 4 / 3), seeds=1,
        note="one-channel decoder output broadcast over the 8 sensors (quirk reproduced)"),
    "lstm_ae_leaderboard": dict(
        label="LSTM-AE, leaderboard set-up (reproduction)",
        params=dict(model="lstm_ae", window=10, latent_dim=None, width=100, epochs=100,
                    batch_size=32, patience=5, loss="l1", validation_fraction=0.1, **OLD_SUM),
        rule=(0.99, 3 / 2), seeds=1,
        note="its notebook's windows of 10, 0.99 quantile x 3/2; tanh LSTMs (Keras: relu)"),
    "conv_ae": dict(
        label="reconad conv_ae (8-sensor output)",
        params=dict(model="conv_ae", window=60, epochs=30, batch_size=32, patience=5,
                    loss="mse", validation_fraction=0.1, **OLD_SUM),
        rule=(0.999, 4 / 3), seeds=1, note="protocol as published; a decoder that rebuilds all 8 sensors"),
    "conv_ae_ens3": dict(
        label="reconad conv_ae, 3 seeds averaged",
        params=dict(model="conv_ae", window=60, epochs=30, batch_size=32, patience=5,
                    loss="mse", validation_fraction=0.1, **OLD_SUM),
        rule=(0.999, 4 / 3), seeds=3, note="window scores averaged over 3 seeds before the threshold rule"),
    "conv_ae_max_ens3": dict(
        label="reconad conv_ae, worst sensor, 3 seeds averaged",
        params=dict(model="conv_ae", window=60, epochs=30, batch_size=32, patience=5,
                    loss="mse", validation_fraction=0.1, sensor_reduce="max", **OLD),
        rule=(0.999, 4 / 3), seeds=3,
        note="window score = the largest per-sensor error (sensor_reduce='max') instead of the sum; "
             "per-sensor errors averaged over 3 seeds; threshold and flag rule as published"),
    "conv_ae_max_ens3_free": dict(
        label="reconad conv_ae, worst sensor, 3 seeds, factor from anomaly-free (not the protocol's rule)",
        params=dict(model="conv_ae", window=60, epochs=30, batch_size=32, patience=5,
                    loss="mse", validation_fraction=0.1, sensor_reduce="max", **OLD),
        rule=("anomaly-free", 0.999, 0.15), seeds=3,
        note="models as the row above (reused when both rows run in one command); threshold = 0.999 quantile x a factor set once from the "
             "anomaly-free recording so that at most 15 % of its simulated test rows are flagged"),
}

# rows of reconad's own defaults: SeriesDetector(window=60), fitted on each file's first 400 rows,
# flags from its predict (the causal alert rule), on the test part (strict board) and on the
# whole file (original board)
LIBRARY = {
    "defaults": dict(
        label="reconad defaults: SeriesDetector(window=60), one model, mean of 3 seeds",
        mode="per_seed", seeds=3,
        note="only window=60 passed; det.predict on the test part (strict) and on the whole file (original); "
             "F1, FAR and MAR are the means over seeds 0, 1, 2 (each pooled over the 34 files)"),
    "defaults_ens3": dict(
        label="reconad defaults, 3 seeds' errors averaged (recommended)",
        mode="ensemble", seeds=3,
        note="the three models of the row above; per-sensor window errors averaged over them, then the "
             "detector's own rules: margin threshold over the training windows, alert rule with hysteresis"),
    "epochs50": dict(
        label="reconad defaults but epochs=50 (the former default), one model, mean of 3 seeds",
        mode="per_seed", seeds=3, params=dict(epochs=50),
        note="as the first defaults row, with up to 50 epochs instead of 30: the training windows are "
             "rebuilt better, the margin threshold over them is lower, and more normal rows are flagged"),
    "defaults_free": dict(
        label="reconad defaults, 3 seeds, margin from anomaly-free (learns from anomaly-free.csv; not a protocol row)",
        mode="free", seeds=3,
        note="models and scores as the row above; the margin factor is set once, for all files, from "
             "the anomaly-free recording: the smallest multiple of 0.05 that flags at most 15 % of the "
             "simulated test rows of its chunks (a model on each chunk's first 400 rows, 3 seeds)"),
}
LIBRARY_LABELS = {c["label"] for c in LIBRARY.values()}
_DETS: dict = {}  # (seed, data key) -> per-sensor window errors and the fitted detector's rules

_SCORES: dict = {}  # (settings, seed, data key) -> per-sensor window scores; rows that share models reuse them


def skab_files(root) -> list[tuple[str, pd.DataFrame]]:
    out = []
    for folder in ("valve1", "valve2", "other"):
        for path in sorted((root / folder).glob("*.csv"), key=lambda p: int(p.stem)):
            out.append((f"{folder}/{path.name}", read_csv(path)))
    return out


def flag_rows(window_scores: np.ndarray, threshold: float, window: int, n_rows: int) -> np.ndarray:
    """Row i is flagged when windows i-window+1 ... i-1 all exceed ``threshold``;
    rows within window-1 of either end are never flagged."""
    exceed = window_scores > threshold
    all_run = np.lib.stride_tricks.sliding_window_view(exceed, window - 1).all(-1)
    pred = np.zeros(n_rows, dtype=bool)
    rows = np.arange(window - 1, n_rows - window + 1)
    pred[rows] = all_run[rows - window + 1]
    return pred


def row_scores(window_scores: np.ndarray, threshold: float, window: int, n_rows: int) -> np.ndarray:
    """Continuous form of the flag rule: min over windows i-window+1 ... i-1 of
    score / threshold (the nearest run of windows at the edges). Row i is flagged by
    ``flag_rows`` exactly when this is > 1 (away from the edges)."""
    run_min = np.lib.stride_tricks.sliding_window_view(window_scores / threshold, window - 1).min(-1)
    return run_min[np.clip(np.arange(n_rows) - window + 1, 0, len(run_min) - 1)]


def flag_rows_notebook(window_scores: np.ndarray, threshold: float, window: int, n_rows: int) -> np.ndarray:
    """The leaderboard notebook's loop: rows window-1 ... n_windows-window only."""
    exceed = window_scores > threshold
    pred = np.zeros(n_rows, dtype=bool)
    for i in range(window - 1, len(window_scores) - window + 1):
        pred[i] = exceed[i - window + 1:i].all()
    return pred


def seed_scores(cfg: dict, df: pd.DataFrame, sensors: list[str], seed0: int, key: str,
                whole: bool = True):
    """Window scores of the training part, the test part and (``whole``) the whole file, from
    per-sensor errors averaged over the seeds and reduced as the detector reduces them."""
    parts = {"train": df.iloc[:N_TRAIN], "test": df.iloc[N_TRAIN:]}
    if whole:
        parts["whole"] = df
    per = {name: 0.0 for name in parts}
    for k in range(cfg["seeds"]):
        cache_key = (json.dumps(cfg["params"], sort_keys=True), seed0 + k, key)
        if cache_key not in _SCORES:
            det = SeriesDetector(**cfg["params"], columns=sensors, device="cpu", verbose=0,
                                 random_state=seed0 + k).fit(parts["train"])
            _SCORES[cache_key] = ({name: det.window_scores(part, per_sensor=True) for name, part in parts.items()},
                                  det.reduce_sensors)
        got, reduce = _SCORES[cache_key]
        for name in parts:
            per[name] = per[name] + got[name] / cfg["seeds"]
    return {name: reduce(v) for name, v in per.items()}


def anomaly_free_factor(cfg: dict, seed0: int) -> float:
    """The rule's factor from the anomaly-free recording (see the module's doc)."""
    _, q, target = cfg["rule"]
    free = read_csv(data_dir() / "skab" / "anomaly-free" / "anomaly-free.csv")
    sensors = list(free.columns)
    chunks = [free.iloc[c * FREE_CHUNK:(c + 1) * FREE_CHUNK] for c in range(len(free) // FREE_CHUNK)]
    scores = [seed_scores(cfg, ch, sensors, seed0, f"anomaly-free/{c}", whole=False) for c, ch in enumerate(chunks)]
    window = cfg["params"]["window"]
    for factor in np.round(np.arange(1.0, 10.0001, 0.05), 2):
        flagged = [flag_rows(s["test"], float(np.quantile(s["train"], q)) * factor, window, len(s["test"]) + window - 1)
                   for s in scores]
        if np.concatenate(flagged).mean() <= target:
            return float(factor)
    return 10.0


def run_file(cfg: dict, df: pd.DataFrame, sensors: list[str], seed0: int, key: str, factor: float):
    """Test-part flags and row scores (the protocol), and whole-file flags (the notebook)."""
    window = cfg["params"]["window"]
    q = cfg["rule"][-2] if cfg["rule"][0] == "anomaly-free" else cfg["rule"][0]
    sc = seed_scores(cfg, df, sensors, seed0, key)
    train_ws, test_ws, all_ws = sc["train"], sc["test"], sc["whole"]
    threshold = float(np.quantile(train_ws, q)) * factor
    n = len(df) - N_TRAIN
    return (flag_rows(test_ws, threshold, window, n), row_scores(test_ws, threshold, window, n),
            flag_rows_notebook(all_ws, threshold, window, len(df)), (test_ws, threshold / factor))


def evaluate_config(name: str, files, seed: int) -> dict:
    cfg = CONFIGS[name]
    t0 = time.perf_counter()
    ys, preds, scores, vus, y_whole, p_whole = [], [], [], [], [], []
    factor = anomaly_free_factor(cfg, seed) if cfg["rule"][0] == "anomaly-free" else cfg["rule"][1]
    sweep_inputs = []
    for fname, df in files:
        sensors = [c for c in df.columns if c not in ("anomaly", "changepoint")]
        pred, score, pred_whole, swept = run_file(cfg, df, sensors, seed, fname, factor)
        sweep_inputs.append(swept)
        y = df["anomaly"].to_numpy().astype(int)[N_TRAIN:]
        y_whole.append(df["anomaly"].to_numpy().astype(int))
        p_whole.append(pred_whole)
        ys.append(y)
        preds.append(pred)
        scores.append(score)
        vus.append(metrics.vus_pr(y, score, max_buffer=2 * cfg["params"]["window"]) if y.any() else np.nan)
    window = cfg["params"]["window"]
    sweep = []  # hindsight: every factor scored with the test labels, to show the trade-off only
    for f in np.round(np.arange(1.0, 4.0001, 0.05), 2):
        c = metrics.binary_counts(np.concatenate(ys), np.concatenate(
            [flag_rows(ws, base * f, window, len(a)) for (ws, base), a in zip(sweep_inputs, ys)]))
        sweep.append([float(f), c["f1"], c["far"], c["mar"]])
    after = sum(int((p & (np.arange(len(a)) > np.flatnonzero(a)[-1])).sum()) for a, p in zip(ys, preds) if a.any())
    y, pred, score = np.concatenate(ys), np.concatenate(preds), np.concatenate(scores)
    counts = metrics.binary_counts(y, pred)
    from sklearn.metrics import roc_auc_score
    result = {**counts, "roc_auc": float(roc_auc_score(y, score)), "vus_pr": float(np.nanmean(vus)),
              "f1_point_adjusted": metrics.binary_counts(y, np.concatenate(
                  [metrics.point_adjust(a, b) for a, b in zip(ys, preds)]))["f1"],
              "whole_file": metrics.binary_counts(np.concatenate(y_whole), np.concatenate(p_whole)),
              "seconds": time.perf_counter() - t0, "n_test_rows": int(len(y)),
              "n_anomalous": int(y.sum()), "label": cfg["label"], "note": cfg["note"], "factor": factor,
              "fp_after_anomaly": after, "factor_sweep": sweep}
    print(f"{name:24s} factor {factor:.3f}  F1 {result['f1']:.4f}  FAR {100 * result['far']:.2f} %  MAR {100 * result['mar']:.2f} %  "
          f"ROC-AUC {result['roc_auc']:.4f}  VUS-PR {result['vus_pr']:.4f}  | whole files: "
          f"F1 {result['whole_file']['f1']:.4f} FAR {100 * result['whole_file']['far']:.2f} %  "
          f"({result['seconds']:.0f} s)",
          flush=True)
    return result


def library_errors(df: pd.DataFrame, sensors: list[str], seed: int, key: str, whole: bool = True,
                   params: dict | None = None) -> dict:
    """A default detector on the first 400 rows; its per-sensor window errors of the
    training part, the test part and the whole file, and its own flags (``predict``)."""
    params = params or {}
    key = "".join(f"{k}{v}_" for k, v in sorted(params.items())) + key
    if (seed, key) not in _DETS and CACHE is not None and (CACHE / _cache_name(seed, key)).exists():
        _DETS[(seed, key)] = _load_cached(seed, key)
    if (seed, key) not in _DETS:
        det = SeriesDetector(window=60, columns=sensors, device="cpu", verbose=0,
                             random_state=seed, **params).fit(df.iloc[:N_TRAIN])
        parts = {"train": df.iloc[:N_TRAIN], "test": df.iloc[N_TRAIN:]}
        if whole:
            parts["whole"] = df
        got = {name: det.window_scores(part, per_sensor=True) for name, part in parts.items()}
        got["predict"] = {name: det.predict(part).astype(bool) for name, part in parts.items() if name != "train"}
        got["steps"] = det.decision_function(parts["test"])
        got["det"] = det
        _DETS[(seed, key)] = got
        if CACHE is not None:
            _save_cached(seed, key, got)
    return _DETS[(seed, key)]


CACHE: Path | None = None  # --cache: the default detectors and their errors, kept between runs


def _cache_name(seed: int, key: str) -> str:
    return f"{key.replace('/', '_')}_seed{seed}"


def _save_cached(seed: int, key: str, got: dict) -> None:
    name = CACHE / _cache_name(seed, key)
    got["det"].save(name)
    arrays = {k: v for k, v in got.items() if isinstance(v, np.ndarray)}
    arrays.update({f"predict_{k}": v for k, v in got["predict"].items()})
    np.savez(CACHE / f"{name.name}.npz", **arrays)


def _load_cached(seed: int, key: str) -> dict:
    from reconad import load

    name = CACHE / _cache_name(seed, key)
    arrays = dict(np.load(CACHE / f"{name.name}.npz"))
    got = {k: v for k, v in arrays.items() if not k.startswith("predict_")}
    got["predict"] = {k[len("predict_"):]: v for k, v in arrays.items() if k.startswith("predict_")}
    got["det"] = load(name)
    return got


def alert_flags(det, per_sensor_train, per_sensor, n_rows: int, factor: float):
    """The detector's own rules on (averaged) per-sensor window errors: margin threshold
    over the training windows, causal step scores, alert rule with hysteresis."""
    from reconad.scoring import windows as W
    from reconad.thresholds import episodes, rules

    high = rules.margin(det.reduce_sensors(per_sensor_train), factor)
    steps = W.to_steps(det.reduce_sensors(per_sensor), n_rows, int(det.window), 1, "last")
    flags, _ = episodes.episodes(steps, high, high * det.alert_release, det.alert_enter, det.alert_leave)
    return flags, steps / high


def free_factor(cfg: dict, seed0: int, target: float = 0.15) -> float:
    """The margin factor from the anomaly-free recording (see ``LIBRARY["defaults_free"]``)."""
    free = read_csv(data_dir() / "skab" / "anomaly-free" / "anomaly-free.csv")
    sensors = list(free.columns)
    chunks = [free.iloc[c * FREE_CHUNK:(c + 1) * FREE_CHUNK] for c in range(len(free) // FREE_CHUNK)]
    per = []
    for c, ch in enumerate(chunks):
        runs = [library_errors(ch, sensors, seed0 + k, f"anomaly-free/{c}", whole=False) for k in range(cfg["seeds"])]
        per.append((runs[0]["det"], np.mean([r["train"] for r in runs], 0), np.mean([r["test"] for r in runs], 0),
                    len(ch) - N_TRAIN))
    for factor in np.round(np.arange(1.0, 10.0001, 0.05), 2):
        flagged = np.concatenate([alert_flags(det, tr, te, n, factor)[0] for det, tr, te, n in per])
        if flagged.mean() <= target:
            return float(factor)
    return 10.0


def evaluate_library(name: str, files, seed0: int) -> dict:
    from sklearn.metrics import roc_auc_score

    from reconad.thresholds import rules

    cfg = LIBRARY[name]
    t0 = time.perf_counter()
    factor = free_factor(cfg, seed0) if cfg["mode"] == "free" else rules.DEFAULTS["margin"]
    runs = {k: [] for k in ("y", "yw", "preds", "preds_w", "scores")}
    per_seed = {s: {"p": [], "pw": []} for s in range(cfg["seeds"])}
    for fname, df in files:
        sensors = [c for c in df.columns if c not in ("anomaly", "changepoint")]
        got = [library_errors(df, sensors, seed0 + k, fname, params=cfg.get("params")) for k in range(cfg["seeds"])]
        y_all = df["anomaly"].to_numpy().astype(int)
        runs["y"].append(y_all[N_TRAIN:])
        runs["yw"].append(y_all)
        for k, g in enumerate(got):
            per_seed[k]["p"].append(g["predict"]["test"])
            per_seed[k]["pw"].append(g["predict"]["whole"])
        det = got[0]["det"]
        avg = {part: np.mean([g[part] for g in got], 0) for part in ("train", "test", "whole")}
        p, s = alert_flags(det, avg["train"], avg["test"], len(df) - N_TRAIN, factor)
        pw, _ = alert_flags(det, avg["train"], avg["whole"], len(df), factor)
        if cfg["mode"] == "per_seed":  # the detectors' own predict and scores, as a user gets them
            s = np.mean([g["steps"] / g["det"].threshold_ for g in got], 0)
        runs["preds"].append(p)
        runs["preds_w"].append(pw)
        runs["scores"].append(s)
    y, yw = np.concatenate(runs["y"]), np.concatenate(runs["yw"])
    if cfg["mode"] == "per_seed":
        seeds = [(metrics.binary_counts(y, np.concatenate(v["p"])), metrics.binary_counts(yw, np.concatenate(v["pw"])))
                 for v in per_seed.values()]
        counts = {m: float(np.mean([a[m] for a, _ in seeds])) for m in ("f1", "far", "mar")}
        whole = {m: float(np.mean([b[m] for _, b in seeds])) for m in ("f1", "far", "mar")}
        spread = "; per seed (strict F1 / FAR, original F1 / FAR): " + ", ".join(
            f"{a['f1']:.4f} / {100 * a['far']:.2f} %, {b['f1']:.4f} / {100 * b['far']:.2f} %" for a, b in seeds)
        preds = [np.concatenate(v["p"]) for v in per_seed.values()]
    else:
        counts = metrics.binary_counts(y, np.concatenate(runs["preds"]))
        whole = metrics.binary_counts(yw, np.concatenate(runs["preds_w"]))
        spread = ""
        preds = [np.concatenate(runs["preds"])]
    after, fps = 0, 0
    for pred in preds:  # false alarms after the anomaly's end (mean over seeds)
        offs = 0
        for a in runs["y"]:
            part = pred[offs:offs + len(a)]
            offs += len(a)
            fps += int((part & (a == 0)).sum())
            if a.any():
                after += int((part & (np.arange(len(a)) > np.flatnonzero(a)[-1])).sum())
    vus = [metrics.vus_pr(a, sc, max_buffer=120) for a, sc in zip(runs["y"], runs["scores"]) if a.any()]
    result = {**{m: counts[m] for m in ("f1", "far", "mar")}, "whole_file": whole,
              "roc_auc": float(roc_auc_score(y, np.concatenate(runs["scores"]))), "vus_pr": float(np.mean(vus)),
              "seconds": time.perf_counter() - t0, "label": cfg["label"], "note": cfg["note"] + spread,
              "factor": factor, "fp": fps / len(preds), "fp_after_anomaly": after / len(preds),
              "n_test_rows": int(len(y)), "n_anomalous": int(y.sum())}
    print(f"{name:24s} factor {factor:.2f}  strict: F1 {result['f1']:.4f} FAR {100 * result['far']:.2f} % "
          f"MAR {100 * result['mar']:.2f} %  | original: F1 {whole['f1']:.4f} FAR {100 * whole['far']:.2f} % "
          f"MAR {100 * whole['mar']:.2f} %  ({result['seconds']:.0f} s){spread}", flush=True)
    return result


def false_alarm_section(results: dict) -> str:
    """Where the test parts' false alarms are, and the F1 any single factor could reach."""
    swept = {k: r for k, r in results.items() if "factor_sweep" in r}
    if not swept:
        return ""
    rows, seen = [], []
    for r in swept.values():
        if r["factor_sweep"] in seen:  # the same models and window scores as a row already shown
            continue
        seen.append(r["factor_sweep"])
        sw = np.array(r["factor_sweep"])
        best = sw[np.argmax(sw[:, 1])]
        ok = sw[sw[:, 2] <= 0.15]
        capped = ok[np.argmax(ok[:, 1])] if len(ok) else None
        rows.append([r["label"], f"{r['fp_after_anomaly']} of {r['fp']}",
                     f"{best[1]:.4f} (× {best[0]:.2f}, FAR {100 * best[2]:.1f} %)",
                     f"{capped[1]:.4f} (× {capped[0]:.2f}, FAR {100 * capped[2]:.1f} %, MAR {100 * capped[3]:.1f} %)"
                     if capped is not None else "–"])
    table = markdown_table(["row", "false alarms after the anomaly's end",
                            "best F1 of any factor (hindsight)", "best F1 with FAR ≤ 15 % (hindsight)"], rows)
    return f"""
## False alarms on the test parts (the rows with the protocol's flag rule)

With the protocol's scores and flag rule, no reconad row reaches F1 ≥ 0.82 with FAR ≤ 15 % on
the test parts alone; that is what the defaults above change. Most false alarms
lie in the normal rows that follow an anomaly (5,261 of the 11,030 normal test rows): once
the valve is reopened or the fault removed, the rig takes minutes to settle, and its
temperatures (above all the thermocouple's) stay away from the levels of the 400 training rows,
while the labels call these rows normal. The whole-file count hides this, because it adds
the 13,304 training rows as true negatives. Before any model, these rows already lie almost
as far from each file's training rows as the anomalous rows do (largest absolute z-score
of the 8 sensors: median 4.2 after the anomaly, 5.9 during it, 2.1 before it; it tells
anomalous rows from them with ROC-AUC 0.68, from the rows before the anomaly with 0.88):
`python benchmarks/skab_settling.py`, [skab_settling.md](skab_settling.md).

The table scores, after the fact, every threshold factor from 1.00 to 4.00 (step 0.05) on
the same window scores with the test labels. A factor picked this way uses the labels and
is **not** a result; it only shows how far any single threshold factor could go.

{table}

What the reconad rows change, chosen once for all files and never per file:

- `sensor_reduce="max"` (an option of `SeriesDetector`): a window's score is its largest
  per-sensor error instead of the sum over the 8 sensors. A valve fault shows strongly in one
  or two sensors (mostly the flow rate), while the settling after a fault raises several
  sensors a little; the sum lets small errors of many sensors add up, the maximum does not.
  It was kept after comparing the sum and the maximum on this benchmark, as one global
  setting (like the choice of network), with the protocol's threshold and flag rules.
- The factor from the anomaly-free recording uses no label and no test row: the protocol is
  played on chunks of 1,150 rows of normal operation of the same rig (a model on each
  chunk's first 400 rows, three seeds as in the row), and the factor is the smallest
  multiple of 0.05 that flags at most 15 % of the following 750 rows. That recording drifts
  more than the rows before the anomalies in the 34 files, so the factor it gives is
  cautious: FAR falls well below 15 % and many anomalous rows are missed.

Tried in a one-off exploration on the same data (one to three seeds, not part of this script)
and not kept, because none lifted the best F1 reachable with FAR ≤ 15 % to 0.82, even with a
hindsight factor: a scale per sensor taken from the anomaly-free
recording (its long-run spread instead of the 400 rows' spread), per-sensor errors divided by
their training median or standardised (the unregularised Gaussian score), excess over the
training median, thresholds of the form mean + k·std, windows of 30 rows, 100 epochs,
pretraining on the anomaly-free recording before each file's model, and flag rules that use
the median or a shorter run of the windows around a row.
"""


def dominates(r: dict) -> str:
    """Whether a row has higher F1 and lower FAR than the Conv-AE, on each board."""
    s = r["f1"] > CONV_AE_STRICT[0] and r["far"] < CONV_AE_STRICT[1]
    o = r["whole_file"]["f1"] > CONV_AE_ORIGINAL[0] and r["whole_file"]["far"] < CONV_AE_ORIGINAL[1]
    return f"{'yes' if s else 'no'} / {'yes' if o else 'no'}"


def held_out_text() -> str:
    """The leave-one-file-out estimate that ``benchmarks/skab_selection.py`` wrote."""
    path = ROOT / "docs" / "skab_selection.json"
    if not path.exists():
        return "run `python benchmarks/skab_selection.py` for its score"
    got = json.loads(path.read_text())
    s, o = got["held_out_strict"], got["held_out_original"]
    return (f"strict F1 {s[0]:.4f} / FAR {100 * s[1]:.2f} %, original {o[0]:.4f} / {100 * o[1]:.2f} % "
            "(Conv-AE 0.78 / 13.55 % and 0.77 / 6.38 %) on files whose labels took no part in the choice")


def render(results: dict, machine_text: str) -> tuple[str, str]:
    """The printed table and the markdown page."""
    pct = lambda v: f"{100 * v:.2f} %"  # noqa: E731
    rows = [[f"{name} (published)", f"{s[0]:.2f}", pct(s[1]), pct(s[2]), "–", "–",
             f"{o[0]:.2f} / {pct(o[1])} / {pct(o[2])}", "–"] for name, s, o in PUBLISHED]
    for r in results.values():
        w = r["whole_file"]
        rows.append([r["label"], f"{r['f1']:.4f}", pct(r["far"]), pct(r["mar"]), f"{r['roc_auc']:.4f}",
                     f"{r['vus_pr']:.4f}", f"{w['f1']:.4f} / {pct(w['far'])} / {pct(w['mar'])}", dominates(r)])
    table = markdown_table(["method", "strict board (test parts): F1", "FAR", "MAR", "ROC-AUC", "VUS-PR",
                            "original board (whole files): F1 / FAR / MAR",
                            "beats Conv-AE (F1 and FAR): strict / original"], rows)
    fmt_fp = lambda v: f"{v:.0f}" if isinstance(v, float) else str(v)  # noqa: E731
    notes = "\n".join(f"- **{r['label']}**: {r['note']}"
                      + (f"; threshold factor {r['factor']:.2f}" if "factor" in r else "")
                      + (f"; {r['seconds']:.0f} s for the 34 files" if r["label"] not in LIBRARY_LABELS else
                         "; the detectors were fitted beforehand into --cache (--warm K/4 in 4 processes, about "
                         "6 minutes on the 2 busy cores)")
                      + (f"; point-adjusted F1 {r['f1_point_adjusted']:.4f} (lenient, for comparison only)"
                         if "f1_point_adjusted" in r else "")
                      + (f"; {fmt_fp(r['fp_after_anomaly'])} of its {fmt_fp(r['fp'])} false alarms lie after the "
                         "anomaly's end" if "fp_after_anomaly" in r and "fp" in r else "") + "."
                      for r in results.values())
    lib = [(k, r) for k, r in results.items() if k in LIBRARY]
    summary = ""
    if lib:
        summary = "reconad's own defaults against the Conv-AE (F1 higher and FAR lower on each board):\n\n" + "\n".join(
            f"- **{r['label']}**: strict board F1 {r['f1']:.4f}, FAR {pct(r['far'])}, MAR {pct(r['mar'])} "
            f"(Conv-AE 0.78 / 13.55 % / 28.02 %); original board F1 {r['whole_file']['f1']:.4f}, FAR "
            f"{pct(r['whole_file']['far'])}, MAR {pct(r['whole_file']['mar'])} (Conv-AE 0.77 / 6.38 % / 29.65 %): "
            f"beats it on strict / original: {dominates(r)}." for k, r in lib) + "\n"
    md = f"""# SKAB outlier detection (leaderboard protocol, both published boards)

Command: `python benchmarks/skab.py` (all rows below; `--only NAME ...` for some, `--files N`
for a quick look at the first N files; `--render` rewrites this page from skab.json). The rows of
reconad's defaults alone: `python benchmarks/skab.py --only defaults defaults_ens3 epochs50 defaults_free`
(`--cache DIR` keeps the fitted detectors; `--warm K/N --cache DIR` in N processes fits them in parallel).
Machine: {machine_text}; the 2 CPU cores were shared with other jobs
(load average 10 to 15), so the times are long and only indicative.

## The two published boards

SKAB's README publishes two outlier-detection tables, and they count different rows. Its
second table, the "Strict Leaderboard", is introduced with: "This leaderboard shows
performance of algorithms on test set, unlike original leaderboard which evaluates both
training and testing data all together." So:

| board | what it counts | Conv-AE F1 / FAR / MAR |
|---|---|---|
| original ("Proposed Leaderboard") | each whole file, its 400 training rows included | 0.77 / 6.38 % / 29.65 % |
| strict ("Strict Leaderboard") | the test parts only (the rows after the first 400) | 0.78 / 13.55 % / 28.02 % |

Every row below is counted both ways: the strict board's count in the F1, FAR and MAR
columns, the original board's in the column after VUS-PR. The reproduction of the Conv-AE
matches the original board almost exactly; on the test parts it gets a much higher FAR
than the strict board shows.

{table}

{summary}
## What reconad's defaults do

`SeriesDetector(window=60)` with no other setting (what the rows "reconad defaults" run):

- **Slow sensors are the operating point** (`slow_sensors="auto"`, `score_slow=False`): a
  sensor whose training rows change smoothly (the spread of its step-to-step changes is
  less than half its spread, `reconad.data.series.smoothness`; here mostly the two temperatures)
  has its mean over each window removed before the network, and its error does not make
  the score. After a fault the rig settles for minutes and the temperatures stay away
  from the 400 training rows ([skab_settling.md](skab_settling.md)); the model now sees
  how they move inside a window, not where their level is, and alarms come from the fast
  sensors (flow rate, vibration, current, voltage, pressure).
- **Scores from each window's newest rows** (`score_last=0.5`, `combine="last"`): a step
  is scored by the window that ends at it, from the errors of that window's newest 30
  rows. No later row is used, and an alarm does not hang on for a whole window after a
  fault has gone.
- **The worst sensor** (`sensor_reduce="max"`): a window's score is its largest scored
  sensor error.
- **Threshold from the training windows** (`threshold_method="margin"`, factor 2): twice
  the 0.999 quantile of the scores of the training windows (the protocol uses the same
  quantile × 4/3).
- **At most 30 epochs** (`epochs=30`), as the models the settings were chosen with. With 50
  (the former default; row "epochs=50" above) the training windows are rebuilt better, the
  margin threshold over them falls, and FAR rises above the Conv-AE's on both boards.
- **Alert rule with hysteresis** (`alert_enter=1`, `alert_leave=10`, `alert_release=0.9`):
  an alert starts when a step scores above the threshold and ends once 10 steps in a row
  score at or below 0.9 × the threshold; `predict`, `reconad monitor` and the exported
  graph follow the same rule (`reconad.thresholds.episodes`).

How these settings were chosen, without test labels of the file being scored:
`python benchmarks/skab_selection.py` scores 560 combinations (slow sensors scored or not;
the newest 10, 20, 30 or 60 rows; enter after 1, 5, 10, 20 or 30 steps; margin 1.0 to 2.5;
with or without hysteresis) from models trained once per file (3 seeds, 30 epochs). For
each file, the combination with the best strict-board F1 whose FAR stays under 95 % of
the Conv-AE's on both boards is chosen **on the other 33 files**, and the held-out file is
scored with it: {held_out_text()}. The defaults are the same
rule's choice on all 34 files (see [skab_selection.md](skab_selection.md) for the counts,
and for why the rule keeps a 5 % margin under the limits).
{false_alarm_section({k: r for k, r in results.items() if "factor_sweep" in r})}
How the protocol rows are made (`benchmarks/skab.py`): the 34 files of `valve1`, `valve2` and
`other`; a new model per file, trained on its first 400 rows (a `StandardScaler` fitted on
them); windows of 60 rows, stride 1; window score = sum over sensors of the mean absolute
error over time; threshold = 0.999 quantile of the 341 training windows' scores × 4/3; a
test row i is flagged when the windows starting at rows i−59 … i−1 of the test part all
exceed it (rows within 59 of either end of the test part are never flagged); confusion
counts pooled over the 23,801 test rows (12,771 anomalous): F1 = TP / (TP + (FP+FN)/2),
FAR = FP/(FP+TN), MAR = FN/(FN+TP). ROC-AUC (pooled) and VUS-PR (mean over the files,
buffers 0 … 120) use the continuous form of the flag rule: a row's score is the smallest
threshold-normalised score among the windows i−59 … i−1. For reconad's default rows they
use the step scores divided by the threshold.

The original-board column follows the leaderboard notebooks literally for the protocol
rows: windows over the whole file (training rows included), their loop over rows 59 …
n_windows−60, and counts over all rows of the files, so the 400 training rows of each
file count as true negatives. For reconad's default rows it is `predict` on the whole
file, counted over all its rows.

{notes}

Reproductions (what is kept from the leaderboard's code): the Conv-AE layout (Conv1d 32 →
16, kernel 7, stride 2, dropout 0.2, mirrored transposed convolutions) **with its
one-channel decoder output that the loss and the score broadcast over the 8 sensors**;
Adam 1e-3, MSE loss, batch 32, at most 100 epochs, early stopping after 5 epochs without a
better validation loss on 10 % of the windows. The LSTM-AE notebook uses windows of 10,
the 0.99 quantile × 3/2 and an MAE loss; so does the reproduction. Differences that
remain: PyTorch LSTMs use tanh where the Keras model asked for relu; our validation
windows are drawn at random (Keras takes the last 10 %) and the best weights are kept
(Keras keeps the last); each file's model is seeded alike (the notebooks seed once, so
their results depend on the file order). The earlier reconad rows that use the protocol's
flag rule were measured with the detector's former defaults (no slow sensors, errors over
whole windows); the script pins those settings for them.

VUS-PR is computed by `reconad.evaluation.metrics.vus_pr` from its definition (Paparrizos et al.,
"Volume Under the Surface", VLDB 2022), vectorised over thresholds (every distinct score
is a threshold). It was checked in two ways: against a literal loop transcription of the
definition in `tests/test_series.py`, and once against the authors' reference code
(`RangeAUC` of the `vus` package 0.0.6), on 180 random cases of up to 240 steps where its
250 thresholds cover every score: the largest difference was 2e-16.
"""
    return table, md


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", default=list(CONFIGS) + list(LIBRARY), choices=list(CONFIGS) + list(LIBRARY))
    ap.add_argument("--files", type=int, default=None, help="use only the first N files (quick look)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--no-write", action="store_true", help="print only; do not write docs/skab.*")
    ap.add_argument("--render", action="store_true", help="re-write docs/skab.md from docs/skab.json")
    ap.add_argument("--cache", type=Path, default=None, help="keep the default detectors here (reused when there)")
    ap.add_argument("--warm", default=None, help="K/N: only fit the default detectors of files K, K+N, ... "
                                                 "(and anomaly-free chunks) into --cache, then stop")
    args = ap.parse_args()
    global CACHE
    CACHE = args.cache
    if CACHE is not None:
        CACHE.mkdir(parents=True, exist_ok=True)
    if args.warm:
        torch.set_num_threads(args.threads)
        k, n = (int(v) for v in args.warm.split("/"))
        files = skab_files(data_dir() / "skab")
        for i, (fname, df) in enumerate(files):
            if i % n == k:
                sensors = [c for c in df.columns if c not in ("anomaly", "changepoint")]
                for s in range(3):
                    library_errors(df, sensors, args.seed + s, fname)
                print("warm", fname, flush=True)
        free = read_csv(data_dir() / "skab" / "anomaly-free" / "anomaly-free.csv")
        for c in range(len(free) // FREE_CHUNK):
            if c % n == k:
                for s in range(3):
                    library_errors(free.iloc[c * FREE_CHUNK:(c + 1) * FREE_CHUNK], list(free.columns),
                                   args.seed + s, f"anomaly-free/{c}", whole=False)
                print("warm anomaly-free chunk", c, flush=True)
        return
    if args.render:
        saved = json.loads((ROOT / "docs" / "skab.json").read_text())
        order = list(CONFIGS) + list(LIBRARY)
        table, md = render({k: saved["results"][k] for k in order if k in saved["results"]}, saved["machine"])
        write_results("skab", md, saved)
        return
    torch.set_num_threads(args.threads)
    files = skab_files(data_dir() / "skab")
    if args.files:
        files = files[:args.files]
    print(f"{len(files)} files, {sum(len(d) - N_TRAIN for _, d in files)} test rows", flush=True)
    write = not (args.no_write or args.files)
    saved_path = ROOT / "docs" / "skab.json"
    results = {}
    if write and saved_path.exists():  # rows from earlier runs of other configurations are kept
        results = json.loads(saved_path.read_text()).get("results", {})
    order = list(CONFIGS) + list(LIBRARY)
    for name in args.only:
        results[name] = evaluate_library(name, files, args.seed) if name in LIBRARY else \
            evaluate_config(name, files, args.seed)
        if write:  # after each configuration, so a long run leaves what it has done
            table, md = render({k: results[k] for k in order if k in results}, machine())
            write_results("skab", md, {"machine": machine(), "results": results})
    table, _ = render({k: results[k] for k in order if k in results}, machine())
    print("\n" + table)


if __name__ == "__main__":
    main()
