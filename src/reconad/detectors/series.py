"""``SeriesDetector``: autoencoders trained on windows of normal multivariate sensor
series; a time step is as anomalous as the windows around it are hard to rebuild."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from reconad.scoring import terms as scoring
from reconad.scoring import windows
from reconad.thresholds import episodes as alert_rule
from reconad.data import series as sdata
from reconad.detectors.torch_template import TorchDetector
from reconad.models.conv1d import Conv1dAE
from reconad.models.catalogue import DEFAULT_MODELS, entry

SENSOR_REDUCE = ("sum", "max")


class SeriesDetector(TorchDetector):
    """Anomaly detector for multivariate sensor series by window reconstruction.

    The series is scaled (scaler fitted on the training rows only), cut into windows of
    ``window`` rows every ``stride`` rows, and rebuilt by an autoencoder. Slow sensors
    (``slow_sensors``) have their mean over each window removed first: their level is the
    plant's operating point, only how they move inside the window is judged. A window's
    error per sensor is the mean over its newest ``score_last`` share of rows of the
    absolute (``score="mae"``) or squared (``"mse"``) difference; the window score is the
    largest (``sensor_reduce="max"``) or the sum (``"sum"``) of the scored sensors' errors.
    Each time step gets the ``combine`` of its windows: ``"last"`` (default, causal: the
    window that ends at the step), ``"mean"`` or ``"max"`` of the windows that cover it.
    ``predict`` applies the alert rule with hysteresis (``alert_enter``, ``alert_leave``,
    ``alert_release``; :mod:`reconad.thresholds.episodes`) to these scores, as the monitor does.

    Parameters
    ----------
    model : {"conv_ae", "lstm_ae", "lstm_vae", "dense_ae"}, default "conv_ae"
        1-D convolutional AE; LSTM encoder -> latent -> LSTM decoder; its variational
        version; dense AE on flattened windows. Any other registered model name is used as is.
    window, stride : int, default 60 and 1
    combine : {"last", "mean", "max"}, default "last"
    score : {"mae", "mse"}, default "mae"
    normalize_sensors : bool, default False
        Divide each sensor's window error by its median over the training windows, so that
        every sensor counts alike in the sum.
    sensor_reduce : {"max", "sum"}, default "max"
        How a window's per-sensor errors make its score: the largest one, or their sum. With
        ``"max"`` a window is as anomalous as its worst-rebuilt sensor, so an anomaly that
        shows in one sensor is not diluted, and small errors of many sensors do not add up.
    slow_sensors : "auto", None or list of str, default "auto"
        Sensors whose level is an operating point, not a fault: each window's mean of them is
        removed before the network. ``"auto"``: the sensors whose training rows change
        smoothly (``reconad.data.series.slow_sensors``: the spread of their step-to-step
        changes is under half their spread; with several segments, slow in most of them).
        A level fault of a slow sensor then shows only while the level changes; None scores
        every sensor's level. ``slow_sensors_`` names the ones chosen.
    score_slow : bool, default False
        Whether the slow sensors' errors count in the score (False: they are inputs only;
        when every sensor is slow, all are scored).
    score_last : float in (0, 1], default 0.5
        Share of each window's newest rows its error is taken over (1.0: all rows). With the
        causal ``"last"`` combine, an alarm then ends soon after a fault has gone instead of
        staying while the fault is anywhere in the window.
    alert_enter, alert_leave, alert_release : int, int, float; default 1, 10, 0.9
        An alert starts once ``alert_enter`` steps in a row score above ``threshold_`` and
        ends once ``alert_leave`` steps in a row score at or below ``alert_release`` times it.
    scaler : {"standard", "minmax", "none"}, default "standard"
    columns : list of str or None
        Sensor columns of a DataFrame to use; None takes every numeric column.
    fill_limit : int, default 5
        Missing values are filled by linear interpolation over at most this many steps;
        longer gaps raise ``ValueError``. ``n_filled_`` counts the filled values of ``fit``.
    latent_dim, width, depth, model_kwargs : model size (None keeps the model's default).
    loss : {"mse", "l1"} or None, training loss (None: the model's default, ``mse``).
    epochs, batch_size, lr, weight_decay, validation_fraction, patience : training (at most
        30 epochs by default: the defaults above were chosen with such models).
    threshold_method, threshold_param : default ``"margin"``: ``threshold_param`` (default 2)
        times the 0.999 quantile of the scores of all training windows (``rules.margin``);
        ``percentile`` (95), ``mean_std`` and ``fpr`` use the held-out windows' scores.
    device, random_state, verbose : as for ``ImageDetector``.

    Examples
    --------
    >>> import numpy as np
    >>> from reconad import SeriesDetector
    >>> t = np.arange(600)
    >>> X = np.c_[np.sin(t / 10), np.cos(t / 10)]
    >>> det = SeriesDetector(window=20, epochs=2, verbose=0).fit(X[:400])
    >>> det.decision_function(X[400:]).shape
    (200,)
    """

    kind = "series"

    PARAMS_BEFORE = {"slow_sensors": None, "score_slow": False, "score_last": 1.0,
                     "alert_enter": 1, "alert_leave": 1, "alert_release": 1.0}

    def __init__(self, model: str = DEFAULT_MODELS["series"], window: int = 60, stride: int = 1,
                 combine: str = "last", score: str = "mae", normalize_sensors: bool = False,
                 scaler: str = "standard", columns: list[str] | None = None, fill_limit: int = 5,
                 sensor_reduce: str = "max", slow_sensors: str | list[str] | None = "auto",
                 score_slow: bool = False, score_last: float = 0.5,
                 alert_enter: int = 1, alert_leave: int = 10, alert_release: float = 0.9,
                 latent_dim: int | None = None, width: int | None = None, depth: int | None = None,
                 model_kwargs: dict | None = None, loss: str | None = None, epochs: int = 30,
                 batch_size: int = 32, lr: float = 1e-3, weight_decay: float = 0.0,
                 validation_fraction: float = 0.1, patience: int | None = 5,
                 threshold_method: str = "margin", threshold_param: float | None = None,
                 device: str = "auto", random_state: int | None = 0, verbose: int = 1):
        self.model = model
        self.window = window
        self.stride = stride
        self.combine = combine
        self.score = score
        self.normalize_sensors = normalize_sensors
        self.scaler = scaler
        self.columns = columns
        self.fill_limit = fill_limit
        self.sensor_reduce = sensor_reduce
        self.slow_sensors = slow_sensors
        self.score_slow = score_slow
        self.score_last = score_last
        self.alert_enter = alert_enter
        self.alert_leave = alert_leave
        self.alert_release = alert_release
        self.latent_dim = latent_dim
        self.width = width
        self.depth = depth
        self.model_kwargs = model_kwargs
        self.loss = loss
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.threshold_method = threshold_method
        self.threshold_param = threshold_param
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # --- settings ---------------------------------------------------------------------
    def _network(self):
        return entry("series", self.model)  # unknown names fail here

    def _model_kwargs(self) -> dict:
        kw = dict(self.model_kwargs or {})
        for name in ("latent_dim", "width", "depth"):
            if getattr(self, name) is not None:
                kw[name] = getattr(self, name)
        return kw

    def _check_settings(self) -> None:
        scores = self._network().scores
        if int(self.window) < 2 or int(self.stride) < 1:
            raise ValueError(f"window must be >= 2 and stride >= 1, got {self.window} and {self.stride}")
        if self.combine not in windows.COMBINE:
            raise ValueError(f"unknown combine {self.combine!r}; choose one of {', '.join(windows.COMBINE)}")
        if self.score not in scores:
            raise ValueError(f"unknown score {self.score!r}; choose one of {', '.join(scores)}")
        if self.sensor_reduce not in SENSOR_REDUCE:
            raise ValueError(f"unknown sensor_reduce {self.sensor_reduce!r}; choose one of "
                             f"{', '.join(SENSOR_REDUCE)}")
        slow = self.slow_sensors
        if not (slow is None or slow == "auto" or (isinstance(slow, (list, tuple))
                                                   and all(isinstance(c, str) for c in slow))):
            raise ValueError(f"slow_sensors must be 'auto', None or a list of column names, got {slow!r}")
        if not 0 < float(self.score_last) <= 1:
            raise ValueError(f"score_last must be in (0, 1], got {self.score_last}")
        if int(self.alert_enter) < 1 or int(self.alert_leave) < 1:
            raise ValueError(f"alert_enter and alert_leave must be at least 1, got {self.alert_enter} "
                             f"and {self.alert_leave}")
        if not 0 < float(self.alert_release) <= 1:
            raise ValueError(f"alert_release must be in (0, 1], got {self.alert_release}")
        if self.scaler not in sdata.SCALERS:
            raise ValueError(f"unknown scaler {self.scaler!r}; choose one of {', '.join(sdata.SCALERS)}")
        if (self.loss or "mse") not in ("mse", "l1"):
            raise ValueError(f"unknown loss {self.loss!r}; choose 'mse' or 'l1'")

    def _build(self) -> torch.nn.Module:
        return self._network().build((int(self.window), self.n_features_), **self._model_kwargs())

    # --- input ------------------------------------------------------------------------
    @staticmethod
    def _segments(X) -> list:
        if isinstance(X, (list, tuple)) and X and all(
                isinstance(s, (pd.DataFrame, np.ndarray)) and np.ndim(s) == 2 for s in X):
            return list(X)
        return [X]

    def _prepare(self, X, fitting: bool) -> sdata.Series:
        cols = self.columns if self.columns is not None or fitting else None
        s = sdata.prepare(X, cols, int(self.fill_limit))
        if not fitting:
            self._check_fitted()
            if isinstance(X, pd.DataFrame) and self.columns is None and s.columns != self.columns_:
                extra = sorted(set(s.columns) - set(self.columns_))
                if extra and set(self.columns_) <= set(s.columns):
                    raise ValueError(f"columns differ from training: extra column(s) {', '.join(extra)}; "
                                     f"pass columns=[...] when fitting to choose sensors")
                missing = [c for c in self.columns_ if c not in s.columns]
                if missing:
                    raise ValueError(f"columns differ from training: missing column(s) {', '.join(missing)}")
                s = sdata.prepare(X, self.columns_, int(self.fill_limit))
            if s.values.shape[1] != self.n_features_:
                raise ValueError(f"the series has {s.values.shape[1]} sensor columns but the model "
                                 f"was trained on {self.n_features_}")
        if len(s.values) < int(self.window):
            raise ValueError(f"too few rows: the series has {len(s.values)} rows, fewer than one "
                             f"window of {self.window}")
        return s

    # --- fit --------------------------------------------------------------------------
    def read_fit_data(self, paths: list) -> list[pd.DataFrame]:
        """Normal segments from CSV files (delimiter and encoding detected), one per file."""
        from reconad.data.csv import read_csv

        return [read_csv(p) for p in paths]

    def fit(self, X, y=None):
        """Train on normal data: one series (DataFrame, array ``(T, F)``, CSV path) or a list
        of normal segments (windows never cross segment borders). Returns ``self``."""
        self._check_settings()
        segs = [self._prepare(seg, fitting=True) for seg in self._segments(X)]
        cols = segs[0].columns
        for s in segs[1:]:
            if s.columns != cols:
                raise ValueError("all normal segments must have the same sensor columns")
        self.columns_ = list(cols)
        self.n_features_ = len(cols)
        self.n_filled_ = int(sum(s.n_filled for s in segs))
        rows = np.concatenate([s.values for s in segs])
        self.center_, self.scale_ = sdata.fit_scaler(rows, self.scaler)
        self.slow_mask_ = self._slow_mask(segs)
        wins = np.concatenate([windows.make_windows(sdata.apply_scaler(s.values, self.center_, self.scale_),
                                                    int(self.window), int(self.stride)) for s in segs])
        wins = np.ascontiguousarray(windows.center_sensors(wins, self.slow_mask_), dtype=np.float32)
        if len(wins) < 2:
            raise ValueError(f"too few rows: need at least {int(self.window) + 1} rows for two windows "
                             f"of {self.window}")
        return self._fit_samples(wins)

    def _loss_fn(self):
        loss_name, model = self.loss or "mse", self.model_

        def loss_fn(out, xb):
            """The reconstruction loss; for a model whose ``forward_train`` also gives a KL
            term, plus ``beta`` times it while training."""
            if isinstance(out, tuple):
                rec, kl = out
                loss = scoring.loss(xb, rec, loss_name)
                return loss + model.beta * kl if model.training else loss
            return scoring.loss(xb, out, loss_name)

        return loss_fn

    def _threshold_from_fit(self, wins: np.ndarray, held_out: np.ndarray) -> None:
        """Sensor norms from all training windows, then the threshold from the held-out ones."""
        self.sensor_norm_ = np.ones(self.n_features_, np.float32)
        if self.normalize_sensors:
            raw = self._sensor_errors(wins)
            self.sensor_norm_ = np.maximum(np.median(raw, 0), 1e-6).astype(np.float32)
        if self.threshold_method == "margin":  # over all training windows (see rules.margin)
            held_out = wins
        self._set_threshold_from(self.reduce_sensors(self._sensor_errors(held_out)))

    def _slow_mask(self, segs: list) -> np.ndarray:
        """Which sensors are slow (``slow_sensors``): named ones, or by ``smoothness`` of the
        training rows (each segment judged alone, a sensor slow in most segments)."""
        if self.slow_sensors is None:
            return np.zeros(self.n_features_, bool)
        if self.slow_sensors == "auto":
            votes = [sdata.slow_sensors(s.values) for s in segs if len(s.values) >= 3]
            return np.mean(votes, 0) > 0.5 if votes else np.zeros(self.n_features_, bool)
        unknown = [c for c in self.slow_sensors if c not in self.columns_]
        if unknown:
            raise ValueError(f"slow_sensors names unknown column(s) {', '.join(unknown)}; "
                             f"columns: {', '.join(self.columns_)}")
        return np.array([c in self.slow_sensors for c in self.columns_])

    @property
    def slow_sensors_(self) -> list[str]:
        """Names of the sensors treated as slow (their level within a window is not scored)."""
        return [c for c, m in zip(self.columns_, self.slow_mask_) if m]

    # --- scoring ----------------------------------------------------------------------
    def _sensor_errors(self, wins: np.ndarray, batch_size: int = 1024, network=None) -> np.ndarray:
        """Per-window, per-sensor errors ``(n, F)`` of scaled windows ``(n, window, F)``."""
        if len(wins) == 0:
            return np.zeros((0, self.n_features_), np.float32)
        if self.model_.training:
            self.model_.eval()
        network = self.model_ if network is None else network
        wins = windows.center_sensors(wins, getattr(self, "slow_mask_", np.zeros(self.n_features_, bool)))
        term, rows = ("l1" if self.score == "mae" else "mse"), self._score_rows()
        errors = self._batched(wins, lambda xb: scoring.elementwise(xb, network(xb), term)[:, -rows:].mean(1),
                               batch_size=batch_size)
        return errors / getattr(self, "sensor_norm_", 1.0)

    def _score_rows(self) -> int:
        """How many of each window's newest rows its error is taken over (``score_last``)."""
        return max(1, int(round(float(getattr(self, "score_last", 1.0)) * int(self.window))))

    def reduce_sensors(self, errors: np.ndarray) -> np.ndarray:
        """Window scores ``(n,)`` from per-sensor window errors ``(n, F)``, by ``sensor_reduce``."""
        errors = np.asarray(errors)
        if not getattr(self, "score_slow", True) and getattr(self, "slow_mask_", None) is not None \
                and self.slow_mask_.any() and not self.slow_mask_.all():
            errors = errors[:, ~self.slow_mask_]
        if getattr(self, "sensor_reduce", "sum") == "max":
            return errors.max(1) if errors.shape[1] else np.zeros(len(errors), errors.dtype)
        return errors.sum(1)

    def _windows_of(self, X) -> tuple[np.ndarray, sdata.Series]:
        s = self._prepare(X, fitting=False)
        scaled = sdata.apply_scaler(s.values, self.center_, self.scale_)
        return windows.make_windows(scaled, int(self.window), int(self.stride)), s

    def window_scores(self, X, per_sensor: bool = False) -> np.ndarray:
        """Scores of the windows ``(n,)`` (``(n, F)`` per sensor); window ``j`` starts at
        row ``j * stride``."""
        wins, _ = self._windows_of(X)
        err = self._sensor_errors(wins)
        return err if per_sensor else self.reduce_sensors(err)

    def decision_function(self, X, combine: str | None = None) -> np.ndarray:
        """Anomaly score per time step ``(T,)``, higher = more anomalous."""
        how = combine or self.combine
        wins, s = self._windows_of(X)
        return windows.to_steps(self.reduce_sensors(self._sensor_errors(wins)), len(s.values), int(self.window),
                                int(self.stride), how)

    def alert_levels(self, threshold: float | None = None) -> tuple[float, float]:
        """The levels that start and end an alert: ``threshold`` (default ``threshold_``) and
        ``alert_release`` times it."""
        high = float(self.threshold_ if threshold is None else threshold)
        return high, high * float(self.alert_release)

    def predict(self, X) -> np.ndarray:
        """0 for normal, 1 inside an alert: the alert rule on the step scores of
        ``decision_function`` (see :mod:`reconad.thresholds.episodes`). An alert starts once
        ``alert_enter`` steps in a row score above ``threshold_`` and ends once ``alert_leave``
        steps in a row score at or below ``alert_release * threshold_``. With the default
        ``combine="last"`` each step is scored by the window that ends at it, so no flag
        depends on a later row, and the first ``window - 1`` steps are never flagged."""
        self._check_fitted()
        high, low = self.alert_levels()
        flags, _ = alert_rule.episodes(self.decision_function(X), high, low,
                                       int(self.alert_enter), int(self.alert_leave))
        return flags.astype(int)

    def sensor_scores(self, X, combine: str | None = None) -> pd.DataFrame:
        """Per-sensor contributions ``(T, F)`` as a DataFrame. With ``combine="mean"`` or
        ``"last"``, a step's score is the largest (``sensor_reduce="max"``) or the sum
        (``"sum"``) of its row's contributions, over the scored sensors (see ``score_slow``)."""
        how = combine or self.combine
        wins, s = self._windows_of(X)
        per = windows.to_steps(self._sensor_errors(wins), len(s.values), int(self.window),
                               int(self.stride), how)
        return pd.DataFrame(per, columns=self.columns_, index=s.index)

    def score_scaled_windows(self, wins: np.ndarray) -> np.ndarray:
        """Per-sensor errors ``(n, F)`` of windows already scaled with ``center_``/``scale_``
        (used by the monitor, which keeps its own buffer)."""
        self._check_fitted()
        return self._sensor_errors(wins, network=self._stream_network() if len(wins) <= 16 else None)

    def _stream_network(self):
        """The network for a few windows at a time (a live stream): the convolutional AE
        traced and frozen once on the CPU (the same numbers, less per-call overhead); any
        other network as it is."""
        cached = getattr(self, "_stream_net", None)
        if cached is not None and cached[0] is self.model_:
            return cached[1]
        net = self.model_
        if isinstance(self.model_, Conv1dAE) and self.device_.type == "cpu":
            self.model_.eval()
            example = torch.zeros(1, int(self.window), self.n_features_)
            with torch.no_grad():
                net = torch.jit.freeze(torch.jit.trace(self.model_, example))
        self._stream_net = (self.model_, net)
        return net

    # --- persistence ------------------------------------------------------------------
    def _fitted_state(self):
        fitted = {"columns_": self.columns_, "n_features_": self.n_features_,
                  "n_filled_": self.n_filled_, "history_": self.history_, "best_epoch_": self.best_epoch_}
        tensors = self._network_tensors()
        tensors.update({"state.center_": torch.from_numpy(self.center_),
                        "state.scale_": torch.from_numpy(self.scale_),
                        "state.sensor_norm_": torch.from_numpy(self.sensor_norm_),
                        "state.slow_mask_": torch.from_numpy(self.slow_mask_.astype(np.uint8))})
        return fitted, tensors

    def _restore_state(self, fitted, tensors):
        self.columns_ = list(fitted["columns_"])
        self.n_features_ = int(fitted["n_features_"])
        self.n_filled_ = int(fitted["n_filled_"])
        self.history_ = fitted["history_"]
        self.best_epoch_ = fitted["best_epoch_"]
        self.center_ = tensors.pop("state.center_").numpy()
        self.scale_ = tensors.pop("state.scale_").numpy()
        self.sensor_norm_ = tensors.pop("state.sensor_norm_").numpy()
        slow = tensors.pop("state.slow_mask_", None)
        self.slow_mask_ = slow.numpy().astype(bool) if slow is not None else np.zeros(self.n_features_, bool)
        self._restore_network(tensors)
