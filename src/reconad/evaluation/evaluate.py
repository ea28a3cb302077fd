"""Evaluate a fitted detector on labelled data: numbers and pictures. Images:
``evaluate_images`` (equal-sized images) and ``evaluate_with_maps`` (any size, with pixel
metrics from masks); ``evaluate_series`` (a labelled sensor series); ``evaluate_table``
(labelled table rows). Every result names the model, and its version when it was loaded
with one (``model_version_``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from reconad.evaluation import metrics
from reconad.evaluation import plots
from reconad._atomic import write_text
from reconad.data.images import to_float_array


def _about(detector) -> dict:
    """The model's name, and its version when it has one."""
    about = {"model": detector.model}
    if getattr(detector, "model_version_", None) is not None:
        about["model_version"] = detector.model_version_
    return about


def _write_numbers(out_dir, result: dict, y, scores, threshold: float) -> Path:
    """Write ``metrics.json`` and ``report.txt`` into ``out_dir`` (made if missing)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "metrics.json", json.dumps(result, indent=2))
    write_text(out / "report.txt", metrics.classification_report(y, scores, threshold) + "\n")
    return out


def evaluate_images(detector, normal, anomalous, out_dir: str | os.PathLike | None = None) -> dict:
    """Score ``normal`` and ``anomalous`` images; return the metrics at the detector's
    threshold. With ``out_dir``, also write ``metrics.json``, ``report.txt`` and the plots
    ``loss.png``, ``scores.png``, ``roc.png`` and, for models that reconstruct pixels,
    ``reconstructions.png``."""
    # convert once (files are read once); NHWC floats in 0..1 are valid detector input
    normal = to_float_array(normal, channels=detector._input_channels()).transpose(0, 2, 3, 1)
    anomalous = to_float_array(anomalous, channels=detector._input_channels()).transpose(0, 2, 3, 1)
    s_norm = detector.decision_function(normal)
    s_anom = detector.decision_function(anomalous)
    y = np.r_[np.zeros(len(s_norm), int), np.ones(len(s_anom), int)]
    scores = np.r_[s_norm, s_anom]
    result = metrics.evaluate(y, scores, detector.threshold_)
    result["score"] = detector._score_name()
    result.update(_about(detector))
    if out_dir is None:
        return result
    out = _write_numbers(out_dir, result, y, scores, detector.threshold_)
    plots.loss_curve(detector.history_, out / "loss.png", detector.best_epoch_)
    plots.score_histogram(s_norm, s_anom, detector.threshold_, out / "scores.png", result["score"])
    plots.roc_curve(y, scores, out / "roc.png")
    # 18 normal and 18 anomalous images, each beside its reconstruction
    if detector._entry().family in ("gmm", "features"):  # they do not reconstruct pixels
        return result
    pick = np.concatenate([normal[:18], anomalous[:18]])
    images = pick[..., 0] if pick.shape[-1] == 1 else pick
    plots.reconstruction_grid(images, detector.reconstruct(pick), out / "reconstructions.png",
                              title="rows 1-3: normal, rows 4-6: anomalous")
    return result


def evaluate_with_maps(detector, files, labels, mask_files=None, out_dir: str | os.PathLike | None = None,
                       n_examples: int = 8, stride: int = 4, sigma: float = 0.0) -> dict:
    """Score image files of any size (patch-mode detectors), and with ``mask_files``
    (a path or None per file; None = defect-free) add pixel ROC-AUC and AUPRO from the
    anomaly maps (smoothed by a Gaussian of ``sigma`` pixels). With ``out_dir``, write ``metrics.json``, ``report.txt``, ``scores.png``,
    ``roc.png`` and ``heatmaps.png`` (up to ``n_examples`` images, half of them defective)."""
    from reconad.data.images import image_sequence, image_shapes
    from reconad.data.layouts import read_mask

    paths = [str(f) for f in files]
    channels = detector._input_channels()
    files_read = image_sequence(paths, channels=channels)  # decoded only where shown
    sizes = [shape[1:] for shape in image_shapes(files_read)]
    # a feature model reads the files itself, a batch at a time; a pixel network gets them in
    # its channels, as (H, W, C) floats in 0..1 (valid detector input for any size)
    inputs = paths if channels is None else [im.transpose(1, 2, 0) for im in files_read]
    y = np.asarray(labels, dtype=int)
    maps = None
    if mask_files is None:
        scores = detector.decision_function(inputs)
    else:
        scores, maps = detector.scores_and_maps(inputs, stride=stride, sigma=sigma)
    result = metrics.evaluate(y, scores, detector.threshold_)
    result["score"] = detector._score_name()
    result.update(_about(detector))
    if mask_files is not None:
        masks = [read_mask(m, size) for m, size in zip(mask_files, sizes)]
        result.update(metrics.localization_metrics(masks, list(maps)))
    if out_dir is None:
        return result
    out = _write_numbers(out_dir, result, y, scores, detector.threshold_)
    plots.score_histogram(scores[y == 0], scores[y == 1], detector.threshold_, out / "scores.png", result["score"])
    if len(np.unique(y)) == 2:
        plots.roc_curve(y, scores, out / "roc.png")
    half = n_examples // 2
    pick = list(np.flatnonzero(y == 0)[:half]) + list(np.flatnonzero(y == 1)[:n_examples - half])
    pick_maps = [maps[i] for i in pick] if maps is not None else list(
        detector.anomaly_map([inputs[i] for i in pick], stride=stride, sigma=sigma))
    shown = (files_read[i].transpose(1, 2, 0) for i in pick)  # read one at a time by the plot
    shown = (im[..., 0] if im.shape[-1] == 1 else im for im in shown)
    shown_masks = ([read_mask(mask_files[i], sizes[i]) for i in pick]
                   if mask_files is not None else None)
    plots.heatmap_overlays(shown, pick_maps, out / "heatmaps.png", masks=shown_masks,
                           scores=scores[pick], labels=y[pick], threshold=detector.threshold_)
    return result


def evaluate_series(detector, frame, y, out_dir: str | os.PathLike | None = None) -> dict:
    """Score the sensor series ``frame`` (labels ``y``, one per row): point metrics, VUS-PR,
    false and missed alarm rates, point-adjusted F1. With ``out_dir``, also write
    ``metrics.json``, ``report.txt``, ``series.png`` and ``loss.png``."""
    y = np.asarray(y).astype(int)
    scores = detector.decision_function(frame)
    result = metrics.series_evaluate(y, scores, detector.threshold_, max_buffer=2 * int(detector.window))
    result.update({**_about(detector), "window": int(detector.window), "combine": detector.combine})
    if out_dir is None:
        return result
    out = _write_numbers(out_dir, result, y, scores, detector.threshold_)
    write_text(out / "report.txt", metrics.classification_report(y, scores, detector.threshold_) +
               f"\nVUS-PR {result['vus_pr']:.4f}   FAR {result['far']:.4f}   MAR {result['mar']:.4f}   "
               f"point-adjusted F1 {result['f1_point_adjusted']:.4f}\n")
    plots.series_plot(frame, scores, detector.threshold_, out / "series.png", y_true=y,
                      y_pred=scores > detector.threshold_)
    plots.loss_curve(detector.history_, out / "loss.png", detector.best_epoch_)
    return result


def evaluate_table(detector, X, y, out_dir: str | os.PathLike | None = None) -> dict:
    """Score the rows of ``X`` (labels ``y``: 0 normal, 1 anomaly); metrics at the
    detector's threshold. With ``out_dir``, also write ``metrics.json``, ``report.txt``,
    ``scores.png``, ``roc.png`` (with both labels present) and ``loss.png``."""
    y = np.asarray(y).astype(int)
    scores = detector.decision_function(X)
    result = metrics.evaluate(y, scores, detector.threshold_)
    result.update({"score": detector.score, **_about(detector)})
    if out_dir is None:
        return result
    out = _write_numbers(out_dir, result, y, scores, detector.threshold_)
    plots.score_histogram(scores[y == 0], scores[y == 1], detector.threshold_, out / "scores.png",
                          detector.score)
    if len(np.unique(y)) == 2:
        plots.roc_curve(y, scores, out / "roc.png")
    plots.loss_curve(detector.history_, out / "loss.png", detector.best_epoch_)
    return result
