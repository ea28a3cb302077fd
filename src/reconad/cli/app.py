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
    from reconad.detectors import ImageDetector
    from reconad.data.samples import load_mnist_01
    from reconad.evaluation.evaluate import evaluate_images

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
    normal: Optional[List[Path]] = typer.Option(None, "--normal", help="Folder(s) of normal images."),
    out: Path = typer.Option(..., help="Model folder to write."),
    model: str = typer.Option("conv_ae", help="conv_ae, dense_ae, tutorial_cae, conv_vae, dense_vae, "
                                              "paper_vae or gmm."),
    epochs: int = typer.Option(30),
    batch_size: int = typer.Option(64),
    lr: float = typer.Option(1e-3),
    latent_dim: Optional[int] = typer.Option(None),
    width: Optional[int] = typer.Option(None),
    depth: Optional[int] = typer.Option(None),
    score: Optional[str] = typer.Option(None, help="l1, mse or bce (default: the model's)."),
    loss: Optional[str] = typer.Option(None, help="Training loss (default: the model's)."),
    patience: Optional[int] = typer.Option(None, help="Early-stopping patience in epochs."),
    threshold_method: Optional[str] = typer.Option(None, help="percentile, mean_std, fpr or margin "
                                                   "(default: percentile for images, margin for series)."),
    threshold_param: Optional[float] = typer.Option(None, help="q, k or the target rate."),
    device: str = typer.Option("auto"),
    seed: int = typer.Option(0),
    quiet: bool = typer.Option(False, help="No progress bar."),
    kind: str = typer.Option("auto", help="image, series, or auto (series for CSV files)."),
    window: int = typer.Option(60, help="Series: rows per window."),
    stride: int = typer.Option(1, help="Series: rows between window starts."),
    columns: Optional[str] = typer.Option(None, help="Series: sensor columns, comma-separated."),
    drop: Optional[str] = typer.Option(None, help="Series: columns to leave out, comma-separated."),
    combine: str = typer.Option("last", help="Series: last (causal), mean or max."),
    slow_sensors: str = typer.Option("auto", help="Series: sensors whose level is the operating point, "
                                     "not a fault: auto (smooth ones), none, or names, comma-separated."),
    scaler: str = typer.Option("standard", help="Series: standard, minmax or none."),
    encoding: Optional[str] = typer.Option(None, help="Series: CSV encoding (default: detect)."),
    mvtec: Optional[Path] = typer.Option(None, help="MVTec-layout folder: trains on ROOT/train/good."),
    patch_size: Optional[int] = typer.Option(None, help="Patch mode: train on random crops of this size."),
    patch_stride: int = typer.Option(16, help="Patch mode: grid step when scoring."),
    patches_per_image: int = typer.Option(32, help="Patch mode: random crops per training image."),
    pca_components: Optional[int] = typer.Option(None, help="gmm: PCA components N_h."),
    distributed: bool = typer.Option(False, "--distributed", help="Train data-parallel across the "
                                     "processes started by torchrun (NCCL on GPUs, gloo on CPUs); "
                                     "--batch-size is the global batch."),
    checkpoint: Optional[Path] = typer.Option(None, help="Folder for a checkpoint after every epoch; "
                                              "a rerun resumes from it."),
    backbone: Optional[str] = typer.Option(None, help="Feature models: efficientnet_lite0 or a weights file."),
    image_size: Optional[int] = typer.Option(None, help="Feature models: short side in pixels (default 256)."),
):
    """Train a detector on normal images or normal sensor CSV files, and save it.

    Images: folders (--normal) or an MVTec folder (--mvtec). Series: CSV files."""
    from reconad.detectors import ImageDetector
    from reconad.cli import series as cli_series
    from reconad.data import layouts

    if normal and cli_series.is_series_input(normal, kind):
        console.print(cli_series.train(
            normal, out, columns=columns, drop=drop, encoding=encoding, model=model, window=window,
            stride=stride, combine=combine, scaler=scaler, score=score or "mae", loss=loss,
            epochs=epochs, batch_size=batch_size, lr=lr, latent_dim=latent_dim, width=width,
            depth=depth, patience=patience, threshold_method=threshold_method or "margin",
            slow_sensors=cli_series.slow_sensors_option(slow_sensors),
            threshold_param=threshold_param, device=device, random_state=seed, verbose=0 if quiet else 1))
        return
    if (normal is None) == (mvtec is None):
        raise ValueError("give either --normal DIR or --mvtec ROOT")
    if mvtec is not None:
        train_files, _ = layouts.mvtec(mvtec)
        inputs = [str(p) for p in train_files]
    else:
        for folder in normal:
            _check_dir(folder, "normal-image")
        inputs = [str(p) for p in normal]
    det = ImageDetector(model=model, epochs=epochs, batch_size=batch_size, lr=lr, latent_dim=latent_dim,
                        width=width, depth=depth, score=score, loss=loss, patience=patience,
                        threshold_method=threshold_method or "percentile", threshold_param=threshold_param,
                        device=device, random_state=seed, verbose=0 if quiet else 1,
                        patch_size=patch_size, stride=patch_stride, patches_per_image=patches_per_image,
                        model_kwargs={"pca_components": pca_components} if pca_components else None,
                        backbone=backbone, image_size=image_size)
    _fit_and_save(det, inputs, out, distributed, checkpoint)


