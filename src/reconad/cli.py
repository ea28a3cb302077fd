"""The ``reconad`` command."""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="reconad: anomaly detection in manufacturing by reconstruction.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
console = Console()
err_console = Console(stderr=True)


def _print_metrics(m: dict, title: str) -> None:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("roc_auc", "pr_auc", "precision", "recall", "f1", "threshold"):
        table.add_row(key, f"{m[key]:.4f}" if key != "threshold" else f"{m[key]:.6g}")
    console.print(table)
    c = m["confusion"]
    conf = Table(title="confusion matrix (rows: true)")
    conf.add_column("")
    conf.add_column("pred. normal", justify="right")
    conf.add_column("pred. anomaly", justify="right")
    conf.add_row("normal", str(c["tn"]), str(c["fp"]))
    conf.add_row("anomaly", str(c["fn"]), str(c["tp"]))
    console.print(conf)


def _check_dir(path: Path, what: str) -> None:
    if not path.exists():
        raise FileNotFoundError(f"{what} folder not found: {path}")
    if not path.is_dir():
        raise ValueError(f"{what} is not a folder: {path}")


@app.command()
def demo(
    out: Path = typer.Option(Path("reconad-demo"), help="Output folder."),
    model: str = typer.Option("conv_ae", help="Model to train."),
    epochs: int = typer.Option(15, help="Training epochs."),
    seed: int = typer.Option(0, help="Random seed."),
):
    """Train on the bundled MNIST 1s, detect the 0s; write plots, metrics and the model."""
    from reconad import ImageDetector
    from reconad.data.samples import load_mnist_01
    from reconad.evaluation import evaluate_images

    start = time.perf_counter()
    data = load_mnist_01()
    console.print(f"[bold]reconad demo[/]: {model} trained on {len(data['train_ones'])} MNIST '1' images; "
                  f"test: {len(data['test_ones'])} '1' (normal) and {len(data['test_zeros'])} '0' (anomalous)")
    det = ImageDetector(model=model, epochs=epochs, random_state=seed).fit(data["train_ones"])
    result = evaluate_images(det, data["test_ones"], data["test_zeros"], out)
    det.save(out / "model")
    _print_metrics(result, "normal 1 vs anomalous 0")
    console.print(f"wrote {out}/: metrics.json, report.txt, loss.png, scores.png, roc.png, "
                  f"reconstructions.png, model/   ({time.perf_counter() - start:.0f} s)")


@app.command()
def train(
    normal: List[Path] = typer.Option(..., "--normal", help="Folder(s) of normal images."),
    out: Path = typer.Option(..., help="Model folder to write."),
    model: str = typer.Option("conv_ae", help="conv_ae, dense_ae or tutorial_cae."),
    epochs: int = typer.Option(30),
    batch_size: int = typer.Option(64),
    lr: float = typer.Option(1e-3),
    latent_dim: Optional[int] = typer.Option(None),
    width: Optional[int] = typer.Option(None),
    depth: Optional[int] = typer.Option(None),
    score: Optional[str] = typer.Option(None, help="l1, mse or bce (default: the model's)."),
    loss: Optional[str] = typer.Option(None, help="Training loss (default: the model's)."),
    patience: Optional[int] = typer.Option(None, help="Early-stopping patience in epochs."),
    threshold_method: str = typer.Option("percentile", help="percentile, mean_std or fpr."),
    threshold_param: Optional[float] = typer.Option(None, help="q, k or the target rate."),
    device: str = typer.Option("auto"),
    seed: int = typer.Option(0),
    quiet: bool = typer.Option(False, help="No progress bar."),
):
    """Train a detector on folders of normal images and save it."""
    from reconad import ImageDetector

    for folder in normal:
        _check_dir(folder, "normal-image")
    det = ImageDetector(model=model, epochs=epochs, batch_size=batch_size, lr=lr, latent_dim=latent_dim,
                        width=width, depth=depth, score=score, loss=loss, patience=patience,
                        threshold_method=threshold_method, threshold_param=threshold_param,
                        device=device, random_state=seed, verbose=0 if quiet else 1)
    det.fit([str(p) for p in normal])
    det.save(out)
    console.print(f"saved {out} (threshold {det.threshold_:.6g}, best epoch {det.best_epoch_ + 1})")


@app.command()
def score(
    paths: List[Path] = typer.Argument(..., help="Image files or folders."),
    model: Path = typer.Option(..., help="Model folder."),
    out: Optional[Path] = typer.Option(None, help="CSV file to write (default: standard output)."),
):
    """Score images: a CSV of file, score, label."""
    from reconad import load
    from reconad._atomic import write_text
    from reconad.data.images import expand_paths

    det = load(model)
    files = expand_paths(paths)
    scores = det.decision_function([str(f) for f in files])
    labels = (scores > det.threshold_).astype(int)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["file", "score", "label"])
    writer.writerows((str(f), f"{s:.8g}", int(l)) for f, s, l in zip(files, scores, labels))
    if out is None:
        sys.stdout.write(buf.getvalue())
    else:
        write_text(out, buf.getvalue())
        console.print(f"wrote {out}: {len(files)} images, {int(labels.sum())} anomalous")


