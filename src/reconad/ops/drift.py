"""Drift of normal data: a running comparison of recent inputs (and scores) against the
training reference, reported as its own signal, apart from anomalies.

Per feature, the last ``window`` rows are compared with the reference by

- ``"mean_shift"`` (the default, for sensor series): how far the window's mean lies from
  the reference mean, in standard deviations of the means of reference windows of the same
  length (the batch-means method). Windows of the reference itself give the spread, so
  the slow wandering of a normal signal (a tank warming up over hours) is part of "normal"
  and neighbouring rows being alike does not inflate the statistic (default ``threshold``
  4). It sees shifts of level, not changes of spread alone;
- ``"psi"``: the population stability index over ``n_bins`` quantile bins of the
  reference, ``sum((p - q) * ln(p / q))``. Rules of thumb: below 0.1 stable, 0.1-0.25 some
  shift, above 0.25 a significant shift (the default ``threshold``);
- ``"ks"``: the two-sample Kolmogorov-Smirnov statistic (``scipy.stats.ks_2samp``), the
  largest gap between the two distribution functions (``threshold`` default 0.3). Its
  p-value is kept for information only: rows of a sensor series are not independent, so
  the p-value of a long window is nearly always tiny; the size of the gap is what counts.

PSI and KS suit rows that are independent draws (parts, batches, images); on sensor
series sampled faster than they change, a short window covers a narrow slice of the
reference and both report drift on normal data (see ``docs/skab_drift.md``).

A drift signal is raised when at least one feature (or the score, when scores are given)
is over the threshold in ``patience`` consecutive checks. It names the features that moved
most. A drifted *input* means "normal" has changed (new material, a recalibrated sensor,
the season): the detector's scores may no longer mean what they did, and retraining on
recent normal data is the usual answer.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> ref = rng.normal(size=(2000, 3))
>>> mon = DriftMonitor(ref, feature_names=["a", "b", "c"], window=200, method="psi")
>>> mon.update(rng.normal(size=(200, 3))) is None
True
>>> moved = rng.normal(size=(200, 3)) + [0, 0, 1.5]
>>> mon.update(moved).top_features
['c']
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import stats

METHODS = ("mean_shift", "psi", "ks")
DEFAULT_THRESHOLDS = {"mean_shift": 4.0, "psi": 0.25, "ks": 0.3}
_EPS = 1e-4


def _as_2d(X, what: str, n_features: int | None = None) -> np.ndarray:
    try:
        X = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{what} must be numeric") from None
    if X.ndim == 1:
        X = X[:, None] if n_features in (None, 1) else X[None, :]
    if X.ndim != 2:
        raise ValueError(f"{what} must be 2-D (rows, features), got shape {X.shape}")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"{what} has {X.shape[1]} features, the reference has {n_features}")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{what} contains NaN or infinite values")
    return X


def quantile_edges(reference: np.ndarray, n_bins: int) -> list[np.ndarray]:
    """Inner bin edges per column: the reference's quantiles, repeated values merged."""
    qs = np.linspace(0, 1, n_bins + 1)[1:-1]
    inner = np.quantile(reference, qs, axis=0)       # (n_bins - 1, d)
    return [np.unique(inner[:, j]) for j in range(reference.shape[1])]


