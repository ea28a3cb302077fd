"""Drift of normal data on SKAB: quiet on normal operation, firing where the regime changed.

The raw 8 sensor values (1 Hz) are fed to ``reconad.ops.drift.DriftMonitor`` in time order,
``check_every`` rows at a time, for each method (mean_shift, psi, ks) at its default
threshold. A *check* is one comparison of the last ``window`` rows with the reference; the
false-drift rate is the share of checks on normal data that raised a signal.

1. self: reference = all of ``anomaly-free.csv``; stream = the same file.
2. held-out: reference = its first half; stream = its second half (normal data the
   reference has not seen).
3. experiments: reference = all of ``anomaly-free.csv``; stream = each of the 34 experiment
   files (valve1, valve2, other), recorded on other days, each with one anomaly.
4. within file: reference = the first 400 rows of each experiment file (its normal
   training part in the SKAB protocol); stream = the rest; checks whose window lies before
   the anomaly are normal, checks whose window overlaps it are the changed regime.

    python benchmarks/skab_drift.py
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from _common import data_dir, machine, markdown_table, write_results

from reconad.ops.drift import DriftMonitor

METHODS = ("mean_shift", "psi", "ks")
WINDOW = 300          # 5 minutes at 1 Hz
WITHIN_WINDOW = 100   # the 400-row reference of one file holds 2 x 100 rows at least twice


def read(path):
    return pd.read_csv(path, sep=";", index_col="datetime")


def stream(ref, X, method, window, names):
    """Feed X in steps of window // 2 rows; per check: (end row, fired)."""
    mon = DriftMonitor(ref, feature_names=names, method=method, window=window)
    step, checks = mon.check_every, []
    for start in range(0, len(X) - step + 1, step):
        sig = mon.update(X[start:start + step])
        if mon._X.shape[0] >= window:
            checks.append((start + step, sig))
    return checks


def reading(data: dict) -> str:
    ms = data["methods"]["mean_shift"]
    w, e = ms["within_file"], ms["experiments"]
    moved = ", ".join(list(e["most_moved_first"])[:3])
    return (
        "Reading the table:\n\n"
        f"- With `mean_shift` the drift signal stays quiet on normal operation: "
        f"{ms['self']['signals']} of {ms['self']['checks']} checks fired on `anomaly-free.csv` against itself and "
        f"{ms['held_out']['signals']} of {ms['held_out']['checks']} on its unseen second half "
        "(false-drift rate 0 %), although the fluid temperature (Thermocouple) climbs by more than 2 °C over the "
        "2.6 hours: the spread of the reference's own window means counts that wandering as normal.\n"
        f"- It fires on {e['files_fired']} of {e['files']} experiment files against the anomaly-free "
        f"reference, most often naming {moved} first (median {e['median_rows_to_first_signal']:.0f} rows "
        "to the first signal, i.e. the first full window). These files were recorded on other days, so "
        "their normal operation already differs from the reference: exactly the situation where the "
        "detector should be retrained.\n"
        "- PSI and KS, computed on a 5-minute window of 1 Hz sensor data, report drift on every check "
        "of normal data: the window covers a narrow slice of a slowly moving signal, so its distribution "
        "never looks like the whole reference. Use them for rows that are independent draws (parts, "
        "batches, images), not for raw sensor series.\n"
        f"- Against a reference of only 400 rows (6.7 minutes, the SKAB training part), `mean_shift` "
        f"fires in {w['anomaly_signals']} of {w['anomaly_checks']} checks overlapping the anomaly "
        f"(anomalies of {w['files_caught']} of 34 files), but also in {w['normal_signals']} of "
        f"{w['normal_checks']} normal checks ({w['normal_signals'] / max(w['normal_checks'], 1):.0%}, "
        f"{w['files_with_false_drift']} files): a few minutes of reference do not show how far normal data "
        "wanders. Give the drift monitor a reference that spans the normal variation (hours, a shift, "
        "ideally the whole training set).")


