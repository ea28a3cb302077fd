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


# The longest side, in pixels, an image keeps in a panel of ``heatmap_overlays``; larger images
# are averaged down in blocks (masks: a block is defect where any of its pixels is) before they
# are drawn, as a panel of a few inches shows no more anyway.
DISPLAY_SIDE = 512


def _blocks(a: np.ndarray, step: int, reduce) -> np.ndarray:
    """``a`` ``(H, W[, C])`` reduced over ``step`` x ``step`` blocks (the edge rows and columns
    that do not fill a block are left out)."""
    if step == 1:
        return a
    h, w = a.shape[0] // step * step, a.shape[1] // step * step
    a = a[:h, :w].reshape(h // step, step, w // step, step, *a.shape[2:])
    return reduce(a, axis=(1, 3))


def heatmap_overlays(images, maps, path: str | os.PathLike, masks=None, scores=None, labels=None,
                     threshold: float | None = None, cols: int = 4, alpha: float = 0.45,
                     vmax: float | None = None) -> None:
    """Each image in gray with its anomaly map in colour on top, the mask outline in
    white, and the score and label in the title. ``images`` are ``(H, W)`` or ``(H, W, 3)``
    arrays in 0..1 (sizes may differ; any iterable, read once); ``maps`` the matching
    ``(H, W)`` maps. Images larger than ``DISPLAY_SIDE`` are drawn averaged down. The colour
    scale is shared (0.5th to 99.5th percentile of all map values unless ``vmax``)."""
    n = len(maps)
    steps = [max(1, int(np.ceil(max(np.shape(m)[:2]) / DISPLAY_SIDE))) for m in maps]
    # images may be any iterable (read one at a time), each reduced before the next is read
    images = [_blocks(np.asarray(im, dtype=np.float32), k, np.mean) for im, k in zip(images, steps)]
    maps = [_blocks(np.asarray(m, dtype=np.float32), k, np.mean) for m, k in zip(maps, steps)]
    if masks is not None:
        masks = [None if k_ is None else _blocks(np.asarray(k_, dtype=bool), k, np.any) for k_, k in zip(masks, steps)]
    rows = max(1, int(np.ceil(n / cols)))
    cols = min(cols, n)
    all_vals = np.concatenate([np.asarray(m, dtype=float).ravel() for m in maps])
    vmin = float(np.percentile(all_vals, 0.5))
    vmax = float(np.percentile(all_vals, 99.5)) if vmax is None else vmax
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i in range(n):
        ax = axes.ravel()[i]
        img = np.asarray(images[i], dtype=float)
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
        im = ax.imshow(maps[i], cmap="jet", alpha=alpha, vmin=vmin, vmax=vmax)
        if masks is not None and masks[i] is not None and np.any(masks[i]):
            ax.contour(np.asarray(masks[i], dtype=float), levels=[0.5], colors="white", linewidths=1)
        parts = []
        if labels is not None:
            parts.append("defect" if labels[i] else "normal")
        if scores is not None:
            parts.append(f"score {scores[i]:.4g}")
            if threshold is not None:
                parts.append("flagged" if scores[i] > threshold else "passed")
        ax.set_title("  ".join(parts), fontsize=8)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.6, label="anomaly score")
    save_figure(fig, path)


def latent_space(latents, labels, path: str | os.PathLike, title: str = "Latent space") -> None:
    """2-D PCA of latent codes (e.g. mu_z), normal and anomalous in two colours."""
    from sklearn.decomposition import PCA

    z = np.asarray(latents, dtype=float)
    y = np.asarray(labels).astype(int)
    xy = PCA(n_components=2).fit_transform(z) if z.shape[1] > 2 else z
    fig, ax = plt.subplots(figsize=(5, 5))
    for value, name, colour in ((0, "normal", "tab:blue"), (1, "anomalous", "tab:red")):
        sel = y == value
        if sel.any():
            ax.scatter(xy[sel, 0], xy[sel, 1], s=8, alpha=0.6, c=colour, label=f"{name} (n={sel.sum()})")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title)
    ax.legend()
    save_figure(fig, path)


