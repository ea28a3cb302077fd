"""Retrain a saved detector on new normal data, keeping its configuration.

The saved detector is loaded, copied *unfitted* with the same parameters
(``sklearn.base.clone``, which goes through ``get_params``), optionally given a few new
settings, fitted on the new data and saved. This works for every reconad detector, since
all are scikit-learn estimators that ``reconad.load`` restores.

Training data is handed to ``fit`` as the list of given paths (image files or folders for
``ImageDetector``). A detector whose ``fit`` wants something else read from those paths
provides ``read_fit_data(paths)``, which is used instead (series: one segment per CSV
file; tables: the rows of all CSV files). A series or table model keeps its input columns.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from sklearn.base import clone

from reconad.ops.loading import load_model
from reconad.ops.registry import ModelRegistry, data_fingerprint, model_version


def parse_overrides(items: list[str] | None, params: dict) -> dict:
    """``["epochs=10", "lr=0.0005"]`` -> ``{"epochs": 10, "lr": 0.0005}``; values are read as
    JSON where they parse (numbers, true/false/null, lists), else kept as text. Keys must be
    parameters of the detector."""
    import json

    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"setting {item!r} must look like NAME=VALUE")
        key, raw = item.split("=", 1)
        key = key.strip().replace("-", "_")
        if key not in params:
            raise ValueError(f"unknown setting {key!r} for this detector; known: {', '.join(sorted(params))}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def read_fit_data(detector, paths: list[str | os.PathLike]):
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("no training data given")
    for p in paths:
        if not p.exists():
            raise FileNotFoundError(f"training data not found: {p}")
    reader = getattr(detector, "read_fit_data", None)
    return reader([str(p) for p in paths]) if callable(reader) else [str(p) for p in paths]


def _input_columns(detector) -> list[str] | None:
    """The named input columns of a fitted series or table detector; None for others."""
    if detector.kind == "series":
        return list(detector.columns_)
    if detector.kind == "table" and hasattr(detector, "feature_names_in_"):
        return [str(c) for c in detector.feature_names_in_]
    return None


def retrain(model, data: list[str | os.PathLike], out: str | os.PathLike, overrides: dict | None = None,
            registry: str | os.PathLike | None = None, promote: bool = False) -> dict:
    """Fit a copy of the detector ``model`` names (a model folder, a registry folder for its
    current version, or ``REGISTRY@VERSION``) on ``data`` and save it to ``out``. With ``registry``, the new model is
    registered there (and made current with ``promote``). Returns a summary: ``out``,
    ``parent_version``, ``data_fingerprint``, ``metrics``, and ``version`` when registered."""
    old = load_model(model)
    parent = model_version(old)
    new = clone(old)
    columns = _input_columns(old)
    if columns is not None and new.get_params().get("columns", False) is None:
        new.set_params(columns=columns)  # the same input columns as the model had
    if overrides:
        new.set_params(**overrides)
    fit_data = read_fit_data(new, data)
    fingerprint = data_fingerprint(data)
    start = time.perf_counter()
    new.fit(fit_data)
    seconds = time.perf_counter() - start
    new.save(out)
    ref = np.asarray(new.decision_scores_, dtype=float)
    metrics = {
        "fit_seconds": round(seconds, 3),
        "threshold": float(new.threshold_),
        "previous_threshold": float(old.threshold_),
        "reference_scores": int(ref.size),
        "reference_score_median": float(np.median(ref)),
        "reference_score_q95": float(np.quantile(ref, 0.95)),
    }
    summary = {"out": str(out), "parent_version": parent, "data_fingerprint": fingerprint,
               "metrics": metrics, "changed_settings": dict(overrides or {})}
    if registry is not None:
        reg = ModelRegistry(registry)
        entry = reg.register(out, data_fingerprint=fingerprint, metrics=metrics, parent=parent,
                             note=f"retrained from {parent}")
        summary["version"] = entry["version"]
        if promote:
            reg.promote(entry["version"])
    return summary
