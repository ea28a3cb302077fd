"""``BaseDetector``: the PyOD-style contract shared by every detector.

A subclass writes ``fit`` (which ends by calling ``_set_threshold_from``),
``decision_function``, and the two persistence hooks ``_fitted_state`` and
``_restore_state``. Thresholds, labels, calibration, save and load live here.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from reconad import persistence
from reconad.thresholds import rules as thresholds

_DETECTORS: dict[str, type["BaseDetector"]] = {}


class BaseDetector(BaseEstimator):
    """Common base of reconad detectors (a scikit-learn estimator).

    Fitted attributes shared by all detectors: ``threshold_`` (a score above it is an
    anomaly), ``decision_scores_`` (scores of the held-out normal data the threshold was
    set from), ``threshold_method_``.
    """

    _estimator_type = "outlier_detector"
    kind: str  # the kind of data: "image", "series" or "table" (the catalogue's kinds)
    #: values of parameters that models saved by earlier versions lack, which reproduce how
    #: those models scored (a newer default may differ)
    PARAMS_BEFORE: dict = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _DETECTORS[cls.__name__] = cls

    # --- to be written by subclasses -------------------------------------------------
    def fit(self, X, y=None):  # pragma: no cover - abstract
        raise NotImplementedError

    def decision_function(self, X):  # pragma: no cover - abstract
        raise NotImplementedError

    def _fitted_state(self) -> tuple[dict, dict[str, torch.Tensor]]:  # pragma: no cover
        """JSON-able fitted settings and the tensors to save."""
        raise NotImplementedError

    def _restore_state(self, fitted: dict, tensors: dict[str, torch.Tensor]) -> None:  # pragma: no cover
        raise NotImplementedError

    # --- shared -----------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "threshold_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit() first")

    def _set_threshold_from(self, scores: np.ndarray) -> None:
        """Default threshold from held-out normal scores, by ``threshold_method``."""
        method = getattr(self, "threshold_method", "percentile")
        if method in ("f1", "youden"):
            raise ValueError(f"threshold_method {method!r} needs labels: fit, then call "
                             f"calibrate(X, y, method={method!r})")
        self.decision_scores_ = np.asarray(scores, dtype=np.float64)
        self.threshold_ = thresholds.compute(method, self.decision_scores_,
                                             param=getattr(self, "threshold_param", None))
        self.threshold_method_ = method

    def predict(self, X) -> np.ndarray:
        """0 for normal, 1 for anomaly: whether the score exceeds ``threshold_``."""
        self._check_fitted()
        return (self.decision_function(X) > self.threshold_).astype(int)

    def fit_predict(self, X, y=None) -> np.ndarray:
        """Fit on ``X`` (normal data) and return its labels."""
        return self.fit(X).predict(X)

    def calibrate(self, X, y=None, method: str = "percentile", param: float | None = None):
        """Re-derive ``threshold_`` from the scores of ``X``.

        ``percentile`` (q, default 95), ``mean_std`` (k, default 3) and ``fpr`` (target
        false-positive rate, default 0.05) use the normal samples (all of ``X``, or those
        with ``y == 0``); ``f1`` (best F1) and ``youden`` (best ROC point) need labels.
        """
        self._check_fitted()
        if method not in thresholds.METHODS:
            raise ValueError(f"unknown threshold method {method!r}; choose one of "
                             f"{', '.join(thresholds.METHODS)}")
        if method in ("f1", "youden") and y is None:
            raise ValueError(f"threshold method {method!r} needs labels y")
        scores = self.decision_function(X)
        self.threshold_ = thresholds.compute(method, scores, y=y, param=param)
        self.threshold_method_ = method
        return self

    def save(self, path: str | os.PathLike) -> Path:
        """Save to a folder (``config.json`` + ``weights.safetensors``); returns the path."""
        self._check_fitted()
        fitted, tensors = self._fitted_state()
        fitted = {
            **fitted,
            "threshold_": float(self.threshold_),
            "threshold_method_": self.threshold_method_,
        }
        tensors = {**tensors, "state.decision_scores_": torch.as_tensor(self.decision_scores_)}
        config = {"detector": type(self).__name__, "params": self.get_params(deep=False), "fitted": fitted}
        return persistence.save_folder(path, config, tensors)


def load(path: str | os.PathLike) -> BaseDetector:
    """Load a detector saved with ``save``. Raises ``ValueError`` for a missing, damaged,
    tampered or unknown model folder."""
    config, tensors = persistence.load_folder(path)
    name = config.get("detector")
    if name not in _DETECTORS:
        raise persistence.ModelFileError(f"unknown detector {name!r} in {path}")
    cls = _DETECTORS[name]
    try:
        det = cls(**{**cls.PARAMS_BEFORE, **config.get("params", {})})
        fitted = config["fitted"]
        det.threshold_ = float(fitted["threshold_"])
        det.threshold_method_ = fitted["threshold_method_"]
        det.decision_scores_ = tensors.pop("state.decision_scores_").numpy().astype(np.float64)
        det._restore_state(fitted, tensors)
        check = getattr(det, "_check_settings", None)
        if check is not None:
            check()
    except (KeyError, TypeError, RuntimeError, ValueError, IndexError, AttributeError, OverflowError) as exc:
        raise persistence.ModelFileError(f"model folder {path} is inconsistent: {exc}") from None
    return det
