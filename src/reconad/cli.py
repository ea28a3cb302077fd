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
    backbone: Optional[str] = typer.Option(None, help="Feature models: efficientnet_lite0 or a weights file."),
    image_size: Optional[int] = typer.Option(None, help="Feature models: short side in pixels (default 256)."),
):
    """Train a detector on folders of normal images and save it."""
    from reconad import ImageDetector

    for folder in normal:
        _check_dir(folder, "normal-image")
    det = ImageDetector(model=model, epochs=epochs, batch_size=batch_size, lr=lr, latent_dim=latent_dim,
                        width=width, depth=depth, score=score, loss=loss, patience=patience,
                        threshold_method=threshold_method, threshold_param=threshold_param,
                        device=device, random_state=seed, verbose=0 if quiet else 1,
                        backbone=backbone, image_size=image_size)
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
