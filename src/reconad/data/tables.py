"""Tables in, scaled float32 matrices out.

A table is a pandas ``DataFrame``, a numeric array ``(N, F)`` or a CSV file. The
:class:`TableEncoder` learns everything it needs from the training table only:

* **columns**: the chosen ones (``columns=[...]``) or all of them. At scoring, columns
  are matched by name, so a table whose columns come in another order is re-ordered to
  the training order; a missing training column is an error, extra columns are ignored.
  Arrays carry no names: their columns must come in the training order (only their
  number can be checked).
* **numeric columns** are centred on the training median and divided by the
  interquartile range over 1.349 (``scaler="robust"``: the standard deviation for a
  normal column, but not stretched by a few extreme rows; a column whose middle half is
  one value falls back to its standard deviation), standardised with the training mean
  and standard deviation (``scaler="standard"``) or mapped to 0..1 with the training
  minimum and maximum (``scaler="minmax"``). A constant column gets scale 1.
* **categorical columns** (``object``, ``string`` or ``category`` dtype) are one-hot
  encoded with the categories seen in training; a category never seen in training gives
  all zeros.
* **missing values** (``missing="impute"``, default): a missing number is replaced by
  the training median of its column (before scaling), a missing category gives all
  zeros in its one-hot block. ``missing="error"`` rejects any missing value instead.
  Infinite numbers are always an error.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

SCALERS = ("robust", "standard", "minmax")
IQR_TO_SD = 1.349  # interquartile range of a standard normal distribution
MISSING = ("impute", "error")


def read_table(path: str | os.PathLike, encoding: str = "utf-8", sep: str | None = None) -> pd.DataFrame:
    """Read a CSV file into a DataFrame. ``sep=None`` detects the delimiter (``,``, ``;``,
    tab, ...); ``encoding`` is any Python codec, e.g. ``"shift_jis"`` or ``"cp932"`` for
    Japanese spreadsheets."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"table file not found: {path}")
    if path.is_dir():
        raise ValueError(f"expected a CSV file, got a folder: {path}")
    try:
        frame = pd.read_csv(path, encoding=encoding, sep=sep, engine="python" if sep is None else "c")
    except UnicodeDecodeError as exc:
        raise ValueError(f"cannot decode {path} as {encoding!r} ({exc.reason}); pass encoding=, "
                         "e.g. 'shift_jis' or 'cp932'") from None
    except LookupError:
        raise ValueError(f"unknown text encoding {encoding!r}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeError, OSError) as exc:
        raise ValueError(f"cannot read table {path}: {exc}") from None
    return frame


def as_frame(X, encoding: str = "utf-8", sep: str | None = None) -> tuple[pd.DataFrame, bool]:
    """``X`` as a DataFrame and whether it had column names (DataFrame or CSV) or not (array)."""
    if isinstance(X, (str, os.PathLike)):
        return read_table(X, encoding=encoding, sep=sep), True
    if isinstance(X, pd.DataFrame):
        return X, True
    if isinstance(X, pd.Series):
        return X.to_frame(), True
    try:
        arr = np.asarray(X)
    except (ValueError, TypeError) as exc:
        raise TypeError(f"cannot read the table: {exc}") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"an array table must be numeric, got dtype {arr.dtype}; use a DataFrame "
                        "for categorical columns")
    if arr.ndim == 1:
        raise ValueError(f"expected a 2-D table (N samples, F features), got shape {arr.shape}; "
                         "for one feature use X.reshape(-1, 1)")
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D table (N samples, F features), got shape {arr.shape}")
    return pd.DataFrame(arr, columns=[f"x{i}" for i in range(arr.shape[1])]), False


def _is_categorical(series: pd.Series) -> bool:
    return not (pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series))


