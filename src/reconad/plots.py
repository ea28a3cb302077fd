"""Matplotlib figures, saved as PNG (written to a temporary name, then renamed)."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_auc_score, roc_curve as sk_roc_curve  # noqa: E402

from reconad._atomic import atomic_path  # noqa: E402


def save_figure(fig, path: str | os.PathLike, dpi: int = 110) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    plt.close(fig)


def loss_curve(history: dict, path: str | os.PathLike, best_epoch: int | None = None) -> None:
    """Training and validation loss per epoch."""
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = np.arange(1, len(history["train_loss"]) + 1)
    ax.plot(epochs, history["train_loss"], label="training")
    ax.plot(epochs, history["val_loss"], label="validation")
    if best_epoch is not None and best_epoch >= 0:
        ax.axvline(best_epoch + 1, color="gray", ls=":", label=f"best epoch ({best_epoch + 1})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.set_title("Loss")
    ax.legend()
    save_figure(fig, path)


def score_histogram(normal, anomalous, threshold: float, path: str | os.PathLike,
                    score_name: str = "score") -> None:
    """Histograms of normal and anomalous scores with the threshold line."""
    normal = np.asarray(normal, dtype=float)
    anomalous = np.asarray(anomalous, dtype=float)
    fig, ax = plt.subplots(figsize=(6, 4))
    both = np.concatenate([normal, anomalous, [threshold]])
    bins = np.linspace(both.min(), both.max(), 60)
    ax.hist(normal, bins=bins, alpha=0.6, label=f"normal (n={normal.size})", color="tab:blue")
    if anomalous.size:
        ax.hist(anomalous, bins=bins, alpha=0.6, label=f"anomalous (n={anomalous.size})", color="tab:red")
    ax.axvline(threshold, color="black", ls="--", label=f"threshold {threshold:.4g}")
    ax.set_xlabel(f"anomaly score ({score_name})")
    ax.set_ylabel("count")
    ax.set_title("Anomaly scores")
    ax.legend()
    save_figure(fig, path)


def roc_curve(y_true, scores, path: str | os.PathLike) -> None:
    """ROC curve with its area."""
    fpr, tpr, _ = sk_roc_curve(y_true, scores)
    auc = roc_auc_score(y_true, scores)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(fpr, tpr, label=f"ROC-AUC {auc:.4f}")
    ax.plot([0, 1], [0, 1], color="gray", ls=":")
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.set_title("ROC curve")
    ax.legend(loc="lower right")
    save_figure(fig, path)


def _tile(images: np.ndarray, rows: int, cols: int) -> np.ndarray:
    n = rows * cols
    imgs = np.asarray(images, dtype=float)[:n]
    if len(imgs) < n:
        imgs = np.concatenate([imgs, np.zeros((n - len(imgs), *imgs.shape[1:]))])
    h, w = imgs.shape[1:3]
    tail = imgs.shape[3:]
    grid = imgs.reshape(rows, cols, h, w, *tail).swapaxes(1, 2)
    return grid.reshape(rows * h, cols * w, *tail)


def reconstruction_grid(inputs, reconstructions, path: str | os.PathLike, rows: int = 6,
                        cols: int = 6, title: str = "") -> None:
    """A rows x cols grid of inputs beside the grid of their reconstructions (0..1 images)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.3))
    for ax, imgs, name in zip(axes, (inputs, reconstructions), ("input", "reconstruction")):
        tile = _tile(imgs, rows, cols)
        ax.imshow(tile, cmap="gray" if tile.ndim == 2 else None, vmin=0, vmax=1)
        ax.set_title(name)
        ax.axis("off")
    if title:
        fig.suptitle(title)
    save_figure(fig, path)


def _shade(ax, mask, x, color: str, label: str) -> None:
    """Shade the runs where ``mask`` is true."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return
    edges = np.flatnonzero(np.diff(np.r_[0, mask.astype(np.int8), 0]))
    for k, (a, b) in enumerate(edges.reshape(-1, 2)):
        ax.axvspan(x[a], x[min(b, len(x) - 1)], color=color, alpha=0.2, lw=0, label=label if k == 0 else None)


def series_plot(frame, scores, threshold: float, path: str | os.PathLike, y_true=None, y_pred=None,
                columns: list[str] | None = None, max_panels: int = 12) -> None:
    """One panel per sensor (or the chosen ``columns``), then the score with the
    threshold; true anomalies shaded red, detected ones orange."""
    import pandas as pd

    frame = frame if isinstance(frame, pd.DataFrame) else pd.DataFrame(np.asarray(frame))
    cols = list(columns or frame.columns)[:max_panels]
    x = frame.index if isinstance(frame.index, pd.DatetimeIndex) else np.arange(len(frame))
    scores = np.asarray(scores, dtype=float)
    fig, axes = plt.subplots(len(cols) + 1, 1, figsize=(11, 1.3 * (len(cols) + 1) + 0.6), sharex=True)
    for ax, col in zip(axes, cols):
        ax.plot(x, frame[col].to_numpy(), lw=0.7, color="tab:blue")
        ax.set_ylabel(str(col), rotation=0, ha="right", fontsize=8)
        ax.tick_params(labelsize=7)
    ax = axes[-1]
    ax.plot(x, scores, lw=0.8, color="black", label="score")
    ax.axhline(threshold, color="tab:red", ls="--", lw=0.8, label=f"threshold {threshold:.4g}")
    ax.set_ylabel("score", rotation=0, ha="right", fontsize=8)
    for a in axes:
        if y_true is not None:
            _shade(a, y_true, x, "tab:red", "true anomaly" if a is ax else None)
        if y_pred is not None:
            _shade(a, y_pred, x, "tab:orange", "detected" if a is ax else None)
    ax.legend(loc="upper left", fontsize=7, ncol=4)
    fig.tight_layout()
    save_figure(fig, path)