def _fit_and_save(det, X, out: Path, distributed: bool, checkpoint: Optional[Path]) -> None:
    """Fit (distributed and/or from a checkpoint when asked); only rank 0 writes the model."""
    from reconad.training import distributed as ddp
    from reconad.training.loop import fit_settings

    if distributed:
        ddp.require_launcher()
    try:
        with fit_settings(distributed=True if distributed else None, checkpoint=checkpoint):
            det.fit(X)
        if ddp.is_main_process():
            det.save(out)
            epoch = f", best epoch {det.best_epoch_ + 1}" if det.best_epoch_ >= 0 else ""
            console.print(f"saved {out} (threshold {det.threshold_:.6g}{epoch}"
                          + (f", {ddp.world_size()} processes" if ddp.world_size() > 1 else "") + ")")
    finally:
        ddp.shutdown()


@app.command()
def score(
    paths: Optional[List[Path]] = typer.Argument(None, help="Image files or folders."),
    model: Path = typer.Option(..., help="Model folder, or a model registry folder (its current version)."),
    out: Optional[Path] = typer.Option(None, help="CSV file to write (default: standard output)."),
    input: Optional[str] = typer.Option(None, "--input", help="With --engine dask: a glob (quoted) of "
                                        "Parquet files (tables, series) or image files to score."),
    output: Optional[Path] = typer.Option(None, "--output", help="With --engine dask: folder for the "
                                          "scores as Parquet partitions."),
    engine: str = typer.Option("local", help="local (this process, PATHS to a CSV) or dask "
                               "(--input to Parquet partitions, on a Dask cluster)."),
    scheduler: Optional[str] = typer.Option(None, help="Dask scheduler address (default: a local cluster)."),
    workers: Optional[int] = typer.Option(None, help="Worker processes of the local Dask cluster "
                                          "(default: one per CPU core)."),
    id_column: Optional[str] = typer.Option(None, help="Series: the column that tells machines apart."),
    encoding: Optional[str] = typer.Option(None, help="Series: CSV encoding (default: detect)."),
):
    """Score images or sensor CSV files; write a CSV of scores and labels.

    Images give file, score, label, model_version; sensor CSV files give file, time, score,
    label. MODEL may be a registry folder. With --engine dask: score Parquet tables or
    series, or images, on a Dask cluster and write Parquet partitions."""
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
        raise ValueError("give image files or folders to score, or --input with --engine dask")
    from reconad.detectors import SeriesDetector
    from reconad.cli import series as cli_series
    from reconad._atomic import write_text
    from reconad.data.images import expand_paths
    from reconad.ops.registry import load_model

    det = load_model(model)
    if isinstance(det, SeriesDetector):
        text, n, n_anom = cli_series.score(det, paths, encoding)
        if out is None:
            sys.stdout.write(text)
        else:
            write_text(out, text)
            console.print(f"wrote {out}: {n} time steps, {n_anom} anomalous")
        return
    files = expand_paths(paths)
    scores = det.decision_function([str(f) for f in files])
    labels = (scores > det.threshold_).astype(int)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["file", "score", "label", "model_version"])
    writer.writerows((str(f), f"{s:.8g}", int(l), det.model_version_) for f, s, l in zip(files, scores, labels))
    if out is None:
        sys.stdout.write(buf.getvalue())
    else:
        write_text(out, buf.getvalue())
        console.print(f"wrote {out}: {len(files)} images, {int(labels.sum())} anomalous")