class TableEncoder:
    """Column selection, imputation, scaling and one-hot encoding learnt from training data.

    Its state is plain JSON (``to_dict`` / ``from_dict``), saved in a model's config.
    """

    def __init__(self, columns=None, scaler: str = "robust", missing: str = "impute"):
        if scaler not in SCALERS:
            raise ValueError(f"unknown scaler {scaler!r}; choose one of {', '.join(SCALERS)}")
        if missing not in MISSING:
            raise ValueError(f"unknown missing-value rule {missing!r}; choose one of {', '.join(MISSING)}")
        self.columns = None if columns is None else [str(c) for c in columns]
        self.scaler = scaler
        self.missing = missing

    # --- fit --------------------------------------------------------------------------
    def fit(self, frame: pd.DataFrame, named: bool = True) -> "TableEncoder":
        frame = frame.copy()
        frame.columns = [str(c) for c in frame.columns]
        if frame.columns.duplicated().any():
            dup = sorted(set(frame.columns[frame.columns.duplicated()]))
            raise ValueError(f"duplicate column names: {', '.join(dup)}")
        cols = self.columns if self.columns is not None else list(frame.columns)
        if not cols:
            raise ValueError("the table has no columns")
        missing_cols = [c for c in cols if c not in frame.columns]
        if missing_cols:
            raise ValueError(f"columns not in the table: {', '.join(missing_cols)}")
        if len(frame) == 0:
            raise ValueError("the table is empty")
        frame = frame[cols]
        self.named_ = named
        self.columns_ = cols
        self.numeric_ = [c for c in cols if not _is_categorical(frame[c])]
        self.categorical_ = [c for c in cols if _is_categorical(frame[c])]
        self._check_values(frame)
        num = frame[self.numeric_].to_numpy(dtype=np.float64) if self.numeric_ else np.zeros((len(frame), 0))
        missing = np.isnan(num)
        gaps = bool(missing.any())  # without gaps no copy with them filled is needed (large tables)
        if gaps and missing.all(axis=0).any():
            empty = [c for c, e in zip(self.numeric_, missing.all(axis=0)) if e]
            raise ValueError(f"columns with no values at all: {', '.join(empty)}")
        with np.errstate(all="ignore"):
            if not num.shape[1]:
                self.median_ = np.zeros(0)
            else:
                self.median_ = np.nanmedian(num, axis=0) if gaps else np.median(num, axis=0)
        filled = np.where(missing, self.median_, num) if gaps else num
        del missing
        if self.scaler == "robust":
            self.offset_ = np.median(filled, axis=0) if gaps else self.median_.copy()
            q1, q3 = np.percentile(filled, [25, 75], axis=0) if len(filled) else (self.offset_,) * 2
            iqr = (q3 - q1) / IQR_TO_SD
            scale = np.where(iqr > 1e-12 * np.maximum(1.0, np.abs(self.offset_)), iqr, filled.std(axis=0))
        elif self.scaler == "standard":
            self.offset_ = filled.mean(axis=0)
            scale = filled.std(axis=0)
        else:
            self.offset_ = filled.min(axis=0) if len(filled) else np.zeros(0)
            scale = filled.max(axis=0) - self.offset_ if len(filled) else np.zeros(0)
        self.scale_ = np.where(scale > 1e-12, scale, 1.0)
        self.categories_ = {c: sorted({str(v) for v in frame[c].dropna()}) for c in self.categorical_}
        self.n_features_out_ = len(self.numeric_) + sum(len(v) for v in self.categories_.values())
        return self

    def _check_values(self, frame: pd.DataFrame) -> None:
        if self.numeric_:
            num = frame[self.numeric_].to_numpy(dtype=np.float64)
            if np.isinf(num).any():
                bad = [c for c, b in zip(self.numeric_, np.isinf(num).any(axis=0)) if b]
                raise ValueError(f"infinite values in columns: {', '.join(bad)}")
        if self.missing == "error" and frame.isna().any().any():
            bad = [str(c) for c in frame.columns[frame.isna().any()]]
            raise ValueError(f"missing values (NaN) in columns: {', '.join(bad)}; "
                             "use missing='impute' to fill them")

    # --- transform --------------------------------------------------------------------
    def select(self, frame: pd.DataFrame, named: bool) -> pd.DataFrame:
        """The training columns of ``frame``, in training order, with clear errors."""
        if len(frame) == 0:
            raise ValueError("the table is empty")
        if not named:
            if frame.shape[1] != len(self.columns_):
                raise ValueError(f"the array has {frame.shape[1]} columns but the detector was "
                                 f"trained on {len(self.columns_)} ({', '.join(self.columns_)})")
            frame = frame.copy()
            frame.columns = self.columns_
            return frame
        frame = frame.copy()
        frame.columns = [str(c) for c in frame.columns]
        absent = [c for c in self.columns_ if c not in frame.columns]
        if absent:
            raise ValueError(f"columns missing from the table: {', '.join(absent)} "
                             f"(trained on {', '.join(self.columns_)})")
        return frame[self.columns_]

    def transform(self, frame: pd.DataFrame, named: bool = True) -> np.ndarray:
        """The scaled float32 matrix ``(N, n_features_out_)``."""
        frame = self.select(frame, named)
        self._check_values(frame)
        parts = []
        if self.numeric_:
            try:
                num = frame[self.numeric_].to_numpy(dtype=np.float64)
            except (ValueError, TypeError):
                bad = [c for c in self.numeric_ if _is_categorical(frame[c])]
                raise ValueError(f"columns {', '.join(bad)} were numeric in training but hold "
                                 "text now") from None
            if not num.flags.writeable or np.shares_memory(num, frame.values):
                num = num.copy()
            missing = np.isnan(num)  # imputed, offset and scaled in place: a large table is not copied again
            if missing.any():
                num[missing] = np.broadcast_to(self.median_, num.shape)[missing]
            num -= self.offset_
            num /= self.scale_
            parts.append(num)
        for c in self.categorical_:
            values = frame[c].astype(object).where(frame[c].notna(), None).to_numpy()
            cats = self.categories_[c]
            index = {v: i for i, v in enumerate(cats)}
            codes = np.array([index.get(str(v), -1) if v is not None else -1 for v in values])
            block = np.zeros((len(frame), len(cats)))
            hit = codes >= 0
            block[np.nonzero(hit)[0], codes[hit]] = 1.0
            parts.append(block)
        return (parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)).astype(np.float32)

    # --- state ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"columns": self.columns, "scaler": self.scaler, "missing": self.missing,
                "named_": self.named_, "columns_": self.columns_, "numeric_": self.numeric_,
                "categorical_": self.categorical_, "categories_": self.categories_,
                "median_": self.median_.tolist(), "offset_": self.offset_.tolist(),
                "scale_": self.scale_.tolist(), "n_features_out_": self.n_features_out_}

    @classmethod
    def from_dict(cls, state: dict) -> "TableEncoder":
        enc = cls(state["columns"], state["scaler"], state["missing"])
        enc.named_ = state["named_"]
        enc.columns_ = list(state["columns_"])
        enc.numeric_ = list(state["numeric_"])
        enc.categorical_ = list(state["categorical_"])
        enc.categories_ = {k: list(v) for k, v in state["categories_"].items()}
        for name in ("median_", "offset_", "scale_"):
            setattr(enc, name, np.asarray(state[name], dtype=np.float64))
        enc.n_features_out_ = int(state["n_features_out_"])
        return enc
