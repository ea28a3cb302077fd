"""``reconad drift``: has normal data moved away from the training reference?"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from reconad.cli import kinds
from reconad.cli.common import MODEL_HELP, err_console


def _numeric(path: Path, encoding: str | None):
    """The numeric columns of a CSV file (encoding and delimiter detected unless given; a
    time column is set aside)."""
    if not path.is_file():
        raise FileNotFoundError(f"CSV file not found: {path}")
    frame = kinds.read_csv(path, encoding, parse_dates=True).select_dtypes("number")
    if frame.shape[1] == 0:
        raise ValueError(f"{path} has no numeric columns")
    return frame


def _model_columns(det) -> list[str]:
    """The numeric input columns of a series or table model."""
    if det.kind == "series":
        return list(det.columns_)
    if det.kind == "table":
        return list(det.encoder_.numeric_)
    raise ValueError("drift compares rows of CSV files; an image model has none (give a series or table "
                     "model, or no --model)")


def drift(
    reference: Path = typer.Option(..., help="CSV of normal data (e.g. the training data)."),
    input: Path = typer.Option(..., "--input", help="CSV of recent data, rows in time order."),
    window: int = typer.Option(300, help="Rows compared at each check."),
    method: str = typer.Option("mean_shift", help="mean_shift (sensor series), psi or ks (independent rows)."),
    threshold: Optional[float] = typer.Option(None, help="Drift above this (default: 4, 0.25, 0.3 by method)."),
    check_every: Optional[int] = typer.Option(None, help="Rows between checks (default: window / 2)."),
    alerts: Optional[Path] = typer.Option(None, "--alert-config", "--alerts",
                                          help="Alert channels (JSON): send each drift signal there."),
    model: Optional[Path] = typer.Option(None, help="A series or table model (" + MODEL_HELP.rstrip(".")
                                         + "): compare its numeric input columns, and record its version."),
    encoding: Optional[str] = typer.Option(None, help="CSV encoding (default: UTF-8, else Shift-JIS/cp932)."),
):
    """Compare recent data with the reference; print one JSON line per drift signal.

    The numeric columns are compared (the model's, with --model; else those the two files
    share); text columns are not, and rows with a missing value are left out. "row" in a
    signal counts the data rows of --input read so far."""
    from reconad.ops.drift import DriftMonitor

    ref, new = _numeric(reference, encoding), _numeric(input, encoding)
    version = None
    if model is not None:
        from reconad.ops.loading import load_model

        det = load_model(model)
        version = det.model_version_
        columns = _model_columns(det)
        absent = [c for c in columns if c not in ref.columns or c not in new.columns]
        if absent:
            raise ValueError(f"the model's numeric column(s) {', '.join(absent)} are not numeric columns of "
                             f"both {reference} and {input}")
    else:
        columns = [c for c in ref.columns if c in new.columns]
    if not columns:
        raise ValueError(f"{reference} and {input} share no numeric columns")
    ref = ref[columns].dropna()
    complete = new[columns].notna().all(axis=1).to_numpy()
    rows = np.flatnonzero(complete) + 1       # 1-based line of each compared row among the data rows
    mon = DriftMonitor(ref.to_numpy(), feature_names=columns, method=method, threshold=threshold,
                       window=window, check_every=check_every, model_version=version)
    dispatcher = None
    if alerts is not None:
        from reconad.ops.alerts import AlertDispatcher
        dispatcher = AlertDispatcher(alerts, background=False)
    X, step, signals, checks = new[columns].to_numpy()[complete], mon.check_every, 0, 0
    for start in range(0, len(X), step):
        before = mon.last_statistics_
        sig = mon.update(X[start:start + step])
        checks += mon.last_statistics_ is not before
        if sig is None:
            continue
        signals += 1
        alert = {**sig.to_alert(), "row": int(rows[min(start + step, len(X)) - 1])}
        sys.stdout.write(json.dumps(alert, ensure_ascii=False) + "\n")
        if dispatcher is not None:
            dispatcher.submit(alert)
    err_console.print(f"{checks} checks of {window} rows, {signals} drift signals ({method}, "
                      f"threshold {mon.threshold:g}); columns: {', '.join(columns)}"
                      + (f"; {int((~complete).sum())} rows with missing values left out" if not complete.all() else "")
                      + (f"; model {version}" if version else ""), highlight=False)
    if dispatcher is not None and not dispatcher.close(timeout=10):
        err_console.print(f"some alerts are not delivered yet; they wait in {dispatcher.outbox}", highlight=False)
