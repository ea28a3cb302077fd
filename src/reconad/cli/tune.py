"""``reconad tune``: search hyper-parameters with Optuna (images, series, tables)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from reconad.cli import kinds
from reconad.cli.common import COLUMNS_HELP, ENCODING_HELP, STRIDE_HELP, check_dir, console, names
from reconad.cli.train import APPLIES_TO

#: the options of ``tune`` only that concern some kinds of data only
TUNE_APPLIES_TO = {"--val": ("series", "table"), "--val-normal": ("image",), "--val-anomalous": ("image",)}


def tune(
    out: Path = typer.Option(..., help="JSON file for the best parameters and all trials."),
    normal: Optional[List[Path]] = typer.Option(None, "--normal", help="Normal data: folder(s) of images, "
                                                "or CSV file(s) of a table or of sensor series."),
    kind: str = typer.Option("auto", help="image, series, table, or auto (as for train: a CSV is a series "
                             "when --window is given or it has a time column, else a table)."),
    table: Optional[Path] = typer.Option(None, help="CSV of normal rows: the same as --normal FILE --kind table."),
    model: Optional[str] = typer.Option(None, help="The catalogue's models, per kind: "
                                        + kinds.models_help() + "."),
    columns: Optional[str] = typer.Option(None, help=COLUMNS_HELP),
    encoding: Optional[str] = typer.Option(None, help=ENCODING_HELP),
    window: Optional[int] = typer.Option(None, help="Series: rows per window (default 60); fixed, not searched."),
    stride: Optional[int] = typer.Option(None, help=STRIDE_HELP),
    budget: float = typer.Option(60.0, help="Time budget in seconds (no trial starts after it)."),
    trials: Optional[int] = typer.Option(None, help="At most this many trials."),
    epochs: Optional[int] = typer.Option(None, help="Training epochs of every trial (default: the "
                                         "detector's for the model, as `train` uses)."),
    val: Optional[Path] = typer.Option(None, help="Tables, series: labelled validation CSV."),
    label_column: str = typer.Option("label", help="Tables, series: the label column of --val (1 = anomaly)."),
    val_normal: Optional[Path] = typer.Option(None, help="Images: folder of normal validation images."),
    val_anomalous: Optional[Path] = typer.Option(None, help="Images: folder of anomalous validation images."),
    metric: str = typer.Option("roc_auc", help="With labels: roc_auc or pr_auc."),
    seed: int = typer.Option(0),
):
    """Search hyper-parameters with Optuna; writes the best ones with the study's trials.

    Without labels the objective is the mean score of held-out normal data (for a series,
    its last rows); with labels (--val, or --val-normal and --val-anomalous) the ROC-AUC."""
    from reconad.evaluation import tuning

    paths = list(normal or [])
    if table is not None:
        if paths or kind not in ("auto", "table"):
            raise ValueError("--table is a CSV of normal rows: give it alone, or --normal FILE --kind ...")
        paths, kind = [table], "table"
    if not paths:
        raise ValueError("no training data: give --normal (folders, image files or CSV files) or --table FILE")
    chosen, reason = kinds.guess_kind(kind, paths, None, window_given=window is not None, encoding=encoding)
    if kind == "auto":
        console.print(f"kind auto: {chosen} ({reason})", highlight=False, soft_wrap=True)
    given = {"--columns": columns, "--encoding": encoding, "--window": window, "--stride": stride,
             "--val": val, "--val-normal": val_normal, "--val-anomalous": val_anomalous}
    applies = {**APPLIES_TO, **TUNE_APPLIES_TO}
    wrong = [flag for flag, value in given.items() if value is not None and chosen not in applies[flag]]
    if wrong:
        flag = wrong[0]
        raise ValueError(f"{flag} applies to {' and '.join(applies[flag])} models, not to {chosen} models")
    params = dict(model=kinds.check_model(chosen, model), epochs=epochs, random_state=seed, verbose=0,
                  columns=names(columns), window=window, stride=stride)
    det = kinds.detector_class(chosen)(**{k: v for k, v in params.items() if v is not None})
    if chosen == "image":
        X, X_val, y_val = _images(paths, val_normal, val_anomalous)
    else:
        X, X_val, y_val = _rows(det, paths, val, label_column, encoding)
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


def _images(paths: list[Path], val_normal: Path | None, val_anomalous: Path | None):
    """Image files to fit on, and the labelled validation images when both folders are given."""
    from reconad.data.images import list_image_files

    X = []
    for path in paths:
        if path.is_file():
            X.append(str(path))
            continue
        check_dir(path, "normal-image")
        X.extend(str(f) for f in list_image_files(path))
    if (val_normal is None) != (val_anomalous is None):
        raise ValueError("give both --val-normal and --val-anomalous, or neither")
    if val_normal is None:
        return X, None, None
    good = [str(f) for f in list_image_files(val_normal)]
    bad = [str(f) for f in list_image_files(val_anomalous)]
    return X, good + bad, [0] * len(good) + [1] * len(bad)


def _rows(det, paths: list[Path], val: Path | None, label_column: str, encoding: str | None):
    """Normal rows to fit on (a table: all files' rows; a series: one segment per file) and
    the labelled validation rows of ``val`` when given (its columns those of the training
    data when it has them all)."""
    import pandas as pd

    series = det.kind == "series"
    frames = [kinds.read_csv(p, encoding, parse_dates=series) for p in paths]
    if series:
        X = frames if len(frames) > 1 else frames[0]
    else:
        X = pd.concat(frames, ignore_index=True)
        det.set_params(encoding=frames[0].attrs["encoding"])
    if val is None:
        return X, None, None
    frame = kinds.read_csv(val, encoding, parse_dates=series)
    if label_column not in frame.columns:
        raise ValueError(f"label column {label_column!r} not in {val}; columns: "
                         f"{', '.join(map(str, frame.columns))}")
    y_val = frame.pop(label_column).to_numpy().astype(int)
    trained = list(frames[0].columns)
    if set(trained) <= set(frame.columns):  # leave out what the training data lacks, e.g. other labels
        frame = frame[trained]
    return X, frame, y_val
