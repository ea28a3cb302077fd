"""Score pandas frames with a fitted detector: plain functions that any engine can map
over pieces of a large data set (Dask partitions, Spark ``mapInPandas`` batches, a loop
over files), plus a per-process model cache so each worker loads a model once.

* tables: ``score_table(det, frame)``, one score per row;
* series: ``score_series(det, frame, id_column=...)``, one score per time step of each
  machine's series (rows in time order); rows marked as context (``keep=False``) give the
  windows their history and future but are not returned;
* images: ``score_images(det, paths)``, one score per image file.

The result keeps the frame's other columns (ids, timestamps, ...) and its index, and adds
``score`` (float64, higher = more anomalous) and ``label`` (1 = above ``threshold_``).
"""

from __future__ import annotations

import json
import os
import threading
from typing import Sequence

import numpy as np
import pandas as pd

from reconad import persistence

_CACHE: dict[tuple[str, str], object] = {}
_CACHE_LOCK = threading.Lock()
LOADS = {"count": 0}  # how many times this process read a model from disk


def load_cached(model: str | os.PathLike):
    """``load_model(model)`` (:mod:`reconad.ops.loading`: a model folder, a registry folder
    or ``REGISTRY@VERSION``) once per process: later calls return the same detector while
    the model folder's weights checksum is unchanged."""
    from reconad.ops.loading import load_model, resolve

    source = resolve(model)
    try:
        config = json.loads((source.folder / persistence.CONFIG).read_text(encoding="utf-8"))
        checksum = config["weights_sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return load_model(source.name)  # raises the clear error for a missing or damaged folder
    key = (str(source.folder), str(checksum))
    with _CACHE_LOCK:
        det = _CACHE.get(key)
        if det is None:
            det = load_model(source.name)
            LOADS["count"] += 1
            _CACHE.clear()  # one model at a time per process
            _CACHE[key] = det
    return det


def feature_columns(detector, frame: pd.DataFrame, features: Sequence[str] | None = None,
                    exclude: Sequence[str] = ()) -> list[str]:
    """The columns the detector scores: ``features`` when given, else the names it was
    fitted on (``feature_names_in_``, or a series detector's ``columns_`` when the frame
    has them all), else every numeric column not in ``exclude``."""
    names = features if features is not None else getattr(detector, "feature_names_in_", None)
    fitted_columns = getattr(detector, "columns_", None)
    if names is None and fitted_columns and all(c in frame.columns for c in fitted_columns):
        names = list(fitted_columns)
    if names is None:
        names = [c for c in frame.columns if c not in exclude and pd.api.types.is_numeric_dtype(frame[c])]
    names = [str(c) for c in names]
    missing = [c for c in names if c not in frame.columns]
    if missing:
        raise ValueError(f"input has no column(s) {', '.join(missing)} that the model scores; "
                         f"columns are {', '.join(map(str, frame.columns))}")
    if not names:
        raise ValueError("input has no numeric feature columns to score")
    return names


def _result(rest: pd.DataFrame, scores: np.ndarray, threshold: float) -> pd.DataFrame:
    out = rest.copy()
    out["score"] = np.asarray(scores, dtype=np.float64)
    out["label"] = (out["score"].to_numpy() > threshold).astype(np.int8)
    return out


def score_table(detector, frame: pd.DataFrame, *, features: Sequence[str] | None = None) -> pd.DataFrame:
    """One score per row of ``frame``."""
    feats = feature_columns(detector, frame, features)
    rest = frame.drop(columns=feats)
    if len(frame) == 0:
        return _result(rest, np.empty(0), detector.threshold_)
    return _result(rest, detector.decision_function(frame[feats]), detector.threshold_)


def score_series(detector, frame: pd.DataFrame, *, id_column: str | None = None,
                 features: Sequence[str] | None = None, keep=None) -> pd.DataFrame:
    """One score per time step. ``frame`` holds one series (``id_column`` None) or several,
    one per value of ``id_column``, each in time order. ``keep`` (boolean, one per row)
    marks the rows to return; the others are context and only feed the windows."""
    if id_column is not None and id_column not in frame.columns:
        raise ValueError(f"input has no id column {id_column!r}; columns are "
                         f"{', '.join(map(str, frame.columns))}")
    feats = feature_columns(detector, frame, features, exclude=[id_column] if id_column else [])
    keep = np.ones(len(frame), dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
    scores = np.full(len(frame), np.nan)
    values = frame[feats]
    groups = [np.arange(len(frame))] if id_column is None else \
        frame.groupby(id_column, sort=False, dropna=False).indices.values()
    for rows in groups:
        if keep[rows].any():
            scores[rows] = detector.decision_function(values.iloc[rows])
    rest = frame.drop(columns=feats)
    return _result(rest[keep], scores[keep], detector.threshold_)


def score_images(detector, paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """One score per image file, in the order of ``paths``."""
    paths = [str(p) for p in paths]
    scores = detector.decision_function(paths) if paths else np.empty(0)
    return _result(pd.DataFrame({"path": pd.Series(paths, dtype=object)}), scores, detector.threshold_)
