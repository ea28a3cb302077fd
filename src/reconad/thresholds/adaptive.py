"""Adaptive thresholds for score streams: re-estimated from recent normal-looking scores,
and held between a lower and an upper bound.

Two rules, chosen explicitly:

- :class:`RollingQuantileThreshold`: the ``q``-quantile of the last ``window``
  normal-looking scores.
- :class:`PotThreshold`: peaks over threshold from extreme value theory (Siffer et al.,
  "Anomaly detection in streams with extreme value theory", KDD 2017): a generalised
  Pareto distribution (``scipy.stats.genpareto``) is fitted to the excesses of the recent
  normal-looking scores over their ``level``-quantile, and the threshold is the score
  exceeded with probability ``risk``.

A score is *normal-looking*, and joins the window, when it is at most
``T + admit_margin * (T - median)`` with ``T`` the current threshold and ``median`` the
window's median: the threshold can follow normal data that moves, while scores far above
it (a fault) never raise it. The bounds stop a slow drift into a fault from raising the
threshold without limit: by default the threshold stays within ``max_change`` (50 %) of
the starting threshold, relative to its size. Every change of the threshold by more than
``log_change`` and every time a bound holds it back is reported to ``log`` and to the
``reconad.thresholds.adaptive`` logger.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> t = RollingQuantileThreshold(rng.normal(1, 0.1, 1000), q=0.99)
>>> round(t.threshold_, 2)
1.22
>>> round(t.update(rng.normal(1.1, 0.1, 500)), 2)    # normal data moved up a little
1.29
"""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np
from scipy import stats

logger = logging.getLogger("reconad.thresholds.adaptive")
METHODS = ("fixed", "rolling_quantile", "pot")


def _check(scores, what="scores") -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64).ravel()
    if not np.all(np.isfinite(s)):
        raise ValueError(f"{what} contain NaN or infinite values")
    return s


