"""Evaluate a fitted image detector on normal and anomalous data: numbers and pictures."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from reconad import metrics, plots
from reconad._atomic import write_text
from reconad.data.images import to_float_array


def evaluate_images(detector, normal, anomalous, out_dir: str | os.PathLike | None = None) -> dict:
    """Score ``normal`` and ``anomalous`` images; return the metrics at the detector's
    threshold. With ``out_dir``, also write ``metrics.json``, ``report.txt`` and the plots
    ``loss.png``, ``scores.png``, ``roc.png``, ``reconstructions.png``."""
    # convert once (files are read once); NHWC floats in 0..1 are valid detector input
    normal = to_float_array(normal, channels=detector.input_shape_[0]).transpose(0, 2, 3, 1)
    anomalous = to_float_array(anomalous, channels=detector.input_shape_[0]).transpose(0, 2, 3, 1)
    s_norm = detector.decision_function(normal)
    s_anom = detector.decision_function(anomalous)
    y = np.r_[np.zeros(len(s_norm), int), np.ones(len(s_anom), int)]
    scores = np.r_[s_norm, s_anom]
    result = metrics.evaluate(y, scores, detector.threshold_)
    result["score"] = detector._score_name()
    result["model"] = detector.model
    if out_dir is None:
        return result
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "metrics.json", json.dumps(result, indent=2))
    write_text(out / "report.txt", metrics.classification_report(y, scores, detector.threshold_) + "\n")
    plots.loss_curve(detector.history_, out / "loss.png", detector.best_epoch_)
    plots.score_histogram(s_norm, s_anom, detector.threshold_, out / "scores.png", result["score"])
    plots.roc_curve(y, scores, out / "roc.png")
    # 18 normal and 18 anomalous images, each beside its reconstruction
    pick = np.concatenate([normal[:18], anomalous[:18]])
    images = pick[..., 0] if pick.shape[-1] == 1 else pick
    plots.reconstruction_grid(images, detector.reconstruct(pick), out / "reconstructions.png",
                              title="rows 1-3: normal, rows 4-6: anomalous")
    return result
