"""Hyper-parameter search with Optuna over the search space of the detector's model.

The space is the model's catalogue entry's (``reconad.models.catalogue``, per kind of data
and model name): parameter -> ``("int" | "float", low, high, log)`` or ``("categorical",
[choices])``, with the learning rate and batch size for models trained with Adam.
Parameters that are not detector parameters go into ``model_kwargs``.

The objective is

* without labels: the mean reconstruction score (the detector's own score, e.g. the mean
  squared error) of normal validation data (``X_val``, or a held-out part of ``X``: random
  samples, or for a series its last rows) - lower is better;
* with a labelled validation set (``X_val``, ``y_val`` with 1 = anomaly): its ROC-AUC
  (``metric="roc_auc"``) or average precision (``metric="pr_auc"``) - higher is better.

The search stops starting new trials once ``timeout`` seconds have passed (a trial under
way is finished) or after ``n_trials``. Optuna is an optional dependency
(``pip install reconad[tune]``).
"""

from __future__ import annotations

import json
import math
import os
import time

import numpy as np
from sklearn.base import clone
from sklearn.metrics import average_precision_score, roc_auc_score

from reconad._atomic import write_text
from reconad.models.catalogue import SearchSpace, entry

METRICS = ("roc_auc", "pr_auc")


def search_space(detector) -> dict:
    """The distributions searched for ``detector``: its model's catalogue entry's."""
    space = entry(detector.kind, detector.model).search_space
    if space is None:
        raise ValueError(f"{detector.kind} model {detector.model!r} has no hyper-parameters to search")
    return dict(space.distributions)


def configure(detector, params: dict):
    """A clone of ``detector`` with ``params`` set (non-detector ones into ``model_kwargs``)."""
    det = clone(detector)
    own = det.get_params(deep=False)
    direct = {k: v for k, v in params.items() if k in own}
    extra = {k: v for k, v in params.items() if k not in own}
    if extra:
        if "model_kwargs" not in own:
            raise ValueError(f"{type(det).__name__} has no parameters {', '.join(extra)}")
        direct["model_kwargs"] = {**(own.get("model_kwargs") or {}), **extra}
    return det.set_params(**direct)


def _holdout(X, fraction: float, seed: int):
    """Split ``X`` (array, list or DataFrame) into a fitting and a validation part of
    random samples."""
    n = len(X)
    order = np.random.RandomState(seed).permutation(n)
    n_val = min(max(int(round(n * fraction)), 1), n - 1)
    val, fit = order[:n_val], order[n_val:]
    if hasattr(X, "iloc"):
        return X.iloc[fit], X.iloc[val]
    if isinstance(X, np.ndarray):
        return X[fit], X[val]
    return [X[i] for i in fit], [X[i] for i in val]


def _series_holdout(detector, X, fraction: float):
    """Split a series (or a list of segments) in time: the last ``fraction`` of the rows of
    the last segment are the validation series, the rest is fitted on."""
    segments = detector._segments(X)
    last = segments[-1]
    if isinstance(last, (str, os.PathLike)):
        raise TypeError("tuning a series without X_val needs it in memory (a DataFrame or array), not a path")
    n, window = len(last), int(detector.window)
    n_val = max(int(round(n * fraction)), window)
    if n - n_val < window + 1:
        raise ValueError(f"too few rows to hold out a validation part: {n} rows, window {window}; "
                         f"give X_val or a longer series")
    head, tail = (last.iloc[:n - n_val], last.iloc[n - n_val:]) if hasattr(last, "iloc") else \
        (last[:n - n_val], last[n - n_val:])
    fit = [*segments[:-1], head]
    return (fit if len(fit) > 1 else head), tail


def tune(detector, X, X_val=None, y_val=None, *, timeout: float = 60.0, n_trials: int | None = None,
         metric: str = "roc_auc", space: dict | None = None, validation_fraction: float = 0.2,
         out: str | os.PathLike | None = None, seed: int = 0) -> dict:
    """Search hyper-parameters of ``detector`` (an unfitted ``ImageDetector``,
    ``SeriesDetector`` or ``TabularDetector`` with the fixed settings, e.g. ``epochs``) on
    normal data ``X``, over its model's search space in the catalogue.

    Returns a dict with ``best_params`` (as searched), ``detector_params`` (ready for
    ``set_params``), ``best_value``, ``objective``, ``direction``, ``trials`` and timings;
    the same is written atomically as JSON to ``out`` when given. Use
    ``tuning.configure(detector, result["best_params"]).fit(X)`` for the final model.
    """
    try:
        import optuna
    except ImportError:  # pragma: no cover - depends on the installation
        raise ImportError("hyper-parameter search needs optuna: pip install 'reconad[tune]'") from None
    if timeout is not None and timeout <= 0:
        raise ValueError(f"timeout must be positive, got {timeout}")
    if n_trials is not None and n_trials < 1:
        raise ValueError(f"n_trials must be at least 1, got {n_trials}")
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    if y_val is not None and X_val is None:
        raise ValueError("y_val needs X_val")
    space = dict(space if space is not None else search_space(detector))
    suggest = SearchSpace(space)  # checks every entry
    labelled = y_val is not None
    if labelled:
        y_val = np.asarray(y_val).astype(int).ravel()
        if len(np.unique(y_val)) != 2:
            raise ValueError("y_val must hold both normal (0) and anomalous (1) samples")
        fit_data, val_data = X, X_val
    elif X_val is None and detector.kind == "series":
        fit_data, val_data = _series_holdout(detector, X, validation_fraction)
    elif X_val is None:
        fit_data, val_data = _holdout(X, validation_fraction, seed)
    else:
        fit_data, val_data = X, X_val
    scorer = roc_auc_score if metric == "roc_auc" else average_precision_score
    objective_name = f"validation {metric}" if labelled else "mean validation reconstruction score"

    def objective(trial):
        params = suggest(trial)
        det = configure(detector, params).set_params(verbose=0)
        scores = det.fit(fit_data).decision_function(val_data)
        value = float(scorer(y_val, scores)) if labelled else float(np.mean(scores))
        if not math.isfinite(value):
            raise FloatingPointError("the objective is not finite")
        return value

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if labelled else "minimize",
                                sampler=optuna.samplers.TPESampler(seed=seed))
    start = time.perf_counter()
    study.optimize(objective, n_trials=n_trials, timeout=timeout,
                   catch=(FloatingPointError, ValueError, RuntimeError))
    elapsed = time.perf_counter() - start
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        failed = [t.system_attrs.get("fail_reason", "") for t in study.trials]
        raise ValueError(f"no trial finished within the budget ({len(study.trials)} started); "
                           f"give more time or fewer epochs. {failed[:1]}")
    best = study.best_trial
    result = {
        "detector": type(detector).__name__,
        "base_params": _jsonable(detector.get_params(deep=False)),
        "search_space": {k: list(v) if isinstance(v, tuple) else v for k, v in space.items()},
        "objective": objective_name,
        "direction": "maximize" if labelled else "minimize",
        "timeout_s": timeout,
        "n_trials_limit": n_trials,
        "elapsed_s": elapsed,
        "best_params": best.params,
        "detector_params": _jsonable(configure(detector, best.params).get_params(deep=False)),
        "best_value": best.value,
        "best_trial": best.number,
        "trials": [{"number": t.number, "params": t.params, "value": t.value, "state": t.state.name,
                    "duration_s": t.duration.total_seconds() if t.duration else None}
                   for t in study.trials],
    }
    if out is not None:
        write_text(out, json.dumps(result, indent=2))
    return result


def _jsonable(params: dict) -> dict:
    return json.loads(json.dumps(params, default=str))