class _AdaptiveThreshold:
    method = "adaptive"

    def __init__(self, reference_scores, *, initial: float | None, window: int, lower: float | None,
                 upper: float | None, max_change: float, admit_margin: float, min_samples: int,
                 log_change: float, log: Callable[[str], None] | None, refit_every: int = 1):
        ref = _check(reference_scores, "reference scores")
        if ref.size < 2:
            raise ValueError("adaptive threshold needs at least 2 reference scores")
        if int(window) < 2:
            raise ValueError(f"window must be at least 2 scores, got {window}")
        if max_change < 0 or admit_margin < 0:
            raise ValueError("max_change and admit_margin must be >= 0")
        self.window = int(window)
        self.admit_margin = float(admit_margin)
        self.min_samples = int(min_samples)
        self.log_change = float(log_change)
        self.refit_every = max(int(refit_every), 1)
        self._log = log
        self._since_refit = 0
        self._buf = ref[-self.window:].copy()
        start = float(initial) if initial is not None else self._estimate(self._buf)
        span = max_change * abs(start)
        self.lower = float(lower) if lower is not None else start - span
        self.upper = float(upper) if upper is not None else start + span
        if self.lower > self.upper:
            raise ValueError(f"lower bound {self.lower} is above upper bound {self.upper}")
        self.initial_ = start
        self.threshold_ = float(np.clip(start, self.lower, self.upper))
        self.n_seen_ = 0
        self.n_admitted_ = 0
        self.at_bound_: str | None = None
        self._logged = self.threshold_
        self._emit(f"adaptive threshold: {self.describe()}")

    # -- to be written by subclasses ------------------------------------------------------
    def _estimate(self, window: np.ndarray) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def _params(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------------------
    def _emit(self, line: str) -> None:
        logger.info(line)
        if self._log is not None:
            self._log(line)

    def describe(self) -> dict:
        """The rule and its settings, for logs and the model registry."""
        return {"method": self.method, **self._params(), "window": self.window,
                "lower": self.lower, "upper": self.upper, "admit_margin": self.admit_margin,
                "threshold": self.threshold_}

    def admit_limit(self) -> float:
        """Scores up to this value count as normal-looking and join the window."""
        return self.threshold_ + self.admit_margin * max(self.threshold_ - float(np.median(self._buf)), 0.0)

    def update(self, scores) -> float:
        """Take new scores (one or a batch, in time order); returns the current threshold."""
        s = _check(scores)
        if s.size == 0:
            return self.threshold_
        self.n_seen_ += s.size
        keep = s[s <= self.admit_limit()]
        if keep.size == 0:
            return self.threshold_
        self.n_admitted_ += keep.size
        self._buf = np.concatenate([self._buf, keep])[-self.window:]
        self._since_refit += keep.size
        if self._buf.size < self.min_samples or self._since_refit < self.refit_every:
            return self.threshold_
        self._since_refit = 0
        wanted = self._estimate(self._buf)
        new = float(np.clip(wanted, self.lower, self.upper))
        bound = "upper" if wanted > self.upper else "lower" if wanted < self.lower else None
        if bound and bound != self.at_bound_:
            self._emit(f"adaptive threshold held at its {bound} bound {new:.6g} "
                       f"(recent normal-looking scores ask for {wanted:.6g})")
        elif not bound and self.at_bound_:
            self._emit(f"adaptive threshold back within bounds: {new:.6g}")
        self.at_bound_ = bound
        if abs(new - self._logged) > self.log_change * max(abs(self._logged), 1e-12):
            self._emit(f"adaptive threshold {self._logged:.6g} -> {new:.6g} after {self.n_seen_} scores")
            self._logged = new
        self.threshold_ = new
        return new

    def run(self, scores, step: int = 1) -> np.ndarray:
        """Causal thresholds for a whole score series: element ``i`` is the threshold in force
        when score ``i`` arrived (updated every ``step`` scores)."""
        s = _check(scores)
        out = np.empty_like(s)
        for i in range(0, s.size, step):
            out[i:i + step] = self.threshold_
            self.update(s[i:i + step])
        return out


class RollingQuantileThreshold(_AdaptiveThreshold):
    """The ``q``-quantile of the last ``window`` normal-looking scores, within bounds.

    Parameters
    ----------
    reference_scores : array
        Scores of normal data (e.g. a detector's ``decision_scores_``); they fill the window.
    q : float, default 0.99
    window : int, default 2000
    initial : float or None
        The starting threshold (e.g. the detector's ``threshold_``); None: the ``q``-quantile
        of the reference scores. The default bounds are taken around it.
    lower, upper : float or None
        Bounds; None: ``initial`` -/+ ``max_change * |initial|``.
    max_change : float, default 0.5
    admit_margin : float, default 1.0
    min_samples : int, default 50
        No re-estimate before the window holds this many scores.
    log_change : float, default 0.05
        A change of more than this fraction since the last logged value is logged.
    log : callable or None
        Receives one line of text per logged event.
    """

    method = "rolling_quantile"

    def __init__(self, reference_scores, q: float = 0.99, window: int = 2000, initial: float | None = None,
                 lower: float | None = None, upper: float | None = None, max_change: float = 0.5,
                 admit_margin: float = 1.0, min_samples: int = 50, log_change: float = 0.05,
                 log: Callable[[str], None] | None = None):
        if not 0 < q < 1:
            raise ValueError(f"q must be in (0, 1), got {q}")
        self.q = float(q)
        super().__init__(reference_scores, initial=initial, window=window, lower=lower, upper=upper,
                         max_change=max_change, admit_margin=admit_margin, min_samples=min_samples,
                         log_change=log_change, log=log)

    def _params(self) -> dict:
        return {"q": self.q}

    def _estimate(self, window: np.ndarray) -> float:
        return float(np.quantile(window, self.q))


class PotThreshold(_AdaptiveThreshold):
    """Peaks over threshold: a generalised Pareto tail fitted to the recent normal-looking
    scores; the threshold is exceeded by a normal score with probability ``risk``.

    Parameters
    ----------
    reference_scores : array
        Scores of normal data; they fill the window (at least a few hundred are advised).
    risk : float, default 1e-3
        Wanted probability that a normal score exceeds the threshold.
    level : float, default 0.95
        The quantile of the window above which scores are peaks.
    refit_every : int, default 100
        Refit the tail after this many new normal-looking scores (a fit takes milliseconds).
    window, initial, lower, upper, max_change, admit_margin, min_samples, log_change, log
        As for :class:`RollingQuantileThreshold`. ``initial`` None: the PoT threshold of
        the reference scores.

    With fewer than 10 peaks the tail is not fitted and the empirical ``1 - risk``
    quantile of the window is used.
    """

    method = "pot"

    def __init__(self, reference_scores, risk: float = 1e-3, level: float = 0.95, window: int = 5000,
                 initial: float | None = None, lower: float | None = None, upper: float | None = None,
                 max_change: float = 0.5, admit_margin: float = 1.0, min_samples: int = 200,
                 log_change: float = 0.05, log: Callable[[str], None] | None = None,
                 refit_every: int = 100):
        if not 0 < risk < 1:
            raise ValueError(f"risk must be in (0, 1), got {risk}")
        if not 0 < level < 1:
            raise ValueError(f"level must be in (0, 1), got {level}")
        self.risk = float(risk)
        self.level = float(level)
        self.shape_ = self.scale_ = float("nan")
        super().__init__(reference_scores, initial=initial, window=window, lower=lower, upper=upper,
                         max_change=max_change, admit_margin=admit_margin, min_samples=min_samples,
                         log_change=log_change, log=log, refit_every=refit_every)

    def _params(self) -> dict:
        return {"risk": self.risk, "level": self.level, "gpd_shape": self.shape_, "gpd_scale": self.scale_}

    def _estimate(self, window: np.ndarray) -> float:
        t = float(np.quantile(window, self.level))
        peaks = window[window > t] - t
        if peaks.size < 10:
            return float(np.quantile(window, 1 - self.risk))
        shape, _, scale = stats.genpareto.fit(peaks, floc=0.0)
        self.shape_, self.scale_ = float(shape), float(scale)
        ratio = self.risk * window.size / peaks.size       # P(score > z | score > t) wanted
        if abs(shape) < 1e-9:
            return t - scale * np.log(ratio)
        return float(t + scale / shape * (ratio ** (-shape) - 1.0))


def parse_rule(text: str | None):
    """A threshold rule given as text: a method name, or JSON such as
    ``{"method": "pot", "risk": 1e-3}``; None stays None."""
    import json

    if text is None or not text.strip():
        return None
    text = text.strip()
    if not text.startswith("{"):
        return text
    try:
        spec = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"threshold rule {text!r} is not valid JSON ({exc})") from None
    if not isinstance(spec, dict):
        raise ValueError(f"threshold rule must be a method name or a JSON object, got {text!r}")
    return spec


