"""``TabularDetector``: autoencoders on tables of measurements; the reconstruction error
of the scaled row is the anomaly score."""

from __future__ import annotations

import numpy as np
import torch

from reconad.scoring import terms as scoring
from reconad.data.tables import TableEncoder, as_frame
from reconad.detectors.torch_template import TorchDetector
from reconad.models.catalogue import entry
from reconad.models.tabular import vae_loss



def default_latent_dim(n_features: int) -> int:
    """The bottleneck a table gets when ``latent_dim`` is None: about a quarter of its
    (encoded) features, between 2 and 32."""
    return int(min(32, max(2, round(n_features / 4))))


class TabularDetector(TorchDetector):
    """Anomaly detector for tables (one row per part or per measurement).

    Parameters
    ----------
    model : {"ae", "vae"}, default "ae"
        ``"ae"``: dense autoencoder; ``"vae"``: dense Gaussian VAE
        (trained on squared error plus ``beta`` times the KL term, scored on the
        reconstruction of the posterior mean).
    columns : list of str or None
        Columns to use from a DataFrame or CSV; None uses all of them. At scoring columns
        are matched by name (another order is fine, a missing column is an error); arrays
        must keep the training order.
    scaler : {"standard", "minmax"}, default "standard"
        Scaling of numeric columns, fitted on the training rows only.
    missing : {"impute", "error"}, default "impute"
        Missing numbers become the training median of their column; a missing category
        gives an all-zero one-hot block. ``"error"`` rejects missing values.
    encoding, sep : CSV reading: text encoding (e.g. ``"shift_jis"``, ``"cp932"``) and
        delimiter (None detects it).
    contamination : float in (0, 0.5] or None
        For training data that holds some anomalies (PyOD's convention): the threshold is
        the (1 - contamination) quantile of the scores of all training rows, and
        ``decision_scores_`` are those scores. None: the training rows are taken as normal
        and the threshold comes from the held-out rows by ``threshold_method``.
    score : {"mse", "l1"}, default "mse"
        Mean squared or summed absolute error over the encoded features.
    latent_dim, width, depth : int or None
        Bottleneck (None: about a quarter of the encoded features, 2..32), units of the
        first hidden layer (64) halving per layer, hidden layers per side (2).
    bounded : bool, default True
        Squash the reconstruction into the range each (scaled) feature had in training,
        so an extreme value cannot be rebuilt by extrapolation and scores high; False
        gives a plain linear output.
    beta : float, default 1.0
        Weight of the KL term (``"vae"`` only).
    epochs, batch_size, lr, weight_decay, validation_fraction, patience :
        Training settings (Adam); the weights with the best validation loss are kept.
    threshold_method, threshold_param : as for ``ImageDetector``.
    device, random_state, verbose : as for ``ImageDetector``.

    Examples
    --------
    >>> import numpy as np
    >>> from reconad import TabularDetector
    >>> X = np.random.RandomState(0).normal(size=(500, 4))
    >>> det = TabularDetector(epochs=5, verbose=0).fit(X)
    >>> det.decision_function(X[:3]).shape
    (3,)
    """

    kind = "table"
    _sample_noun = "rows"

    def __init__(self, model: str = "ae", columns: list[str] | None = None, scaler: str = "standard",
                 missing: str = "impute", encoding: str = "utf-8", sep: str | None = None,
                 contamination: float | None = None, score: str = "mse",
                 latent_dim: int | None = None, width: int = 64, depth: int = 2,
                 bounded: bool = True, beta: float = 1.0,
                 epochs: int = 50, batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 0.0,
                 validation_fraction: float = 0.1, patience: int | None = None,
                 threshold_method: str = "percentile", threshold_param: float | None = None,
                 device: str = "auto", random_state: int | None = 0, verbose: int = 1):
        self.model = model
        self.columns = columns
        self.scaler = scaler
        self.missing = missing
        self.encoding = encoding
        self.sep = sep
        self.contamination = contamination
        self.score = score
        self.latent_dim = latent_dim
        self.width = width
        self.depth = depth
        self.bounded = bounded
        self.beta = beta
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
    def _check_params(self) -> None:
        scores = entry("table", self.model).scores
        if self.score not in scores:
            raise ValueError(f"unknown score {self.score!r}; choose one of {', '.join(scores)}")
        if self.contamination is not None and not 0 < self.contamination <= 0.5:
            raise ValueError(f"contamination must be in (0, 0.5], got {self.contamination}")

    def _build(self) -> torch.nn.Module:
        latent = self.latent_dim or default_latent_dim(self.n_features_)
        return entry("table", self.model).build((self.n_features_,), latent_dim=latent,
                            width=self.width, depth=self.depth, bounded=self.bounded)

    def _matrix(self, X) -> np.ndarray:
        frame, named = as_frame(X, encoding=self.encoding, sep=self.sep)
        return self.encoder_.transform(frame, named)

    # --- fit --------------------------------------------------------------------------
    def fit(self, X, y=None):
        """Train on the rows of ``X`` (DataFrame, array ``(N, F)`` or CSV path); returns
        ``self``. ``y`` is ignored."""
        self._check_params()
        frame, named = as_frame(X, encoding=self.encoding, sep=self.sep)
        self.encoder_ = TableEncoder(self.columns, self.scaler, self.missing).fit(frame, named)
        data = self.encoder_.transform(frame, named)
        self.n_features_in_ = len(self.encoder_.columns_)
        if named:
            self.feature_names_in_ = np.asarray(self.encoder_.columns_, dtype=object)
        self.n_features_ = data.shape[1]
        return self._fit_samples(data)

    def _training_data(self, data, train_idx, val_idx):
        train, val = super()._training_data(data, train_idx, val_idx)
        tensor = torch.from_numpy(data)
        self.model_.box.set_bounds(tensor.min(0).values, tensor.max(0).values)
        return train, val

    def _loss_fn(self):
        if self.model == "vae":
            beta = float(self.beta)
            return lambda out, xb: vae_loss(xb, out, beta)
        return lambda out, xb: scoring.loss(xb, out, "mse")

    def _threshold_from_fit(self, data: np.ndarray, held_out: np.ndarray) -> None:
        """From the held-out rows by ``threshold_method``; with ``contamination``, the
        quantile of the scores of all training rows."""
        if self.contamination is None:
            self._set_threshold_from(self._scores(held_out))
            return
        self.decision_scores_ = self._scores(data)
        self.threshold_ = float(np.quantile(self.decision_scores_, 1 - self.contamination))
        self.threshold_method_ = "contamination"

    # --- scoring ----------------------------------------------------------------------
    def _scores(self, data: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        self.model_.eval()
        return self._batched(data, lambda xb: scoring.per_sample(xb, self.model_(xb), self.score),
                             batch_size=batch_size).astype(np.float64)

    def decision_function(self, X) -> np.ndarray:
        """Anomaly score per row (higher = more anomalous)."""
        self._check_fitted()
        return self._scores(self._matrix(X))

    def reconstruct(self, X) -> np.ndarray:
        """Reconstructed rows in the scaled, encoded feature space ``(N, n_features_)``."""
        self._check_fitted()
        data = torch.from_numpy(self._matrix(X)).to(self.device_)
        self.model_.eval()
        with torch.no_grad():
            return self.model_(data).cpu().numpy()

    # --- persistence ------------------------------------------------------------------
    def _fitted_state(self):
        fitted = {"encoder_": self.encoder_.to_dict(), "n_features_": self.n_features_,
                  "history_": self.history_, "best_epoch_": self.best_epoch_}
        return fitted, self._network_tensors()

    def _restore_state(self, fitted, tensors):
        self.encoder_ = TableEncoder.from_dict(fitted["encoder_"])
        self.n_features_ = int(fitted["n_features_"])
        self.n_features_in_ = len(self.encoder_.columns_)
        if self.encoder_.named_:
            self.feature_names_in_ = np.asarray(self.encoder_.columns_, dtype=object)
        self.history_ = fitted["history_"]
        self.best_epoch_ = fitted["best_epoch_"]
        self._restore_network(tensors)

    # --- pictures ---------------------------------------------------------------------
    def plot_decision(self, X, path, y=None) -> None:
        """For a detector on one or two numeric columns: the score curve (one feature) or
        the filled score contour with the threshold contour (two features), with the rows
        of ``X`` marked normal or anomalous (by ``y`` when given, else by ``predict``)."""
        from reconad.evaluation import plots

        self._check_fitted()
        enc = self.encoder_
        if enc.categorical_ or len(enc.columns_) not in (1, 2):
            raise ValueError(f"plot_decision needs one or two numeric columns; this detector uses "
                             f"{len(enc.columns_)} ({', '.join(enc.columns_)})")
        frame, named = as_frame(X, encoding=self.encoding, sep=self.sep)
        values = enc.select(frame, named).to_numpy(dtype=np.float64)
        keep = ~np.isnan(values).any(axis=1)
        marks = self.predict(X) if y is None else np.asarray(y).ravel()
        suffix = " (labels)" if y is not None else " (predicted)"
        if len(enc.columns_) == 1:
            plots.decision_curve(self.decision_function, values[keep, 0], self.threshold_, path,
                                 labels=marks[keep], feature_name=enc.columns_[0], label_name=suffix)
        else:
            plots.decision_contour(self.decision_function, values[keep], self.threshold_, path,
                                   labels=marks[keep], feature_names=tuple(enc.columns_),
                                   label_name=suffix)