@app.command()
def evaluate(
    model: Path = typer.Option(..., help="Model folder, or a model registry folder (its current version)."),
    normal: Optional[Path] = typer.Option(None, help="Folder of normal images."),
    anomalous: Optional[Path] = typer.Option(None, help="Folder of anomalous images."),
    out: Path = typer.Option(..., help="Output folder for metrics and plots."),
    input: Optional[Path] = typer.Option(None, "--input", help="Series: labelled sensor CSV file."),
    label_column: str = typer.Option("anomaly", help="Series: the 0/1 label column."),
    encoding: Optional[str] = typer.Option(None, help="Series: CSV encoding (default: detect)."),
    masks: Optional[Path] = typer.Option(None, help="Folder of defect masks (<name>.png or <name>_mask.png); "
                                                    "adds pixel ROC-AUC, AUPRO and heatmaps."),
    mvtec: Optional[Path] = typer.Option(None, help="MVTec-layout folder: evaluates on ROOT/test with "
                                                    "ROOT/ground_truth masks."),
    stride: int = typer.Option(4, help="Patch mode: grid step of the anomaly maps."),
    map_sigma: float = typer.Option(0.0, help="Gaussian smoothing of the anomaly maps, in pixels."),
):
    """Metrics and plots on labelled images or a labelled sensor CSV file.

    Images: plain folders or an MVTec folder; with masks also pixel-level metrics and
    heatmaps."""
    from reconad.detectors import SeriesDetector
    from reconad.cli import series as cli_series
    from reconad.data import layouts
    from reconad.data.images import list_image_files
    from reconad.evaluation.evaluate import evaluate_images, evaluate_with_maps
    from reconad.ops.registry import load_model

    det = load_model(model)
    if isinstance(det, SeriesDetector):
        if input is None:
            raise ValueError("a series model needs --input FILE.csv with a label column")
        result = cli_series.evaluate(det, input, label_column, out, encoding)
        _print_metrics(result, f"{input.name} (VUS-PR {result['vus_pr']:.4f}, FAR {result['far']:.4f})")
        console.print(f"wrote {out}/: metrics.json, report.txt, series.png, loss.png")
        return
    if mvtec is not None or masks is not None or det.patch_size is not None:
        if mvtec is not None:
            if normal is not None or anomalous is not None:
                raise ValueError("give either --mvtec ROOT or --normal/--anomalous folders")
            _, data = layouts.mvtec(mvtec)
        else:
            if normal is None or anomalous is None:
                raise ValueError("give --normal DIR and --anomalous DIR (or --mvtec ROOT)")
            data = layouts.plain(normal, anomalous, masks)
        with_masks = data.has_masks
        result = evaluate_with_maps(det, data.files, data.labels, data.masks if with_masks else None,
                                    out, stride=stride, sigma=map_sigma)
        _print_metrics(result, f"{len(data.files)} images, {sum(data.labels)} anomalous")
        if with_masks:
            console.print(f"pixel ROC-AUC {result['pixel_roc_auc']:.4f}   AUPRO {result['aupro']:.4f}")
        console.print(f"wrote {out}/: metrics.json, report.txt, scores.png, roc.png, heatmaps.png")
        return
    if normal is None or anomalous is None:
        raise ValueError("give --normal DIR and --anomalous DIR (or --mvtec ROOT)")
    normal_files = [str(f) for f in list_image_files(normal)]
    anomalous_files = [str(f) for f in list_image_files(anomalous)]
    result = evaluate_images(det, normal_files, anomalous_files, out)
    _print_metrics(result, f"{normal.name} vs {anomalous.name}")
    console.print(f"wrote {out}/: metrics.json, report.txt and plots")