def make_threshold(spec: dict | str | None, reference_scores, initial: float,
                   log: Callable[[str], None] | None = None):
    """Build the threshold rule named by ``spec`` (``{"method": "rolling_quantile", "q": 0.99,
    ...}``, a method name, or None for a fixed threshold). Returns an object with
    ``update(scores) -> float`` and ``describe()``, for the monitor and the service."""
    if spec is None or spec == "fixed":
        spec = {"method": "fixed"}
    if isinstance(spec, str):
        spec = {"method": spec}
    spec = dict(spec)
    method = spec.pop("method", None)
    if method not in METHODS:
        raise ValueError(f"unknown threshold method {method!r}; choose one of {', '.join(METHODS)}")
    if method == "fixed":
        if spec:
            raise ValueError(f"a fixed threshold takes no settings, got {sorted(spec)}")
        return FixedThreshold(initial, log=log)
    cls = RollingQuantileThreshold if method == "rolling_quantile" else PotThreshold
    spec.setdefault("initial", initial)
    try:
        return cls(reference_scores, log=log, **spec)
    except TypeError as exc:
        raise ValueError(f"{method} threshold: {exc}") from None


class FixedThreshold:
    """The detector's own threshold, never changed (the default)."""

    method = "fixed"

    def __init__(self, threshold: float, log: Callable[[str], None] | None = None):
        self.threshold_ = float(threshold)
        line = f"adaptive threshold: {self.describe()}"
        logger.info(line)
        if log is not None:
            log(line)

    def describe(self) -> dict:
        return {"method": "fixed", "threshold": self.threshold_}

    def update(self, scores) -> float:
        _check(scores)
        return self.threshold_

    def run(self, scores, step: int = 1) -> np.ndarray:
        return np.full(_check(scores).size, self.threshold_)
