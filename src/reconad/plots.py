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
                    score_name: str = "score", names: tuple[str, str] = ("normal", "anomalous")) -> None:
    """Histograms of normal and anomalous scores with the threshold line; ``names`` are
    the legend labels of the two groups."""
    normal = np.asarray(normal, dtype=float)
    anomalous = np.asarray(anomalous, dtype=float)
    fig, ax = plt.subplots(figsize=(6, 4))
    both = np.concatenate([normal, anomalous, [threshold]])
    bins = np.linspace(both.min(), both.max(), 60)
    ax.hist(normal, bins=bins, alpha=0.6, label=f"{names[0]} (n={normal.size})", color="tab:blue")
    if anomalous.size:
        ax.hist(anomalous, bins=bins, alpha=0.6, label=f"{names[1]} (n={anomalous.size})", color="tab:red")
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


def anomaly_gallery(images, maps, titles, path: str | os.PathLike, cols: int = 4) -> None:
    """Each image (0..1, ``(H, W)`` or ``(H, W, 3)``) above its anomaly map (heat colours),
    ``cols`` pairs per row, with one title per image."""
    n = len(images)
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(2 * rows, cols, figsize=(2.4 * cols, 4.6 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i in range(n):
        r, c = 2 * (i // cols), i % cols
        img = np.asarray(images[i], dtype=float)
        axes[r, c].imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
        axes[r, c].set_title(titles[i], fontsize=8)
        im = axes[r + 1, c].imshow(maps[i], cmap="inferno")
        fig.colorbar(im, ax=axes[r + 1, c], fraction=0.046, pad=0.02)
    fig.tight_layout()
    save_figure(fig, path)
