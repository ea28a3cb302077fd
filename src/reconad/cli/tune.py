"""``reconad tune``: search hyper-parameters with Optuna."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from reconad.cli import kinds
from reconad.cli.common import check_dir, console, names


def tune(
    out: Path = typer.Option(..., help="JSON file for the best parameters and all trials."),
    table: Optional[Path] = typer.Option(None, help="CSV of normal rows (tables)."),
    normal: Optional[List[Path]] = typer.Option(None, "--normal", help="Folder(s) of normal images."),
    model: Optional[str] = typer.Option(None, help="The catalogue's models: "
                                        + kinds.models_help(("image", "table")) + "."),
    columns: Optional[str] = typer.Option(None, help="Tables: comma-separated columns to use."),
    encoding: Optional[str] = typer.Option(None, help="Tables: text encoding, e.g. shift_jis "
                                           "(default: UTF-8, else Shift-JIS/cp932)."),
    budget: float = typer.Option(60.0, help="Time budget in seconds (no trial starts after it)."),
    trials: Optional[int] = typer.Option(None, help="At most this many trials."),
    epochs: int = typer.Option(20, help="Training epochs of every trial."),
    val: Optional[Path] = typer.Option(None, help="Tables: labelled validation CSV."),
    label_column: str = typer.Option("label", help="Tables: the label column of --val (1 = anomaly)."),
    val_normal: Optional[Path] = typer.Option(None, help="Images: folder of normal validation images."),
    val_anomalous: Optional[Path] = typer.Option(None, help="Images: folder of anomalous validation images."),
    metric: str = typer.Option("roc_auc", help="With labels: roc_auc or pr_auc."),
    seed: int = typer.Option(0),
):
    """Search hyper-parameters with Optuna; writes the best ones with the study's trials."""
    from reconad.evaluation import tuning

    if (table is None) == (not normal):
        raise ValueError("give either --table (a CSV of normal rows) or --normal (image folders)")
    X_val = y_val = None
    if table is not None:
        X = kinds.read_csv(table, encoding, parse_dates=False)
        det = kinds.detector_class("table")(model=kinds.check_model("table", model), columns=names(columns),
                                            encoding=X.attrs["encoding"], epochs=epochs, random_state=seed,
                                            verbose=0)
        if val is not None:
            frame = kinds.read_csv(val, encoding, parse_dates=False)
            if label_column not in frame.columns:
                raise ValueError(f"label column {label_column!r} not in {val}")
            y_val = frame[label_column].to_numpy()
            X_val = frame.drop(columns=[label_column])
    else:
        from reconad.data.images import list_image_files

        for folder in normal:
            check_dir(folder, "normal-image")
        det = kinds.detector_class("image")(model=kinds.check_model("image", model), epochs=epochs,
                                            random_state=seed, verbose=0)
        X = [str(f) for folder in normal for f in list_image_files(folder)]
        if (val_normal is None) != (val_anomalous is None):
            raise ValueError("give both --val-normal and --val-anomalous, or neither")
        if val_normal is not None:
            good = [str(f) for f in list_image_files(val_normal)]
            bad = [str(f) for f in list_image_files(val_anomalous)]
            X_val, y_val = good + bad, [0] * len(good) + [1] * len(bad)
    result = tuning.tune(det, X, X_val, y_val, timeout=budget, n_trials=trials, metric=metric,
                         out=out, seed=seed)
    shown = Table(title=f"best of {len(result['trials'])} trials ({result['objective']} "
                        f"{result['best_value']:.6g})")
    shown.add_column("parameter")
    shown.add_column("value", justify="right")
    for key, value in result["best_params"].items():
        shown.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(shown)
    console.print(f"wrote {out} ({result['elapsed_s']:.0f} s)")
