"""Small deterministic detectors with the tabular and series contracts, for scoring tests
that need no training: each score is a fixed function of a row, or of the windows around a
time step."""

import numpy as np
import pandas as pd
import torch
from numpy.lib.stride_tricks import sliding_window_view

from reconad import BaseDetector


def _matrix(X) -> np.ndarray:
    X = np.ascontiguousarray(np.asarray(X, dtype=np.float64))
    if X.ndim != 2 or len(X) == 0:
        raise ValueError(f"expected a non-empty (n, features) array, got shape {X.shape}")
    return X


class RowDetector(BaseDetector):
    """Tabular contract: distance of each row from the training mean."""

    kind = "table"

    def __init__(self, threshold_param: float | None = None):
        self.threshold_param = threshold_param

    def fit(self, X, y=None):
        if isinstance(X, pd.DataFrame):
            self.feature_names_in_ = [str(c) for c in X.columns]
        self.mean_ = _matrix(X).mean(0)
        self._set_threshold_from(self.decision_function(X))
        return self

    def decision_function(self, X):
        return np.sqrt(np.square(_matrix(X) - self.mean_).sum(1))

    def _fitted_state(self):
        return {"feature_names_in_": getattr(self, "feature_names_in_", None)}, \
            {"state.mean_": torch.from_numpy(self.mean_)}

    def _restore_state(self, fitted, tensors):
        if fitted["feature_names_in_"] is not None:
            self.feature_names_in_ = fitted["feature_names_in_"]
        self.mean_ = tensors["state.mean_"].numpy()


class WindowDetector(RowDetector):
    """Series contract: windows of ``window`` steps every ``stride`` steps (plus one ending
    at the last step); a window's score is the RMS distance of its steps from the training
    mean; a step's score is the mean over the windows that cover it."""

    kind = "series"

    def __init__(self, window: int = 8, stride: int = 1, threshold_param: float | None = None):
        self.window = window
        self.stride = stride
        self.threshold_param = threshold_param

    def decision_function(self, X):
        X = _matrix(X)
        T, w = len(X), self.window
        if T < w:
            raise ValueError(f"series of {T} steps is shorter than the window of {w}")
        starts = np.arange(0, T - w + 1, self.stride)
        if starts[-1] != T - w:
            starts = np.r_[starts, T - w]
        per_step = np.square(X - self.mean_).sum(1)
        win = np.sqrt(sliding_window_view(per_step, w)[starts].mean(1))
        covered = (starts[:, None] + np.arange(w)).ravel()
        total = np.zeros(T)
        np.add.at(total, covered, np.repeat(win, w))
        count = np.bincount(covered, minlength=T)
        return total / count