@app.command()
def evaluate(
    model: Path = typer.Option(..., help="Model folder."),
    normal: Path = typer.Option(..., help="Folder of normal images."),
    anomalous: Path = typer.Option(..., help="Folder of anomalous images."),
    out: Path = typer.Option(..., help="Output folder for metrics and plots."),
):
    """Metrics and plots on labelled folders of normal and anomalous images."""
    from reconad import load
    from reconad.data.images import list_image_files
    from reconad.evaluation import evaluate_images

    det = load(model)
    normal_files = [str(f) for f in list_image_files(normal)]
    anomalous_files = [str(f) for f in list_image_files(anomalous)]
    result = evaluate_images(det, normal_files, anomalous_files, out)
    _print_metrics(result, f"{normal.name} vs {anomalous.name}")
    console.print(f"wrote {out}/: metrics.json, report.txt and plots")


@app.command("export")
def export_model(
    model: Path = typer.Option(..., help="Model folder."),
    format: str = typer.Option("onnx", "--format", help="onnx or torchscript."),
    out: Path = typer.Option(..., help="File to write."),
    input_dtype: str = typer.Option("uint8", help="ONNX input type: uint8 (0..255) or float32 (0..1)."),
):
    """Export a model as one graph: raw input in; score, label and anomaly map out."""
    from reconad import load
    from reconad.export import export

    det = load(model)
    export(det, out, format=format, input_dtype=input_dtype)
    console.print(f"wrote {out} ({format}; threshold {det.threshold_:.6g})")


@app.command("serve")
def serve_model(
    model: Path = typer.Option(..., help="Model folder."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0: every network)."),
    port: int = typer.Option(8000),
    token: Optional[str] = typer.Option(None, envvar="RECONAD_TOKEN",
                                        help="Require 'Authorization: Bearer TOKEN' (or set RECONAD_TOKEN)."),
    max_request_mb: float = typer.Option(10.0, help="Largest request body in MiB."),
    max_batch: int = typer.Option(1024, help="Most samples in one request."),
    threads: int = typer.Option(1, help="Torch threads for scoring (1 suits many small requests)."),
):
    """Serve a model over HTTP: POST /score, GET /health, GET /model, /docs."""
    try:
        from reconad.serve import serve
    except ImportError as exc:
        raise ValueError(str(exc)) from None

    if not model.exists():
        raise FileNotFoundError(f"model folder not found: {model}")
    if max_batch < 1 or max_request_mb <= 0 or threads < 1:
        raise ValueError("--max-batch, --max-request-mb and --threads must be positive")
    console.print(f"serving {model} on http://{host}:{port} (API page: /docs)"
                  f"{'; bearer token required' if token else ''}")
    serve(model, host=host, port=port, token=token or None,
          max_request_bytes=int(max_request_mb * 1024 * 1024), max_batch=max_batch, threads=threads)


@app.command("report")
def report_html(
    model: Path = typer.Option(..., help="Model folder."),
    out: Path = typer.Option(..., help="HTML file to write."),
    data: Optional[List[Path]] = typer.Option(None, "--data",
                                              help="Unlabelled data: image files/folders, or a CSV for row models."),
    normal: Optional[Path] = typer.Option(None, help="Folder of normal images (labelled)."),
    anomalous: Optional[Path] = typer.Option(None, help="Folder of anomalous images (labelled)."),
    label_column: Optional[str] = typer.Option(None, help="CSV data: column with 0/1 labels."),
    top: int = typer.Option(8, help="How many of the most anomalous samples to show."),
):
    """One self-contained HTML page: metrics, loss curve, scores, ROC, worst samples."""
    import pandas as pd

    from reconad import load
    from reconad.data.images import expand_paths, list_image_files
    from reconad.report import write_report
    from reconad.inputs import input_kind

    det = load(model)
    y = None
    if input_kind(det) == "images":
        if (normal is None) != (anomalous is None) or (normal is not None and data):
            raise ValueError("give --data (unlabelled), or both --normal and --anomalous (labelled)")
        if normal is not None:
            _check_dir(normal, "normal-image")
            _check_dir(anomalous, "anomalous-image")
            pos = [str(f) for f in list_image_files(normal)]
            neg = [str(f) for f in list_image_files(anomalous)]
            X, y = pos + neg, [0] * len(pos) + [1] * len(neg)
        elif data:
            X = [str(f) for f in expand_paths(data)]
        else:
            raise ValueError("no data: give --data, or --normal and --anomalous")
    else:
        if not data or len(data) != 1 or not data[0].is_file():
            raise ValueError("row models take one CSV file: --data FILE.csv")
        X = pd.read_csv(data[0])
        if label_column is not None:
            if label_column not in X.columns:
                raise ValueError(f"label column {label_column!r} not in {data[0]}")
            y = X.pop(label_column).to_numpy()
    write_report(det, X, out, y=y, n_top=top)
    console.print(f"wrote {out}")


def main() -> None:
    """Entry point: errors in the input become one line on stderr and exit code 2."""
    from sklearn.exceptions import NotFittedError

    try:
        app()
    except (ValueError, TypeError, FileNotFoundError, NotFittedError, FloatingPointError) as exc:
        err_console.print(f"error: {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