@app.command()
def retrain(
    model: Path = typer.Option(..., help="Model folder, or a registry folder (its current version)."),
    data: List[Path] = typer.Option(..., "--data", help="New normal training data (files or folders)."),
    out: Path = typer.Option(..., help="Model folder to write."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Change one setting: NAME=VALUE (repeatable)."),
    registry: Optional[Path] = typer.Option(None, help="Register the new model in this registry folder."),
    promote: bool = typer.Option(False, help="Make the registered model the current version."),
    quiet: bool = typer.Option(False, help="No progress bar."),
):
    """Fit a copy of a saved detector, with the same configuration, on new normal data."""
    from reconad.ops.registry import load_model
    from reconad.ops.retrain import parse_overrides, retrain as do_retrain

    if promote and registry is None:
        raise ValueError("--promote needs --registry")
    params = load_model(model).get_params(deep=False)
    overrides = parse_overrides(set_, params)
    if quiet and "verbose" in params:
        overrides.setdefault("verbose", 0)
    result = do_retrain(model, data, out, overrides=overrides, registry=registry, promote=promote)
    m = result["metrics"]
    console.print(f"saved {out} (retrained from {result['parent_version']}; threshold "
                  f"{m['previous_threshold']:.6g} -> {m['threshold']:.6g}; {m['fit_seconds']:.0f} s; "
                  f"data {result['data_fingerprint'].removeprefix('sha256:')[:12]})", highlight=False, soft_wrap=True)
    if "version" in result:
        console.print(f"registered as {result['version']} in {registry}"
                      + (" and made current" if promote else f"; promote with: reconad models promote "
                         f"{result['version']} --registry {registry}"), highlight=False, soft_wrap=True)


models_app = typer.Typer(help="The model registry: list, register, promote, roll back.", no_args_is_help=True)
app.add_typer(models_app, name="models")
REGISTRY_OPTION = typer.Option(Path("model-registry"), "--registry", help="Registry folder.")


@models_app.command("list")
def models_list(registry: Path = REGISTRY_OPTION,
                as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """List the versions; the current one is marked with *."""
    from reconad.ops.registry import ModelRegistry

    versions = ModelRegistry(registry).list()
    if as_json:
        sys.stdout.write(json.dumps(versions, indent=2) + "\n")
        return
    if not versions:
        console.print(f"no versions in {registry}")
        return
    for v in versions:
        data = (v["data_fingerprint"] or "-").removeprefix("sha256:")[:12]
        threshold = f"{v['threshold']:.6g}" if v["threshold"] is not None else "-"
        console.print(f"{'*' if v['current'] else ' '} {v['version']}  {v['created'][:16].replace('T', ' ')}  "
                      f"{v['detector']}  threshold {threshold}  data {data}  parent {v['parent'] or '-'}",
                      highlight=False, soft_wrap=True)
    console.print("(* current; details with --json)", highlight=False)


@models_app.command("register")
def models_register(model: Path = typer.Option(..., help="Saved model folder."),
                    registry: Path = REGISTRY_OPTION,
                    data: Optional[List[Path]] = typer.Option(None, "--data", help="Its training data (for the fingerprint)."),
                    metrics: Optional[Path] = typer.Option(None, help="JSON file of metrics (e.g. evaluate's metrics.json)."),
                    note: Optional[str] = typer.Option(None, help="A note to keep with the version."),
                    promote: bool = typer.Option(False, help="Make it the current version.")):
    """Add a saved model to the registry as the next version."""
    from reconad.ops.registry import ModelRegistry, data_fingerprint

    if metrics is not None and not metrics.is_file():
        raise FileNotFoundError(f"metrics file not found: {metrics}")
    values = json.loads(metrics.read_text(encoding="utf-8")) if metrics is not None else None
    if values is not None:
        values = {k: v for k, v in values.items() if isinstance(v, (int, float, str, bool))}
    reg = ModelRegistry(registry)
    entry = reg.register(model, data_fingerprint=data_fingerprint(data) if data else None,
                         metrics=values, note=note)
    if promote:
        reg.promote(entry["version"])
    console.print(f"registered {model} as {entry['version']} in {registry}" + (" (current)" if promote else ""))


@models_app.command("promote")
def models_promote(version: str = typer.Argument(..., help="Version to make current, e.g. v0002."),
                   registry: Path = REGISTRY_OPTION):
    """Make a version the current one."""
    from reconad.ops.registry import ModelRegistry

    v = ModelRegistry(registry).promote(version)
    console.print(f"current model in {registry}: {v['version']} (threshold {v['threshold']:.6g})")


@models_app.command("rollback")
def models_rollback(registry: Path = REGISTRY_OPTION):
    """Go back to the version that was current before the last promotion."""
    from reconad.ops.registry import ModelRegistry

    v = ModelRegistry(registry).rollback()
    console.print(f"rolled back: current model in {registry} is {v['version']} (threshold {v['threshold']:.6g})")


def _read_numeric_csv(path: Path):
    """A CSV (separator guessed: ',', ';', tab) as a DataFrame of its numeric columns."""
    import pandas as pd

    if not path.is_file():
        raise FileNotFoundError(f"CSV file not found: {path}")
    try:
        df = pd.read_csv(path, sep=None, engine="python")
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path} as CSV: {exc}") from None
    df = df.select_dtypes("number")
    if df.empty or df.shape[1] == 0:
        raise ValueError(f"{path} has no numeric columns")
    return df


@app.command()
def drift(
    reference: Path = typer.Option(..., help="CSV of normal data (e.g. the training data)."),
    input: Path = typer.Option(..., "--input", help="CSV of recent data, rows in time order."),
    window: int = typer.Option(300, help="Rows compared at each check."),
    method: str = typer.Option("mean_shift", help="mean_shift (sensor series), psi or ks (independent rows)."),
    threshold: Optional[float] = typer.Option(None, help="Drift above this (default: 4, 0.25, 0.3 by method)."),
    check_every: Optional[int] = typer.Option(None, help="Rows between checks (default: window / 2)."),
    alerts: Optional[Path] = typer.Option(None, help="Alert configuration: send each drift signal there."),
    model: Optional[Path] = typer.Option(None, help="Model or registry folder, to record its version."),
):
    """Compare recent data with the reference; print one JSON line per drift signal."""
    from reconad.ops.drift import DriftMonitor

    ref, new = _read_numeric_csv(reference), _read_numeric_csv(input)
    columns = [c for c in ref.columns if c in new.columns]
    if not columns:
        raise ValueError(f"{reference} and {input} share no numeric columns")
    version = None
    if model is not None:
        from reconad.ops.registry import resolve
        version = resolve(model)[1]
    mon = DriftMonitor(ref[columns].to_numpy(), feature_names=columns, method=method, threshold=threshold,
                       window=window, check_every=check_every, model_version=version)
    dispatcher = None
    if alerts is not None:
        from reconad.ops.alerts import AlertDispatcher
        dispatcher = AlertDispatcher(alerts, background=False)
    X, step, signals, checks = new[columns].to_numpy(), mon.check_every, 0, 0
    for start in range(0, len(X), step):
        before = mon.last_statistics_
        sig = mon.update(X[start:start + step])
        checks += mon.last_statistics_ is not before
        if sig is None:
            continue
        signals += 1
        alert = {**sig.to_alert(), "row": start + len(X[start:start + step])}
        sys.stdout.write(json.dumps(alert) + "\n")
        if dispatcher is not None:
            dispatcher.submit(alert)
    err_console.print(f"{checks} checks of {window} rows, {signals} drift signals ({method}, "
                      f"threshold {mon.threshold:g}); columns: {', '.join(columns)}", highlight=False)
    if dispatcher is not None and not dispatcher.close(timeout=10):
        err_console.print(f"some alerts are not delivered yet; they wait in {dispatcher.outbox}", highlight=False)


alerts_app = typer.Typer(help="Alert channels: send a test alert, show or flush the outbox.", no_args_is_help=True)
app.add_typer(alerts_app, name="alerts")
ALERTS_CONFIG = typer.Option(..., "--config", help="Alert configuration (JSON).")


@alerts_app.command("test")
def alerts_test(config: Path = ALERTS_CONFIG,
                message: str = typer.Option("test alert from reconad", help="Text of the alert."),
                timeout: float = typer.Option(10.0, help="Seconds to keep retrying.")):
    """Send one test alert to every channel now (grouping and rate limits skipped)."""
    from reconad.ops.alerts import AlertDispatcher

    d = AlertDispatcher(config, background=False, log=lambda line: err_console.print(line, highlight=False))
    d.submit({"kind": "test", "message": message})
    ok = d.close(timeout=timeout)
    for st in d.status():
        state = "delivered" if st["pending"] == 0 else f"{st['pending']} waiting: {st['last_error']}"
        console.print(f"{st['channel']}: {state}", highlight=False)
    if not ok:
        raise typer.Exit(1)


@alerts_app.command("status")
def alerts_status(config: Path = ALERTS_CONFIG):
    """Alerts waiting in the outbox, per channel."""
    from reconad.ops.alerts import AlertDispatcher

    d = AlertDispatcher(config, background=False)
    for name, n in d.pending().items():
        console.print(f"{name}: {n} waiting in {d.outbox / name}", highlight=False)


@alerts_app.command("flush")
def alerts_flush(config: Path = ALERTS_CONFIG, timeout: float = typer.Option(30.0, help="Seconds to keep retrying.")):
    """Deliver every alert waiting in the outbox now, retrying with back-off up to TIMEOUT."""
    from reconad.ops.alerts import AlertDispatcher

    d = AlertDispatcher(config, background=False, log=lambda line: err_console.print(line, highlight=False))
    ok = d.close(timeout=timeout)
    console.print("outbox empty" if ok else f"still waiting: {d.pending()}", highlight=False)
    if not ok:
        raise typer.Exit(1)


@app.command()
def tune(
    out: Path = typer.Option(..., help="JSON file for the best parameters and all trials."),
    table: Optional[Path] = typer.Option(None, help="CSV of normal rows (tables)."),
    normal: Optional[List[Path]] = typer.Option(None, "--normal", help="Folder(s) of normal images."),
    model: Optional[str] = typer.Option(None, help="Tables: ae or vae (default ae); images: "
                                                   "conv_ae, dense_ae, ... (default conv_ae)."),
    columns: Optional[str] = typer.Option(None, help="Tables: comma-separated columns to use."),
    encoding: str = typer.Option("utf-8", help="Tables: text encoding, e.g. shift_jis."),
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
    from reconad.detectors import ImageDetector
    from reconad.detectors import TabularDetector
    from reconad.evaluation import tuning

    if (table is None) == (not normal):
        raise ValueError("give either --table (a CSV of normal rows) or --normal (image folders)")
    X_val = y_val = None
    if table is not None:
        from reconad.data.tables import read_table

        cols = [c.strip() for c in columns.split(",")] if columns else None
        det = TabularDetector(model=model or "ae", columns=cols, encoding=encoding, epochs=epochs,
                              random_state=seed, verbose=0)
        X = read_table(table, encoding=encoding)
        if val is not None:
            frame = read_table(val, encoding=encoding)
            if label_column not in frame.columns:
                raise ValueError(f"label column {label_column!r} not in {val}")
            y_val = frame[label_column].to_numpy()
            X_val = frame.drop(columns=[label_column])
    else:
        from reconad.data.images import list_image_files

        for folder in normal:
            _check_dir(folder, "normal-image")
        det = ImageDetector(model=model or "conv_ae", epochs=epochs, random_state=seed, verbose=0)
        X = [str(f) for folder in normal for f in list_image_files(folder)]
        if (val_normal is None) != (val_anomalous is None):
            raise ValueError("give both --val-normal and --val-anomalous, or neither")
        if val_normal is not None:
            good = [str(f) for f in list_image_files(val_normal)]
            bad = [str(f) for f in list_image_files(val_anomalous)]
            X_val, y_val = good + bad, [0] * len(good) + [1] * len(bad)
    result = tuning.tune(det, X, X_val, y_val, timeout=budget, n_trials=trials, metric=metric,
                         out=out, seed=seed)
    table_out = Table(title=f"best of {len(result['trials'])} trials ({result['objective']} "
                            f"{result['best_value']:.6g})")
    table_out.add_column("parameter")
    table_out.add_column("value", justify="right")
    for key, value in result["best_params"].items():
        table_out.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table_out)
    console.print(f"wrote {out} ({result['elapsed_s']:.0f} s)")


@app.command()
def monitor(
    model: Path = typer.Option(..., help="Series model folder."),
    input: str = typer.Option(..., "--input", help="CSV file to follow as it grows, or - for standard input."),
    alerts: Optional[Path] = typer.Option(None, help="JSON-lines file for alerts (default: standard output)."),
    log: Optional[Path] = typer.Option(None, help="Log file (the log also goes to standard error)."),
    consecutive: Optional[int] = typer.Option(None, help="Steps over the threshold in a row needed for an "
                                              "alert (default: the model's alert rule)."),
    top: int = typer.Option(3, help="Sensors named in each alert."),
    follow: bool = typer.Option(True, help="Keep reading a file as it grows (Ctrl-C stops)."),
    idle_timeout: Optional[float] = typer.Option(None, help="Stop following after this many idle seconds."),
    encoding: str = typer.Option("utf-8", help="Text encoding of the stream (e.g. cp932)."),
    alert_config: Optional[Path] = typer.Option(None, help="Alert channels (JSON: webhook, e-mail, log); "
                                                "each alert is also sent there."),
    threshold_rule: Optional[str] = typer.Option(None, help="fixed (default), rolling_quantile, pot, or JSON "
                                                 "such as '{\"method\": \"pot\", \"q\": 1e-3}'."),
):
    """Score a live sensor stream causally; one JSON line per alert."""
    from reconad.detectors import SeriesDetector
    from reconad.cli import series as cli_series
    from reconad.ops.registry import load_model

    det = load_model(model)
    if not isinstance(det, SeriesDetector):
        raise ValueError(f"{model} is not a series model")
    if input != "-" and not Path(input).is_file():
        raise FileNotFoundError(f"input file not found: {input}")
    summary = cli_series.monitor(det, input, alerts=alerts, log_file=log, consecutive=consecutive, top=top,
                                 follow=follow, idle_timeout=idle_timeout, encoding=encoding,
                                 alert_config=alert_config, threshold_rule=threshold_rule)
    err_console.print(f"rows {summary['rows']}, scored {summary['scored']}, malformed {summary['malformed']}, "
                      f"alerts {summary['alerts']}")


@app.command("export")
def export_model(
    model: Path = typer.Option(..., help="Model folder."),
    format: str = typer.Option("onnx", "--format", help="onnx or torchscript."),
    out: Path = typer.Option(..., help="File to write."),
    input_dtype: Optional[str] = typer.Option(None, help="ONNX input type: uint8 (0..255) or float32 (0..1) "
                                              "for images (default uint8); float32 for series; "
                                              "float64 (default) or float32 for tables."),
    score: Optional[str] = typer.Option(None, help="Image models: another score term (e.g. elbo); "
                                        "needs --threshold."),
    threshold: Optional[float] = typer.Option(None, help="Threshold for the labels (default: the model's)."),
    anomaly_map: bool = typer.Option(True, "--map/--no-map", help="Image models: also output the anomaly map."),
):
    """Export a model as one graph: raw input in; score, label (and anomaly map) out."""
    from reconad.detectors.base import load
    from reconad.export import export

    det = load(model)
    export(det, out, format=format, input_dtype=input_dtype, score=score, threshold=threshold,
           anomaly_map=anomaly_map)
    used = det.threshold_ if threshold is None else threshold
    console.print(f"wrote {out} ({format}; threshold {used:.6g})")


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
    alert_config: Optional[Path] = typer.Option(None, help="Alert channels (JSON): samples labelled "
                                                "anomalous are sent there too."),
    engine: str = typer.Option("auto", help="Image models: onnx (the exported graph in ONNX Runtime), "
                               "python (the detector), or auto (onnx when it can)."),
    batch_wait_ms: float = typer.Option(0.0, help="Image models: also wait this long for more requests "
                                        "to batch (0: batch only those already waiting)."),
):
    """Serve a model over HTTP: POST /score, GET /health, GET /model, /docs."""
    try:
        from reconad.serve.app import serve
    except ImportError as exc:
        raise ValueError(str(exc)) from None

    if not model.exists():
        raise FileNotFoundError(f"model folder not found: {model}")
    if max_batch < 1 or max_request_mb <= 0 or threads < 1:
        raise ValueError("--max-batch, --max-request-mb and --threads must be positive")
    console.print(f"serving {model} on http://{host}:{port} (API page: /docs)"
                  f"{'; bearer token required' if token else ''}")
    serve(model, host=host, port=port, token=token or None,
          max_request_bytes=int(max_request_mb * 1024 * 1024), max_batch=max_batch, threads=threads,
          alert_config=alert_config, engine=engine, batch_wait_ms=batch_wait_ms)


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

    from reconad.detectors.base import load
    from reconad.data.images import expand_paths, list_image_files
    from reconad.evaluation.report import write_report
    from reconad.data.inputs import input_kind

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