def _marks(n: int, labels) -> np.ndarray:
    labels = np.zeros(n, dtype=int) if labels is None else np.asarray(labels).astype(int).ravel()
    if labels.shape != (n,):
        raise ValueError(f"{labels.size} labels for {n} samples")
    return labels


def _span(values: np.ndarray, margin: float = 0.15) -> tuple[float, float]:
    lo, hi = float(np.min(values)), float(np.max(values))
    pad = (hi - lo) * margin if hi > lo else 1.0
    return lo - pad, hi + pad


def decision_curve(score_fn, x, threshold: float, path: str | os.PathLike, labels=None,
                   feature_name: str = "feature", grid: int = 400, label_name: str = "") -> None:
    """One feature: the anomaly score as a curve over the feature, the threshold, and the
    samples on the axis (normal blue, anomalous red; ``labels`` or, if None, all normal).

    ``score_fn`` maps an array ``(n, 1)`` to ``n`` scores, e.g. a fitted detector's
    ``decision_function``."""
    x = np.asarray(x, dtype=float).ravel()
    marks = _marks(len(x), labels)
    xs = np.linspace(*_span(x), grid)
    curve = np.asarray(score_fn(xs.reshape(-1, 1)), dtype=float)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(xs, curve, color="black", lw=1.5, label="anomaly score")
    ax.axhline(threshold, color="tab:orange", ls="--", label=f"threshold {threshold:.4g}")
    ax.fill_between(xs, threshold, curve, where=curve > threshold, color="tab:red", alpha=0.12)
    base = min(curve.min(), threshold)
    for value, color, name in ((0, "tab:blue", "normal"), (1, "tab:red", "anomalous")):
        sel = marks == value
        if sel.any():
            ax.plot(x[sel], np.full(sel.sum(), base), "|", ms=14, mew=1.5, color=color,
                    label=f"{name}{label_name} (n={int(sel.sum())})")
    ax.set_xlabel(feature_name)
    ax.set_ylabel("anomaly score")
    ax.set_title("Anomaly score over one feature")
    ax.legend(loc="best", fontsize=8)
    save_figure(fig, path)


def decision_contour(score_fn, X, threshold: float, path: str | os.PathLike, labels=None,
                     feature_names: tuple[str, str] = ("feature 1", "feature 2"), grid: int = 150,
                     label_name: str = "") -> None:
    """Two features: the anomaly score as a filled contour over the plane, the threshold
    contour, and the samples marked normal (o) or anomalous (x).

    ``score_fn`` maps an array ``(n, 2)`` to ``n`` scores."""
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"decision_contour needs two features, got shape {X.shape}")
    marks = _marks(len(X), labels)
    g0 = np.linspace(*_span(X[:, 0]), grid)
    g1 = np.linspace(*_span(X[:, 1]), grid)
    xx, yy = np.meshgrid(g0, g1)
    zz = np.asarray(score_fn(np.c_[xx.ravel(), yy.ravel()]), dtype=float).reshape(xx.shape)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    levels = np.linspace(zz.min(), zz.max(), 30) if zz.max() > zz.min() else 30
    cf = ax.contourf(xx, yy, zz, levels=levels, cmap="viridis")
    fig.colorbar(cf, ax=ax, label="anomaly score")
    if zz.min() < threshold < zz.max():
        cs = ax.contour(xx, yy, zz, levels=[threshold], colors="tab:orange", linewidths=2)
        ax.clabel(cs, fmt={threshold: "threshold"}, fontsize=8)
    for value, style, color, name in ((0, "o", "white", "normal"), (1, "x", "tab:red", "anomalous")):
        sel = marks == value
        if sel.any():
            ax.scatter(X[sel, 0], X[sel, 1], marker=style, s=18, edgecolors="black" if style == "o" else None,
                       linewidths=0.5 if style == "o" else 1.5, c=color,
                       label=f"{name}{label_name} (n={int(sel.sum())})")
    ax.set_xlabel(feature_names[0])
    ax.set_ylabel(feature_names[1])
    ax.set_title("Anomaly score over two features")
    ax.legend(loc="upper right", fontsize=8)
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
