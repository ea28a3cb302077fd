"""One self-contained HTML page about a fitted detector on some data.

``build_report(detector, X, y=None)`` returns the page; ``write_report`` writes it. The
page holds the model's settings, the metrics table (with labels ``y``: ROC-AUC, PR-AUC,
precision, recall, F1, confusion matrix; without: counts and score quantiles), the loss
curve, the score histogram with the threshold, the ROC curve (with labels), and the most
anomalous samples: images beside their anomaly maps, or for rows a table of their values.
Every figure is a PNG embedded as base64, so the file can be mailed or archived alone.

The report only calls the detector's public face: ``kind``, ``decision_function``,
``anomaly_map``, ``threshold_``, ``history_`` (and ``best_epoch_``, ``get_params``,
``model_version_`` when present).
"""

from __future__ import annotations

import base64
import html
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from reconad.evaluation import metrics
from reconad.evaluation import plots
from reconad._atomic import write_text
from reconad._version import __version__
from reconad.data.images import to_float_array


def _embed(draw) -> str:
    """Run ``draw(path)`` (a plots.* call) and return an <img> with the PNG inlined."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "figure.png"
        draw(path)
        data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="">'


def _table(rows: list[tuple[str, str]], header: tuple[str, str] = ("", "")) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def build_report(detector, X, y=None, title: str | None = None, n_top: int = 8) -> str:
    """The HTML page for ``detector`` on data ``X`` (optionally labelled: ``y`` 0 normal,
    1 anomaly)."""
    if not hasattr(detector, "threshold_"):
        raise ValueError("the detector is not fitted; report on a fitted or loaded model")
    images = detector.kind == "image"
    if images:  # read files once; NHWC floats in 0..1 are valid detector input
        X = to_float_array(X, channels=detector._input_channels()).transpose(0, 2, 3, 1)
    scores = np.asarray(detector.decision_function(X), dtype=np.float64)
    threshold = float(detector.threshold_)
    if y is not None:
        y = np.asarray(y).astype(int).ravel()
        if y.shape != scores.shape:
            raise ValueError(f"{y.size} labels for {scores.size} samples")
    labelled = y is not None and len(np.unique(y)) == 2
    params = detector.get_params(deep=False) if hasattr(detector, "get_params") else {}
    score_name = params.get("score") or "score"
    name = type(detector).__name__ + (f" ({params['model']})" if "model" in params else "")
    version = getattr(detector, "model_version_", None)
    title = title or f"reconad report: {name}"

    sections = [f"<h1>{html.escape(title)}</h1>",
                f"<p class=meta>reconad {__version__}, "
                f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; "
                + (f"model version {html.escape(str(version))}; " if version is not None else "")
                + f"{scores.size} samples; "
                f"threshold {threshold:.6g} ({html.escape(str(getattr(detector, 'threshold_method_', '')))})</p>"]

    # metrics
    pred = scores > threshold
    if y is not None:
        m = metrics.evaluate(y, scores, threshold)
        c = m["confusion"]
        rows = [("samples", f"{m['n']} ({m['n_anomalous']} anomalous)"),
                ("ROC-AUC", f"{m['roc_auc']:.4f}"), ("PR-AUC", f"{m['pr_auc']:.4f}"),
                ("precision", f"{m['precision']:.4f}"), ("recall", f"{m['recall']:.4f}"),
                ("F1", f"{m['f1']:.4f}"), ("threshold", f"{threshold:.6g}"),
                ("true negatives / false positives", f"{c['tn']} / {c['fp']}"),
                ("false negatives / true positives", f"{c['fn']} / {c['tp']}")]
    else:
        q = np.quantile(scores, [0.0, 0.5, 0.95, 1.0])
        rows = [("samples", str(scores.size)), ("flagged as anomalous", f"{int(pred.sum())}"),
                ("threshold", f"{threshold:.6g}"),
                ("score min / median / 95 % / max", " / ".join(f"{v:.4g}" for v in q))]
    sections += ["<h2>Metrics</h2>", _table(rows, ("metric", "value"))]

    # figures
    figures = []
    history = getattr(detector, "history_", None)
    if history and history.get("train_loss"):
        best = getattr(detector, "best_epoch_", None)
        figures.append(("Loss curve", _embed(lambda p: plots.loss_curve(history, p, best))))
    if labelled:
        figures.append(("Scores and threshold", _embed(lambda p: plots.score_histogram(
            scores[y == 0], scores[y == 1], threshold, p, score_name))))
        figures.append(("ROC curve", _embed(lambda p: plots.roc_curve(y, scores, p))))
    else:
        figures.append(("Scores and threshold", _embed(lambda p: plots.score_histogram(
            scores, [], threshold, p, score_name, names=("samples", "")))))
    sections.append("<h2>Figures</h2><div class=figs>" + "".join(
        f"<figure>{img}<figcaption>{html.escape(cap)}</figcaption></figure>" for cap, img in figures) + "</div>")

    # most anomalous samples
    top = np.argsort(-scores, kind="stable")[:n_top]
    sections.append(f"<h2>The {len(top)} most anomalous samples</h2>")
    if images:
        maps = detector.anomaly_map(X[top])
        pics = X[top][..., 0] if X.shape[-1] == 1 else X[top]
        titles = [f"#{i}: {scores[i]:.4g}" + ("" if y is None else f" ({'anomaly' if y[i] else 'normal'})")
                  for i in top]
        sections.append(_embed(lambda p: plots.anomaly_gallery(pics, maps, titles, p)))
    else:
        frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(np.asarray(X))
        shown = frame.iloc[top].copy()
        shown.insert(0, "score", scores[top])
        if y is not None:
            shown.insert(1, "label", y[top])
        sections.append(shown.to_html(float_format=lambda v: f"{v:.4g}", border=0))

    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .7em;"
             "text-align:right}td:first-child{text-align:left}.meta{color:#666}"
             ".figs{display:flex;flex-wrap:wrap;gap:1em}figure{margin:0}img{max-width:100%}")
    return ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            f"<title>{html.escape(title)}</title><style>{style}</style></head><body>\n"
            + "\n".join(sections) + "\n</body></html>\n")


def write_report(detector, X, path: str | os.PathLike, y=None, **kwargs) -> Path:
    """Write ``build_report(detector, X, y, **kwargs)`` to ``path`` (atomically)."""
    page = build_report(detector, X, y, **kwargs)
    write_text(path, page)
    return Path(path)
