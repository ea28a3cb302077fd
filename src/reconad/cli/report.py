"""``reconad report``: one self-contained HTML page about a model on some data."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from reconad.cli import kinds
from reconad.cli.common import MODEL_HELP, check_dir, console


def report(
    model: Path = typer.Option(..., help=MODEL_HELP),
    out: Path = typer.Option(..., help="HTML file to write."),
    data: Optional[List[Path]] = typer.Option(None, "--data", help="Images: unlabelled image files or "
                                              "folders; series, tables: one CSV file."),
    normal: Optional[Path] = typer.Option(None, help="Images: folder of normal images (labelled)."),
    anomalous: Optional[Path] = typer.Option(None, help="Images: folder of anomalous images (labelled)."),
    label_column: Optional[str] = typer.Option(None, help="Series, tables: the CSV's column of labels "
                                               "(1 = anomaly)."),
    encoding: Optional[str] = typer.Option(None, help="Series, tables: CSV encoding (default: a table "
                                           "model's own, else detected)."),
    top: int = typer.Option(8, help="How many of the most anomalous samples to show."),
):
    """One self-contained HTML page: metrics, loss curve, scores, ROC, worst samples, and the
    model version."""
    from reconad.data.images import expand_paths, list_image_files
    from reconad.evaluation.report import write_report
    from reconad.ops.loading import load_model

    det = load_model(model)
    y = None
    if det.kind == "image":
        if (normal is None) != (anomalous is None) or (normal is not None and data):
            raise ValueError("give --data (unlabelled), or both --normal and --anomalous (labelled)")
        if normal is not None:
            check_dir(normal, "normal-image")
            check_dir(anomalous, "anomalous-image")
            pos = [str(f) for f in list_image_files(normal)]
            neg = [str(f) for f in list_image_files(anomalous)]
            X, y = pos + neg, [0] * len(pos) + [1] * len(neg)
        elif data:
            X = [str(f) for f in expand_paths(data)]
        else:
            raise ValueError("no data: give --data, or --normal and --anomalous")
    else:
        if normal is not None or anomalous is not None:
            raise ValueError(f"--normal and --anomalous are for image models; a {det.kind} model takes "
                             f"--data FILE.csv (with --label-column for labels)")
        if not data or len(data) != 1:
            raise ValueError(f"a {det.kind} model takes one CSV file: --data FILE.csv")
        X, y = kinds.read_rows(det, data[0], encoding, label_column)
    write_report(det, X, out, y=y, n_top=top)
    console.print(f"wrote {out} (model {det.model_version_})", highlight=False)