def main() -> None:
    root = data_dir() / "skab"
    free = read(root / "anomaly-free" / "anomaly-free.csv")
    names = list(free.columns)
    X = free.to_numpy()
    files = sorted(p for folder in ("valve1", "valve2", "other") for p in (root / folder).glob("*.csv"))
    experiments = [(f"{p.parent.name}/{p.name}", read(p)) for p in files]
    data = {"machine": machine(), "window": WINDOW, "within_window": WITHIN_WINDOW, "methods": {}}
    rows = []
    t0 = time.perf_counter()
    for method in METHODS:
        res = {}
        checks = stream(X, X, method, WINDOW, names)
        res["self"] = {"checks": len(checks), "signals": sum(s is not None for _, s in checks)}
        half = len(X) // 2
        checks = stream(X[:half], X[half:], method, WINDOW, names)
        res["held_out"] = {"checks": len(checks), "signals": sum(s is not None for _, s in checks)}
        moved: dict[str, int] = {}
        fired, first = 0, []
        for name, df in experiments:
            checks = stream(X, df[names].to_numpy(), method, WINDOW, names)
            hits = [end for end, s in checks if s is not None]
            fired += bool(hits)
            if hits:
                first.append(hits[0])
            for _, s in checks:
                for f in (s.top_features if s else [])[:1]:
                    moved[f] = moved.get(f, 0) + 1
        res["experiments"] = {"files": len(experiments), "files_fired": fired,
                              "median_rows_to_first_signal": float(np.median(first)) if first else None,
                              "most_moved_first": dict(sorted(moved.items(), key=lambda kv: -kv[1]))}
        normal_checks, anomaly_checks, files_caught, files_false = [0, 0], [0, 0], 0, 0
        for name, df in experiments:
            Y, a = df[names].to_numpy(), df["anomaly"].to_numpy()
            checks = stream(Y[:400], Y[400:], method, WITHIN_WINDOW, names)
            caught = false = False
            for end, s in checks:
                in_anomaly = bool(a[400 + end - WITHIN_WINDOW: 400 + end].any())
                bucket = anomaly_checks if in_anomaly else normal_checks
                bucket[0] += 1
                bucket[1] += s is not None
                caught |= in_anomaly and s is not None
                false |= (not in_anomaly) and s is not None
            files_caught += caught
            files_false += false
        res["within_file"] = {"normal_checks": normal_checks[0], "normal_signals": normal_checks[1],
                              "anomaly_checks": anomaly_checks[0], "anomaly_signals": anomaly_checks[1],
                              "files_caught": files_caught, "files_with_false_drift": files_false}
        data["methods"][method] = res
        rate = lambda d, k="signals", n="checks": d[k] / max(d[n], 1)  # noqa: E731
        w = res["within_file"]
        rows.append([method,
                     f"{rate(res['self']):.1%} ({res['self']['signals']}/{res['self']['checks']})",
                     f"{rate(res['held_out']):.1%} ({res['held_out']['signals']}/{res['held_out']['checks']})",
                     f"{fired}/{len(experiments)}",
                     f"{w['normal_signals'] / max(w['normal_checks'], 1):.1%}",
                     f"{w['anomaly_signals'] / max(w['anomaly_checks'], 1):.1%}",
                     f"{files_caught}/{len(experiments)}"])
        print(f"{method}: done", flush=True)
    data["seconds"] = time.perf_counter() - t0
    header = ["method", "false drift: self", "false drift: held-out half", "experiment files fired",
              "within file: false drift", "within file: anomaly checks fired", "within file: anomalies caught"]
    table = markdown_table(header, rows)
    print("\n" + table)
    md = ("# Drift of normal data on SKAB\n\n"
          "`DriftMonitor` on the raw 8 sensors of SKAB (1 Hz), each method at its default threshold "
          f"(mean_shift 4, PSI 0.25, KS 0.3), a window of {WINDOW} rows (5 minutes) checked every "
          f"{WINDOW // 2} rows. False drift = share of checks on normal data that raised a signal.\n\n"
          "- **self**: reference = all of `anomaly-free.csv`, stream = the same file.\n"
          "- **held-out half**: reference = its first half, stream = its second half.\n"
          "- **experiment files fired**: reference = all of `anomaly-free.csv`, stream = each of the "
          "34 experiment files (recorded on other days); a file counts when at least one check fired.\n"
          f"- **within file**: reference = the first 400 rows of each experiment file, window "
          f"{WITHIN_WINDOW} rows; checks whose window lies before the anomaly are normal, those "
          "overlapping it are the changed regime.\n\n"
          f"Command: `python benchmarks/skab_drift.py`  \nMachine: {data['machine']}; "
          f"{data['seconds']:.0f} s for everything.\n\n" + table + "\n\n" + reading(data) + "\n")
    write_results("skab_drift", md, data)


if __name__ == "__main__":
    main()
