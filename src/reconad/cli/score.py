"""``reconad score``: scores and labels of images, series or table rows, in this process or
on a Dask cluster."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import List, Optional

import numpy as np
import pandas as pd
import typer

from reconad.cli import kinds
from reconad.cli.common import MODEL_HELP, console, write_or_print


def score(
    paths: Optional[List[Path]] = typer.Argument(None, help="Image files or folders (image models), or "
                                                 "CSV files (series and table models)."),
    model: Path = typer.Option(..., help=MODEL_HELP),
    out: Optional[Path] = typer.Option(None, help="CSV file to write (default: standard output)."),
    encoding: Optional[str] = typer.Option(None, help="Series, tables: CSV encoding (default: a table "
                                           "model's own, else detected)."),
    input: Optional[str] = typer.Option(None, "--input", help="With --engine dask: a glob (quoted) of "
                                        "Parquet files (tables, series) or image files to score."),
    output: Optional[Path] = typer.Option(None, "--output", help="With --engine dask: folder for the "
                                          "scores as Parquet partitions."),
    engine: str = typer.Option("local", help="local (this process, PATHS to a CSV) or dask "
                               "(--input to Parquet partitions, on a Dask cluster)."),
    scheduler: Optional[str] = typer.Option(None, help="Dask scheduler address (default: a local cluster)."),
    workers: Optional[int] = typer.Option(None, help="Worker processes of the local Dask cluster "
                                          "(default: one per CPU core)."),
    id_column: Optional[str] = typer.Option(None, help="Dask, series: the column that tells machines apart."),
):
    """Score data; write a CSV of scores and labels, with the model version on every row.

    Images give file, score, label, model_version; series give file, time, score, label,
    model_version (one row per time step); tables give file, row, score, label,
    model_version (row: 0 for the first data row). With --engine dask: score Parquet
    tables or series, or images, on a Dask cluster and write Parquet partitions (with a
    model_version column)."""
    if engine not in ("local", "dask"):
        raise ValueError(f"unknown engine {engine!r}; choose local or dask")
    if engine == "dask" or input is not None or output is not None:
        if engine != "dask" or input is None or output is None or paths:
            raise ValueError("scoring --input to --output needs --engine dask and no PATHS, e.g. "
                             "reconad score --model MODEL --input 'data/*.parquet' --output out/ --engine dask")
        from reconad.scale.dask_scoring import score_to_parquet

        score_to_parquet(model, input, output, scheduler=scheduler, workers=workers, id_column=id_column)
        console.print(f"wrote {output}/ (Parquet, one file per partition)")
        return
    if not paths:
        raise ValueError("give files or folders to score, or --input with --engine dask")
    from reconad.ops.loading import load_model

    det = load_model(model)
    rows = _image_rows(det, paths) if det.kind == "image" else _row_rows(det, paths, encoding)
    text, n, n_anomalous = _csv(rows, det)
    unit = {"image": "images", "series": "time steps", "table": "rows"}[det.kind]
    write_or_print(text, out, f"{n} {unit}, {n_anomalous} anomalous (model {det.model_version_})")


def _image_rows(det, paths: list[Path]) -> tuple[list[str], list[tuple], np.ndarray]:
    from reconad.data.images import expand_paths

    files = [str(f) for f in expand_paths(paths)]
    return ["file"], [(f,) for f in files], det.decision_function(files)


def _row_rows(det, paths: list[Path], encoding: str | None) -> tuple[list[str], list[tuple], np.ndarray]:
    """Series: one row per time step (its timestamp, or its row number); tables: one per row."""
    keys, scores = [], []
    for p in paths:
        frame, _ = kinds.read_rows(det, p, encoding)
        s = det.decision_function(frame)
        where = (frame.index.astype(str) if isinstance(frame.index, pd.DatetimeIndex)
                 else range(len(s)))
        keys.extend((str(p), w) for w in where)
        scores.append(s)
    return ["file", "time" if det.kind == "series" else "row"], keys, np.concatenate(scores)


def _csv(rows, det) -> tuple[str, int, int]:
    header, keys, scores = rows
    labels = (scores > det.threshold_).astype(int)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*header, "score", "label", "model_version"])
    writer.writerows((*k, f"{s:.8g}", int(lab), det.model_version_) for k, s, lab in zip(keys, scores, labels))
    return buf.getvalue(), len(scores), int(labels.sum())
