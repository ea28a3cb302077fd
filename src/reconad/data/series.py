"""Multivariate sensor series: checking, choosing columns, filling gaps, scaling.

A series is a ``pandas.DataFrame`` (numeric sensor columns; a datetime index or a datetime
column, which is set aside) or an array ``(T, F)``. Missing values are filled by linear
interpolation over at most ``fill_limit`` consecutive steps (then the first/last valid
value at the ends, within the same limit); longer gaps raise a ``ValueError``. The number
of filled values is reported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

SCALERS = ("standard", "minmax", "none")


@dataclass
class Series:
    """One checked series: float32 values ``(T, F)``, column names, timestamps (or None)
    and the number of filled missing values."""

    values: np.ndarray
    columns: list[str]
    index: pd.Index | None
    n_filled: int


def _split_datetime(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.Index | None]:
    if isinstance(frame.index, pd.DatetimeIndex):
        return frame, frame.index
    for col in frame.columns:
        if pd.api.types.is_datetime64_any_dtype(frame[col]):
            return frame.drop(columns=[col]), pd.DatetimeIndex(frame[col])
    return frame, None


def to_frame(X, columns: list[str] | None = None) -> tuple[pd.DataFrame, pd.Index | None]:
    """A numeric sensor frame from a DataFrame, an array ``(T, F)`` or a CSV path."""
    if isinstance(X, (str, os.PathLike)):
        from reconad.data.csv import read_csv

        X = read_csv(X)
    if isinstance(X, pd.Series):
        X = X.to_frame()
    if isinstance(X, pd.DataFrame):
        frame, index = _split_datetime(X)
        if columns is not None:
            missing = [c for c in columns if c not in frame.columns]
            if missing:
                raise ValueError(f"column(s) {', '.join(map(str, missing))} not in the data; "
                                 f"columns: {', '.join(map(str, frame.columns))}")
            frame = frame[list(columns)]
        bad = [str(c) for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])
               or pd.api.types.is_bool_dtype(frame[c])]
        if bad:
            raise TypeError(f"non-numeric column(s): {', '.join(bad)}; choose sensor columns "
                            f"with columns=[...]")
        frame = frame.copy()
        frame.columns = [str(c) for c in frame.columns]
        return frame, index
    if isinstance(X, (list, tuple)) and X and isinstance(X[0], (pd.DataFrame, np.ndarray)):
        raise TypeError("a list of series is only accepted by fit (as normal segments)")
    try:
        arr = np.asarray(X)
    except (ValueError, TypeError) as exc:
        raise TypeError(f"cannot read the series: {exc}") from None
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number) or arr.dtype == bool:
        raise TypeError(f"a series array must be numeric, got dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"a series array must have 2 dimensions (T, F), got shape {arr.shape}")
    names = [str(c) for c in columns] if columns is not None else [f"x{i}" for i in range(arr.shape[1])]
    if columns is not None and len(names) != arr.shape[1]:
        raise ValueError(f"{len(names)} column names for an array with {arr.shape[1]} columns")
    return pd.DataFrame(arr.astype(np.float64), columns=names), None


def fill_missing(frame: pd.DataFrame, limit: int) -> tuple[pd.DataFrame, int]:
    """Linear interpolation over gaps of at most ``limit`` steps; returns the frame and the
    number of values filled. A longer gap raises ``ValueError``."""
    n_missing = int(frame.isna().sum().sum())
    if n_missing == 0:
        return frame, 0
    filled = frame.interpolate(method="linear", limit=limit, limit_direction="both", limit_area=None)
    left = filled.isna().sum()
    if int(left.sum()):
        cols = ", ".join(f"{c} ({int(n)})" for c, n in left.items() if n)
        raise ValueError(f"gaps longer than fill_limit={limit} steps remain after interpolation "
                         f"in column(s) {cols}; clean the data or raise fill_limit")
    return filled, n_missing


def prepare(X, columns: list[str] | None = None, fill_limit: int = 5) -> Series:
    """Check a series and fill its short gaps."""
    frame, index = to_frame(X, columns)
    if frame.shape[1] == 0:
        raise ValueError("the series has no sensor columns")
    if len(frame) == 0:
        raise ValueError("the series is empty")
    frame = frame.replace([np.inf, -np.inf], np.nan)
    frame, n_filled = fill_missing(frame, fill_limit)
    return Series(frame.to_numpy(np.float32), list(frame.columns), index, n_filled)


def fit_scaler(values: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """``(center, scale)`` so that ``(x - center) / scale`` is standardised (``standard``),
    in 0..1 (``minmax``) or unchanged (``none``). Constant columns get scale 1."""
    if kind not in SCALERS:
        raise ValueError(f"unknown scaler {kind!r}; choose one of {', '.join(SCALERS)}")
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[1]
    if kind == "standard":
        center, scale = values.mean(0), values.std(0)
    elif kind == "minmax":
        center, scale = values.min(0), values.max(0) - values.min(0)
    else:
        center, scale = np.zeros(n), np.ones(n)
    scale = np.where(scale > 1e-12, scale, 1.0)
    return center.astype(np.float32), scale.astype(np.float32)


#: scaled values are clipped to +-this many scale units: a reading far outside anything seen
#: (up to float's maximum) stays a huge, finite anomaly instead of overflowing to inf/NaN
SCALED_LIMIT = 1e4


def apply_scaler(values: np.ndarray, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``(values - center) / scale`` as float32, clipped to ``+-SCALED_LIMIT``."""
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = (np.asarray(values, dtype=np.float64) - center) / scale
    return np.clip(scaled, -SCALED_LIMIT, SCALED_LIMIT).astype(np.float32)


#: a sensor is slow when its step-to-step changes are this small against its spread
SLOW_RATIO = 0.5


def smoothness(values: np.ndarray) -> np.ndarray:
    """Per sensor: the spread of its step-to-step changes against the spread of its
    values, ``std(diff(x)) / (sqrt(2) * std(x))``. Noise without memory gives about 1; a
    signal that drifts slowly (a temperature) gives near 0. A constant sensor gives 1."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or len(values) < 3:
        raise ValueError(f"need a series (T, F) of at least 3 rows, got shape {values.shape}")
    spread = values.std(0)
    steps = np.diff(values, axis=0).std(0) / np.sqrt(2.0)
    return np.where(spread > 1e-12, steps / np.where(spread > 1e-12, spread, 1.0), 1.0)


def slow_sensors(values: np.ndarray, ratio: float = SLOW_RATIO) -> np.ndarray:
    """Boolean mask of the sensors whose ``smoothness`` is below ``ratio``."""
    return smoothness(values) < float(ratio)
