"""``reconad train`` (images, series, tables) and ``reconad demo``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import typer

from reconad.cli import kinds
from reconad.cli.common import (COLUMNS_HELP, ENCODING_HELP, STRIDE_HELP, check_dir, console, names,
                                print_metrics)

#: the options that concern some kinds of data only
APPLIES_TO = {"--loss": ("image", "series"), "--columns": ("series", "table"), "--drop": ("series", "table"),
              "--encoding": ("series", "table"), "--scaler": ("series", "table"), "--missing": ("table",),
              "--window": ("series",), "--stride": ("series",), "--combine": ("series",), "--slow-sensors": ("series",),
              "--mvtec": ("image",), "--patch-size": ("image",), "--patch-stride": ("image",),
              "--patches-per-image": ("image",), "--pca-components": ("image",), "--backbone": ("image",),
              "--image-size": ("image",)}


def train(
    normal: Optional[List[Path]] = typer.Option(None, "--normal", help="Normal data: folder(s) of images, "
                                                "or CSV file(s) of a table or of sensor series."),
    out: Path = typer.Option(..., help="Model folder to write."),
    kind: str = typer.Option("auto", help="image, series, table, or auto: folders and image files are "
                             "images; a CSV is a series when --window is given or it has a time column, "
                             "else a table. auto says what it chose and why."),
    model: Optional[str] = typer.Option(None, help="The catalogue's models, per kind: "
                                        + kinds.models_help() + "."),
    epochs: Optional[int] = typer.Option(None, help="Training epochs (default: the detector's for the model)."),
    batch_size: Optional[int] = typer.Option(None, help="Training batch size (default: the detector's)."),
    lr: Optional[float] = typer.Option(None, help="Adam learning rate (default: the detector's)."),
    latent_dim: Optional[int] = typer.Option(None),
    width: Optional[int] = typer.Option(None),
    depth: Optional[int] = typer.Option(None),
    score: Optional[str] = typer.Option(None, help="Score (default: the model's), e.g. l1, mse, bce for "
                                        "images; mae or mse for series; mse or l1 for tables."),
    loss: Optional[str] = typer.Option(None, help="Image and series models: training loss (default: the model's)."),
    patience: Optional[int] = typer.Option(None, help="Early-stopping patience in epochs."),
    threshold_method: Optional[str] = typer.Option(None, help="percentile, mean_std, fpr or margin (default: "
                                                   "the detector's; series: margin)."),
    threshold_param: Optional[float] = typer.Option(None, help="q, k or the target rate."),
    device: str = typer.Option("auto"),
    seed: int = typer.Option(0),
    quiet: bool = typer.Option(False, help="No progress bar."),
    columns: Optional[str] = typer.Option(None, help=COLUMNS_HELP),
    drop: Optional[str] = typer.Option(None, help="Tables, series: columns to leave out, comma-separated."),
    encoding: Optional[str] = typer.Option(None, help=ENCODING_HELP),
    scaler: Optional[str] = typer.Option(None, help="Tables: standard or minmax; series: also none "
                                         "(default standard)."),
    missing: Optional[str] = typer.Option(None, help="Tables: impute (missing numbers take the training "
                                          "median, a missing text value no category; default) or error."),
    window: Optional[int] = typer.Option(None, help="Series: rows per window (default 60)."),
    stride: Optional[int] = typer.Option(None, help=STRIDE_HELP),
    combine: Optional[str] = typer.Option(None, help="Series: last (causal; default), mean or max."),
    slow_sensors: Optional[str] = typer.Option(None, "--slow-sensors", help="Series: sensors whose level is the "
                                               "operating point, not a fault: auto (default: the smooth ones), "
                                               "none, or names, comma-separated."),
    mvtec: Optional[Path] = typer.Option(None, help="Images: MVTec-layout folder; trains on ROOT/train/good."),
    patch_size: Optional[int] = typer.Option(None, help="Images, patch mode: train on random crops of this size."),
    patch_stride: Optional[int] = typer.Option(None, help="Images, patch mode: grid step when scoring (default 16)."),
    patches_per_image: Optional[int] = typer.Option(None, help="Images, patch mode: random crops per "
                                                    "training image (default 32)."),
    pca_components: Optional[int] = typer.Option(None, help="Images, gmm: PCA components N_h."),
    backbone: Optional[str] = typer.Option(None, help="Images, feature models: efficientnet_lite0 (default), efficientnet_lite1, efficientnet_lite2 or a weights file."),
    image_size: Optional[int] = typer.Option(None, help="Images, feature models: short side in pixels (default 256)."),
    distributed: bool = typer.Option(False, "--distributed", help="Train data-parallel across the "
                                     "processes started by torchrun (NCCL on GPUs, gloo on CPUs); "
                                     "--batch-size is the global batch."),
    checkpoint: Optional[Path] = typer.Option(None, help="Folder for a checkpoint after every epoch; "
                                              "a rerun resumes from it."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the model already at --out."),
):
    """Train a detector on normal data and save it.

    Images: folders or image files (--normal), or an MVTec folder (--mvtec). Series and
    tables: CSV files (--normal), UTF-8 or Shift-JIS; text columns of a table are one-hot
    encoded and missing values imputed."""
    paths = list(normal or [])
    if bool(paths) == (mvtec is not None):
        raise ValueError("give either --normal (folders, image files or CSV files) or --mvtec ROOT")
    chosen, reason = kinds.guess_kind(kind, paths, mvtec, window_given=window is not None, encoding=encoding)
    if kind == "auto":
        console.print(f"kind auto: {chosen} ({reason})", highlight=False, soft_wrap=True)
    given = {"--loss": loss, "--columns": columns, "--drop": drop, "--encoding": encoding, "--scaler": scaler,
             "--missing": missing, "--window": window, "--stride": stride, "--combine": combine,
             "--slow-sensors": slow_sensors,
             "--mvtec": mvtec, "--patch-size": patch_size, "--patch-stride": patch_stride,
             "--patches-per-image": patches_per_image, "--pca-components": pca_components,
             "--backbone": backbone, "--image-size": image_size}
    wrong = [flag for flag, value in given.items() if value is not None and chosen not in APPLIES_TO[flag]]
    if wrong:
        flag = wrong[0]
        raise ValueError(f"{flag} applies to {' and '.join(APPLIES_TO[flag])} models, not to {chosen} models")
    params = dict(model=kinds.check_model(chosen, model), epochs=epochs, batch_size=batch_size, lr=lr,
                  latent_dim=latent_dim, width=width, depth=depth, score=score, loss=loss,
                  patience=patience, threshold_method=threshold_method, threshold_param=threshold_param,
                  device=device, random_state=seed, verbose=0 if quiet else 1,
                  # images
                  patch_size=patch_size, patches_per_image=patches_per_image, backbone=backbone,
                  image_size=image_size,
                  model_kwargs={"pca_components": pca_components} if pca_components else None,
                  # series and tables
                  window=window, combine=combine, scaler=scaler, missing=missing, columns=names(columns),
                  stride=patch_stride if chosen == "image" else stride)
    det = kinds.detector_class(chosen)(**{k: v for k, v in params.items() if v is not None})
    if slow_sensors is not None:
        text = slow_sensors.strip()
        det.set_params(slow_sensors=None if text.lower() in ("none", "") else
                       "auto" if text.lower() == "auto" else names(text))
    from reconad.persistence import check_output

    check_output(out, overwrite)
    X, note = _training_data(det, chosen, paths, mvtec, names(drop) or [], encoding)
    _fit_and_save(det, X, out, distributed, checkpoint, note)


def _training_data(det, kind: str, paths: list[Path], mvtec: Path | None, drop: list[str],
                   encoding: str | None):
    """What ``det.fit`` takes, read from the paths, and a note on it for the summary."""
    import pandas as pd

    if kind == "image":
        if mvtec is not None:
            from reconad.data import layouts

            return [str(p) for p in layouts.mvtec(mvtec)[0]], ""
        for folder in paths:
            if not folder.is_file():
                check_dir(folder, "normal-image")
        return [str(p) for p in paths], ""
    frames = [kinds.read_csv(p, encoding, parse_dates=kind == "series") for p in paths]
    unknown = [c for c in drop if not any(c in f.columns for f in frames)]
    if unknown:
        raise ValueError(f"--drop names column(s) {', '.join(unknown)} that are not in the data; "
                         f"columns: {', '.join(map(str, frames[0].columns))}")
    frames = [f.drop(columns=[c for c in drop if c in f.columns]) for f in frames]
    if kind == "series":
        return frames, ""
    table = pd.concat(frames, ignore_index=True)
    if det.columns is None and drop:  # saved, so that scoring and retraining use the same columns
        det.set_params(columns=[str(c) for c in table.columns])
    det.set_params(encoding=frames[0].attrs["encoding"])
    used = table[det.columns] if det.columns else table
    return table, f"{int(used.isna().to_numpy().sum())} missing values imputed"


def _fit_and_save(det, X, out: Path, distributed: bool, checkpoint: Optional[Path], note: str = "") -> None:
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
            parts = [describe(det), note, f"{ddp.world_size()} processes" if ddp.world_size() > 1 else ""]
            console.print(f"saved {out} ({'; '.join(p for p in parts if p)})", highlight=False, soft_wrap=True)
    except BaseException:
        ddp.shutdown(wait=False)
        raise
    ddp.shutdown()


def describe(det) -> str:
    """A fitted detector in a few words: kind, model, threshold, what it was fitted on."""
    parts = [f"{det.kind} {det.model}", f"threshold {det.threshold_:.6g}"]
    if getattr(det, "best_epoch_", -1) >= 0:
        parts.append(f"best epoch {det.best_epoch_ + 1}")
    if det.kind == "series":
        parts.append(f"{det.n_features_} sensors: {', '.join(det.columns_)}; window {det.window}; "
                     f"{det.n_filled_} missing values filled")
    if det.kind == "table":
        enc = det.encoder_
        hot = f" ({', '.join(enc.categorical_)} one-hot)" if enc.categorical_ else ""
        parts.append(f"{len(enc.columns_)} columns{hot}, {det.n_features_} features")
    return "; ".join(parts)


def demo(
    out: Path = typer.Option(Path("reconad-demo"), help="Output folder."),
    model: str = typer.Option("conv_ae", help="Image model to train: "
                              + kinds.models_help(("image",)).removeprefix("image: ") + "."),
    epochs: int = typer.Option(15, help="Training epochs."),
    seed: int = typer.Option(0, help="Random seed."),
):
    """Train on the bundled MNIST 1s, detect the 0s; write plots, metrics and the model."""
    from reconad.data.samples import load_mnist_01
    from reconad.detectors import ImageDetector
    from reconad.evaluation.evaluate import evaluate_images

    start = time.perf_counter()
    kinds.check_model("image", model)
    data = load_mnist_01()
    console.print(f"[bold]reconad demo[/]: {model} trained on {len(data['train_ones'])} MNIST '1' images; "
                  f"test: {len(data['test_ones'])} '1' (normal) and {len(data['test_zeros'])} '0' (anomalous)")
    det = ImageDetector(model=model, epochs=epochs, random_state=seed).fit(data["train_ones"])
    result = evaluate_images(det, data["test_ones"], data["test_zeros"], out)
    det.save(out / "model")
    print_metrics(result, "normal 1 vs anomalous 0")
    console.print(f"wrote {out}/: metrics.json, report.txt, loss.png, scores.png, roc.png, "
                  f"reconstructions.png, model/   ({time.perf_counter() - start:.0f} s)")