def _proportions(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    idx = np.searchsorted(edges, x, side="right")
    p = np.bincount(idx, minlength=edges.size + 1) / max(x.size, 1)
    return np.maximum(p, _EPS)


def psi(reference, recent, n_bins: int = 10, edges: list[np.ndarray] | None = None) -> np.ndarray:
    """Population stability index per column of ``recent`` against ``reference``."""
    reference = _as_2d(reference, "reference")
    recent = _as_2d(recent, "recent data", reference.shape[1])
    edges = edges if edges is not None else quantile_edges(reference, n_bins)
    out = np.empty(reference.shape[1])
    for j, e in enumerate(edges):
        p, q = _proportions(recent[:, j], e), _proportions(reference[:, j], e)
        out[j] = float(np.sum((p - q) * np.log(p / q)))
    return out


def ks(reference, recent) -> tuple[np.ndarray, np.ndarray]:
    """Two-sample KS statistic and p-value per column."""
    reference = _as_2d(reference, "reference")
    recent = _as_2d(recent, "recent data", reference.shape[1])
    res = stats.ks_2samp(reference, recent, axis=0)
    return np.atleast_1d(res.statistic).astype(float), np.atleast_1d(res.pvalue).astype(float)


def block_mean_spread(reference, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Per column: the reference mean, and the standard deviation of the means of reference
    windows of ``window`` rows (stride ``window // 2``), at least the i.i.d. standard error."""
    reference = _as_2d(reference, "reference")
    n = reference.shape[0]
    if n < 2 * window:
        raise ValueError(f"mean_shift needs a reference of at least 2 x window = {2 * window} rows, "
                         f"got {n}; use a shorter window or more reference data")
    step = max(window // 2, 1)
    csum = np.vstack([np.zeros((1, reference.shape[1])), np.cumsum(reference, axis=0)])
    starts = np.arange(0, n - window + 1, step)
    means = (csum[starts + window] - csum[starts]) / window
    spread = np.maximum(means.std(axis=0, ddof=1), reference.std(axis=0) / np.sqrt(window))
    return reference.mean(axis=0), np.maximum(spread, 1e-12)


def mean_shift(reference_stats: tuple[np.ndarray, np.ndarray], recent) -> np.ndarray:
    """|mean of ``recent`` - reference mean| / spread of reference window means, per column."""
    mu, spread = reference_stats
    recent = _as_2d(recent, "recent data", mu.size)
    return np.abs(recent.mean(axis=0) - mu) / spread


@dataclass
class DriftSignal:
    """Drift found at one check: the statistic per feature, the features that moved most."""

    method: str
    threshold: float
    n_seen: int
    window: int
    statistics: dict[str, float]
    top_features: list[str]
    score_statistic: float | None = None
    model_version: str | None = None
    extra: dict = field(default_factory=dict)

    def to_alert(self) -> dict:
        """The signal as an alert for :class:`reconad.ops.alerts.AlertDispatcher` (kind ``drift``)."""
        moved = ", ".join(f"{f} ({self.statistics[f]:.3g})" for f in self.top_features)
        msg = f"drift of normal data ({self.method} > {self.threshold:g} over the last {self.window} rows): {moved}"
        if self.score_statistic is not None:
            msg += f"; scores {self.method} {self.score_statistic:.3g}"
        alert = {"kind": "drift", "features": list(self.top_features), "message": msg,
                 "method": self.method, "threshold": self.threshold, "statistics": self.statistics,
                 "score_statistic": self.score_statistic, "rows_seen": self.n_seen}
        if self.model_version is not None:
            alert["model_version"] = self.model_version
        return alert

    def to_dict(self) -> dict:
        return asdict(self)


class DriftMonitor:
    """Running comparison of recent rows (and scores) against the training reference.

    Parameters
    ----------
    reference_X : array (n, d)
        Normal data the detector was trained on (or a sample of it).
    reference_scores : array (n,) or None
        The detector's scores of normal data (e.g. ``decision_scores_``); when given,
        ``update`` also compares recent scores, reported as ``score_statistic``.
    feature_names : list of str or None
        Names for the columns (default ``x0, x1, ...``).
    method : {"mean_shift", "psi", "ks"}, default "mean_shift"
    threshold : float or None
        Drift when a statistic exceeds it; None: 4 for mean_shift, 0.25 for PSI, 0.3 for KS.
    window : int, default 300
        Number of most recent rows compared.
    check_every : int or None
        Compare every this many new rows (default: ``window // 2``).
    patience : int, default 1
        Checks in a row over the threshold before a signal.
    n_bins : int, default 10
        PSI bins (quantiles of the reference).
    top : int, default 3
        Features named in a signal (those over the threshold, largest first, at most ``top``).
    model_version : str or None
        Recorded in every signal.
    """

    def __init__(self, reference_X, reference_scores=None, feature_names=None, method: str = "mean_shift",
                 threshold: float | None = None, window: int = 300, check_every: int | None = None,
                 patience: int = 1, n_bins: int = 10, top: int = 3, model_version: str | None = None):
        if method not in METHODS:
            raise ValueError(f"unknown drift method {method!r}; choose one of {', '.join(METHODS)}")
        ref = _as_2d(reference_X, "reference data")
        if ref.shape[0] < 2 * n_bins:
            raise ValueError(f"reference data has {ref.shape[0]} rows; at least {2 * n_bins} are needed")
        if int(window) < 10:
            raise ValueError(f"window must be at least 10 rows, got {window}")
        names = list(feature_names) if feature_names is not None else [f"x{j}" for j in range(ref.shape[1])]
        if len(names) != ref.shape[1]:
            raise ValueError(f"{len(names)} feature names for {ref.shape[1]} features")
        self.reference_ = ref
        self.feature_names = [str(n) for n in names]
        self.method = method
        self.threshold = float(threshold) if threshold is not None else DEFAULT_THRESHOLDS[method]
        self.window = int(window)
        self.check_every = int(check_every) if check_every else max(self.window // 2, 1)
        self.patience = int(patience)
        self.n_bins = int(n_bins)
        self.top = int(top)
        self.model_version = model_version
        self.reference_scores_ = None
        if reference_scores is not None:
            self.reference_scores_ = _as_2d(np.ravel(reference_scores), "reference scores", 1)
        prepare = ((lambda r: block_mean_spread(r, self.window)) if method == "mean_shift"
                   else (lambda r: quantile_edges(r, self.n_bins)))
        self._edges = prepare(ref)
        self._score_edges = prepare(self.reference_scores_) if self.reference_scores_ is not None else None
        self._X = np.empty((0, ref.shape[1]))
        self._s = np.empty((0, 1))
        self.n_seen_ = 0
        self._since_check = 0
        self._over = 0
        self.last_statistics_: dict[str, float] | None = None
        self.last_score_statistic_: float | None = None
        self.last_pvalues_: dict[str, float] | None = None

    def _compare(self, ref, recent, edges) -> np.ndarray:
        if self.method == "mean_shift":
            return mean_shift(edges, recent)
        if self.method == "psi":
            return psi(ref, recent, edges=edges)
        stat, p = ks(ref, recent)
        self._p = p
        return stat

    def check(self) -> DriftSignal | None:
        """Compare the current window with the reference now (needs a full window)."""
        if self._X.shape[0] < self.window:
            return None
        self._since_check = 0
        stat = self._compare(self.reference_, self._X, self._edges)
        self.last_statistics_ = {n: float(v) for n, v in zip(self.feature_names, stat)}
        if self.method == "ks":
            self.last_pvalues_ = {n: float(v) for n, v in zip(self.feature_names, self._p)}
        score_stat = None
        if self.reference_scores_ is not None and self._s.shape[0] >= self.window:
            score_stat = float(self._compare(self.reference_scores_, self._s, self._score_edges)[0])
        self.last_score_statistic_ = score_stat
        drifted = stat > self.threshold
        score_drifted = score_stat is not None and score_stat > self.threshold
        self._over = self._over + 1 if (drifted.any() or score_drifted) else 0
        if self._over < self.patience:
            return None
        order = np.argsort(-stat, kind="stable")
        top = [self.feature_names[j] for j in order[: self.top] if drifted[j]]
        ranked = {self.feature_names[j]: float(stat[j]) for j in order}
        return DriftSignal(method=self.method, threshold=self.threshold, n_seen=self.n_seen_,
                           window=self.window, statistics=ranked, top_features=top,
                           score_statistic=score_stat, model_version=self.model_version)

    def update(self, X_batch, scores_batch=None) -> DriftSignal | None:
        """Add new rows (and their scores); compare when ``check_every`` rows have come in.
        Returns a :class:`DriftSignal` when drift is found, else None."""
        X = _as_2d(X_batch, "new rows", self.reference_.shape[1])
        if scores_batch is not None:
            if self.reference_scores_ is None:
                raise ValueError("scores given, but the monitor has no reference scores")
            s = _as_2d(np.ravel(scores_batch), "new scores", 1)
            if s.shape[0] != X.shape[0]:
                raise ValueError(f"{s.shape[0]} scores for {X.shape[0]} rows")
            self._s = np.concatenate([self._s, s])[-self.window:]
        self._X = np.concatenate([self._X, X])[-self.window:]
        self.n_seen_ += X.shape[0]
        self._since_check += X.shape[0]
        if self._since_check >= self.check_every:
            return self.check()
        return None
