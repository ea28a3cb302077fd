"""``TabularDetector``: autoencoders on tables of measurements; the reconstruction error
of the scaled row is the anomaly score.

The default (``model="ensemble"``) is built to need no settings per table and to stand
some outliers among the training rows:

* columns are scaled robustly (median and interquartile range), so a few extreme rows do
  not squeeze the normal ones together;
* eight small autoencoders are trained side by side (one batched network), each on its
  own random half of the training rows (its own batches, output bounds, error scales and
  best epoch), and a row's score is the median of theirs: an outlier among the training
  rows is learnt by only some of them, and one member that learns an outlier group or
  fits badly moves the median little;
* the bottleneck is small (about a quarter of the features) and the output is bounded
  to each feature's training range, so a few outliers among the training rows are not
  learnt well enough to be rebuilt, and an extreme value is never rebuilt;
* each feature's error is divided by its typical (median) training error before the
  errors are averaged (``standardize_errors``), so a feature that is hard to rebuild
  for every row does not drown the others; where many training rows share the
  feature's lowest or highest value (at least 5 %: a count that is mostly 0, a pixel
  mostly blank) the typical error is the larger of the median and the mean, so a rare
  other value of that feature does not get an arbitrary, huge weight;
* each member adds to its reconstruction score how unlikely its bottleneck code is: the
  negative log-density of the code under a Gaussian mixture of 4 components fitted to the
  codes of its own rows (the paper's split of a GMM's likelihood; all members' mixtures
  are fitted at once by one batched EM, ``models.mixtures``), over its typical value,
  at half the weight of the reconstruction score (``CODE_WEIGHT``). A row far out along the
  directions the normal rows vary most is rebuilt well by the bottleneck, but its code is
  rare; the mixture keeps tables whose normal rows form several groups from being scored
  by their distance to the middle between the groups (``code_components``);
* training takes about a fixed number of weight updates with large batches, so the fit
  time grows slowly with the number of rows.

``trim`` (off by default) leaves the worst-rebuilt rows of every batch out of the loss;
on the ODDS benchmark (docs/odds.md) it did not help, with or without outliers in the
training rows, so it is there to try, not on.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from reconad.scoring import terms as scoring
from reconad.data.tables import TableEncoder, as_frame
from reconad.detectors.torch_template import TorchDetector
from reconad.models.catalogue import DEFAULT_MODELS, entry
from reconad.models.mixtures import fit_mixtures
from reconad.models.tabular import (code_surprise, median_of_members, member_errors, member_losses,
                                    member_slots, slot_rows, trimmed_loss, vae_loss)

#: a feature with at least this share of its training rows on its lowest or highest value
#: is "piled" (``piled_features``); its typical error is not its median error alone
PILED_SHARE = 0.05

# what ``None`` means for the training settings, per model: the ensemble trains for about
# ``updates`` weight updates with large batches; the single networks for a fixed number of epochs
MODEL_DEFAULTS = {
    "ensemble": {"depth": 1, "batch_size": 128, "lr": 3e-3, "updates": 300},
    "ae": {"depth": 2, "batch_size": 64, "lr": 1e-3, "epochs": 50},
    "vae": {"depth": 2, "batch_size": 64, "lr": 1e-3, "epochs": 50},
}


# rows per member that its per-feature error medians are taken over: enough for a median to
# about 1 %, and it bounds the memory of that step on tables of hundreds of thousands of rows
SCALE_ROWS = 20000
# rows per member its mixture of codes is fitted on (``code_components``), and the mixture's
# EM iterations: they bound the time of that step
CODE_ROWS = 1000
CODE_ITERATIONS = 30
# weight of the code term against the reconstruction score, each over its typical value on
# the training rows: half (docs/odds.md, "The code term's weight")
CODE_WEIGHT = 0.5


def default_latent_dim(n_features: int) -> int:
    """The bottleneck a table gets when ``latent_dim`` is None: about a quarter of its
    (encoded) features, between 2 and 32, and at least 3 where that is at most half of
    them (with 6 to 11 features a quarter, 2, is too narrow to rebuild the normal rows
    well, and rows whose values are each plausible but break the relations between them
    go unseen; docs/tables_planted.md)."""
    return int(max(2, min(32, n_features // 2, max(3, round(n_features / 4)))))


def default_epochs(n_train: int, batch_size: int, updates: int) -> int:
    """Epochs that give about ``updates`` weight updates over ``n_train`` rows."""
    return max(1, round(updates / math.ceil(n_train / batch_size)))


class TabularDetector(TorchDetector):
    """Anomaly detector for tables (one row per part or per measurement).

    Parameters
    ----------
    model : {"ensemble", "ae", "vae"}, default "ensemble"
        ``"ensemble"``: ``members`` small dense autoencoders trained side by side, each on
        its own share of the rows (``subsample``), the median of their scores (see the
        module notes); ``"ae"``: one dense autoencoder; ``"vae"``: dense Gaussian VAE
        (trained on squared error plus ``beta`` times the KL term, scored on the
        reconstruction of the posterior mean).
    columns : list of str or None
        Columns to use from a DataFrame or CSV; None uses all of them. At scoring columns
        are matched by name (another order is fine, a missing column is an error); arrays
        must keep the training order.
    scaler : {"robust", "standard", "minmax"}, default "robust"
        Scaling of numeric columns, fitted on the training rows only (``"robust"``:
        median and interquartile range).
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
    standardize_errors : bool or None
        Divide each feature's error by its median over the training rows (the larger of
        median and mean for a feature with at least 5 % of the rows on its lowest or
        highest value) before the errors are combined (None: True for ``"ensemble"``,
        False otherwise).
    members : int, default 8
        Autoencoders in the ensemble (``"ensemble"`` only).
    combine : {"mean", "median"}, default "median"
        How the members' scores of a row are combined (``"ensemble"`` only), each first
        divided by its median over the training rows. The median is not moved by one
        member that rebuilds some outliers well or all rows badly.
    subsample : float in (0, 1], default 0.5
        Share of the training rows each member learns from (``"ensemble"`` only): every
        member draws its own random share of the training and of the validation rows, and
        its output bounds, error scales and kept epoch come from its own rows, so an
        outlier among the training rows is learnt by only some of the members.
    code_components : int, default 4
        Components of the Gaussian mixture of each member's bottleneck codes whose negative
        log-density (over its typical value over the training rows, at half the weight of
        the reconstruction score) is added to the member's score (``"ensemble"`` only); 0
        leaves the code term out.
    trim : float in [0, 0.5), default 0.0
        Share of the worst-rebuilt rows of each batch left out of the loss, in training
        and in the validation loss that picks the epoch (``"ensemble"`` only).
    latent_dim, width, depth : int or None
        Bottleneck (None: about a quarter of the encoded features, 2..32, at least 3 from 6
        features on), units of the first hidden layer (64) halving per layer, hidden
        layers per side (None: 1 for ``"ensemble"``, 2 otherwise).
    bounded : bool, default True
        Squash the reconstruction into the range each (scaled) feature had in training,
        so an extreme value cannot be rebuilt by extrapolation and scores high; False
        gives a plain linear output.
    beta : float, default 1.0
        Weight of the KL term (``"vae"`` only).
    epochs, batch_size, lr, weight_decay, validation_fraction, patience :
        Training settings (Adam); the weights with the best validation loss are kept.
        None takes the model's default: ``"ensemble"`` batches of 128 rows, learning
        rate 3e-3 and as many epochs as give about 300 weight updates; ``"ae"`` and
        ``"vae"`` batches of 64, 1e-3 and 50 epochs.
    threshold_method, threshold_param : as for ``ImageDetector``.
    device, random_state, verbose : as for ``ImageDetector``.

    Examples
    --------
    >>> import numpy as np
    >>> from reconad import TabularDetector
    >>> X = np.random.RandomState(0).normal(size=(500, 4))
    >>> det = TabularDetector(verbose=0).fit(X)
    >>> det.decision_function(X[:3]).shape
    (3,)
    """

    kind = "table"
    _sample_noun = "rows"

    def __init__(self, model: str = DEFAULT_MODELS["table"], columns: list[str] | None = None, scaler: str = "robust",
                 missing: str = "impute", encoding: str = "utf-8", sep: str | None = None,
                 contamination: float | None = None, score: str = "mse",
                 standardize_errors: bool | None = None, members: int = 8, combine: str = "median",
                 subsample: float = 0.5, trim: float = 0.0, code_components: int = 4,
                 latent_dim: int | None = None, width: int = 64, depth: int | None = None,
                 bounded: bool = True, beta: float = 1.0,
                 epochs: int | None = None, batch_size: int | None = None, lr: float | None = None,
                 weight_decay: float = 0.0,
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
        self.standardize_errors = standardize_errors
        self.members = members
        self.combine = combine
        self.subsample = subsample
        self.trim = trim
        self.code_components = code_components
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
        if not 0 <= self.trim < 0.5:
            raise ValueError(f"trim must be in [0, 0.5), got {self.trim}")
        if int(self.members) != self.members or self.members < 1:
            raise ValueError(f"members must be a whole number of at least 1, got {self.members}")
        if self.combine not in ("mean", "median"):
            raise ValueError(f"combine must be 'mean' or 'median', got {self.combine!r}")
        if int(self.code_components) != self.code_components or self.code_components < 0:
            raise ValueError(f"code_components must be a whole number of at least 0, got {self.code_components}")
        if not 0 < float(self.subsample) <= 1:
            raise ValueError(f"subsample must be a share of the rows in (0, 1], got {self.subsample!r}")

    def _setting(self, name: str):
        """A training setting: the value given, else the model's default."""
        value = getattr(self, name, None)
        return MODEL_DEFAULTS[self.model].get(name) if value is None else value

    def _standardizes(self) -> bool:
        if self.standardize_errors is None:
            return self.model == "ensemble"
        return bool(self.standardize_errors)

    def _build(self) -> torch.nn.Module:
        latent = self.latent_dim or default_latent_dim(self.n_features_)
        extra = {"members": int(self.members)} if self.model == "ensemble" else {}
        return entry("table", self.model).build((self.n_features_,), latent_dim=latent, width=self.width,
                                                depth=self._setting("depth"), bounded=self.bounded, **extra)

    def _matrix(self, X) -> np.ndarray:
        frame, named = as_frame(X, encoding=self.encoding, sep=self.sep)
        return self.encoder_.transform(frame, named)

    # --- fit --------------------------------------------------------------------------
    def read_fit_data(self, paths: list) -> pd.DataFrame:
        """The rows of the CSV files ``paths`` (read with ``encoding`` and ``sep``), one table."""
        return pd.concat([as_frame(p, encoding=self.encoding, sep=self.sep)[0] for p in paths],
                         ignore_index=True)

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
        if len(data) >= 2 and (data == data[:1]).all():
            raise ValueError(f"all {len(data)} training rows are the same row: there is nothing to learn "
                             "what normal rows look like from")
        return self._fit_samples(data)

    def _training_data(self, data, train_idx, val_idx):
        train, val = super()._training_data(data, train_idx, val_idx)
        lower, upper = row_range([torch.from_numpy(data)])
        self.model_.box.set_bounds(lower[0], upper[0])
        return train, val

    def _member_batches(self, train: torch.Tensor, val: torch.Tensor | None):
        """The ensemble's training and validation tensors in the layout of
        ``member_slots``: every member its own random ``subsample`` share of the rows, in
        its own order, so the members learn from different rows and batches."""
        members, share = int(self.members), float(self.subsample)
        gen = torch.Generator().manual_seed(0 if self.random_state is None else int(self.random_state))
        return (member_slots(train, members, gen, share),
                None if val is None else member_slots(val, members, gen, share))

    def _train(self, train, val) -> None:
        """Train with the model's default batch size, epochs and learning rate where they are
        None, then measure each feature's typical training error."""
        self.member_scale_ = None
        if self.model == "ensemble":
            self._train_members(train, val)
            return
        batch_size = min(int(self._setting("batch_size")), len(train))
        epochs = self._setting("epochs") or default_epochs(len(train), batch_size,
                                                           MODEL_DEFAULTS[self.model]["updates"])
        self._fit_network(train, val, batch_size=batch_size, epochs=epochs, lr=self._setting("lr"))
        rows = train if val is None else torch.cat([train, val])
        piled = piled_features([rows], self.model_.box.lower, self.model_.box.upper)  # the bounds: these rows' range
        self.error_scale_ = self._error_scale(rows.numpy(), piled) if self._standardizes() else None

    def _train_members(self, train, val) -> None:
        """The ensemble: every member on its own rows (``_member_batches``), with output
        bounds and error scales from them and its own best epoch (``MemberBest``); then
        each member's median score over all training rows (``member_scale_``)."""
        fit_train, fit_val = self._member_batches(train, val)
        batch_size = min(int(self._setting("batch_size")), len(fit_train))
        epochs = self._setting("epochs") or default_epochs(len(fit_train), batch_size,
                                                           MODEL_DEFAULTS[self.model]["updates"])
        members = int(self.members)
        parts = [slot_rows(fit_train, members)] + ([] if fit_val is None else [slot_rows(fit_val, members)])
        lower, upper = row_range(parts)
        self.model_.box.set_bounds(lower, upper)
        # the rows the error scales come from: each member's own, at most SCALE_ROWS of them
        own = torch.cat([p[:, :SCALE_ROWS] for p in parts], 1)
        piled = piled_features(parts, lower, upper)
        # with validation rows each member keeps its own best epoch, so the training loop
        # itself gets none: it would pick one epoch for all of them
        keeper = MemberBest(self.model_, fit_val, float(self.trim)) if fit_val is not None else None
        self._fit_network(fit_train, None, batch_size=batch_size, epochs=epochs,
                          lr=self._setting("lr"), on_epoch=keeper, keep_best=keeper is None)
        if keeper is not None:
            keeper.restore()
            self.history_["val_loss"] = keeper.history
            self.best_epoch_ = int(keeper.best_epoch.median())
        self.error_scale_ = self._own_error_scale(own, piled) if self._standardizes() else None
        rows = (train if val is None else torch.cat([train, val])).numpy()
        self.code_density_ = None
        if int(self.code_components) > 0:
            self.code_density_ = self._fit_code_density(own)
            self.code_weight_ = CODE_WEIGHT
        # both terms of every member over all training rows, from one pass: (N, members, terms)
        terms = self._batched(rows, lambda xb: torch.stack(
            [t for t in self._member_terms(xb) if t is not None], -1).transpose(0, 1), batch_size=4096)
        self.member_scale_ = np.maximum(np.median(terms[..., 0], axis=0), 1e-12)
        if self.code_density_ is not None:
            surprise = terms[..., 1]
            # the larger of the median and the mean: where a mixture component sits on many
            # identical codes (a ReLU code is often exactly 0), most rows have a surprise of
            # about 0, and their median alone would give the term a huge weight
            self.code_scale_ = np.maximum(np.maximum(np.median(surprise, axis=0), surprise.mean(0)), 1e-12)

    def _fit_code_density(self, own: torch.Tensor) -> dict[str, torch.Tensor]:
        """A Gaussian mixture of every member's bottleneck codes over its own rows (at most
        ``CODE_ROWS`` of them), all fitted at once (``models.mixtures.fit_mixtures``), as the
        tensors ``_code_surprise`` needs."""
        self.model_.eval()
        with torch.no_grad():
            codes = self.model_.codes(own[:, :CODE_ROWS].to(self.device_)).double().cpu()
        mix = fit_mixtures(codes, int(self.code_components), max_iter=CODE_ITERATIONS)
        parts = {"means": mix.means, "prec_chol": mix.precisions_cholesky, "log_weights": mix.weights.log()}
        parts["offset"] = scoring.gmm_nll(codes, mix.weights, mix.means, mix.precisions_cholesky).amin(1)
        return {name: v.to(torch.float32).contiguous() for name, v in parts.items()}

    def _code_surprise(self, codes: torch.Tensor) -> torch.Tensor:
        """Every member's negative log-density of its bottleneck codes ``(members, N, L)``
        under its mixture, less its lowest value over the member's own rows
        (``code_surprise``), ``(members, N)``."""
        d = {k: v.to(codes.device) for k, v in self.code_density_.items()}
        return code_surprise(codes, d["means"], d["prec_chol"], d["log_weights"], d["offset"])

    def code_weight(self) -> float:
        """Weight of the code term against the reconstruction score (``CODE_WEIGHT`` when
        fitted; L / F, the L code units counted as features among the F, for files written
        before it was kept)."""
        weight = getattr(self, "code_weight_", None)
        return self.code_density_["means"].shape[-1] / self.n_features_ if weight is None else float(weight)

    def _loss_fn(self):
        if entry("table", self.model).family == "vae":
            beta = float(self.beta)
            return lambda out, xb: vae_loss(xb, out, beta)
        if self.model == "ensemble":
            trim = float(self.trim)
            return lambda out, xb: trimmed_loss(member_errors(out[1], out[0]), trim)
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
    def _feature_errors(self, xb: torch.Tensor) -> torch.Tensor:
        """Per-feature errors of a batch, ``(members, N, F)`` (one member for ``ae``/``vae``)."""
        return self._errors_and_codes(xb)[0]

    def _errors_and_codes(self, xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``_feature_errors`` and, for the ensemble, its members' bottleneck codes
        ``(members, N, L)`` from the same pass (None for ``ae``/``vae``)."""
        power = 1 if self.score == "l1" else 2
        if self.model != "ensemble":
            return member_errors(xb, self.model_(xb).unsqueeze(0), power), None
        out, codes = self.model_.rebuild_and_codes(xb)
        return member_errors(xb, out, power), codes

    def _own_error_scale(self, own: torch.Tensor, piled: np.ndarray) -> np.ndarray:
        """Typical error (``_typical_error``) of every member on every feature over its own
        rows ``own`` ``(members, K, F)`` (at most the first ``SCALE_ROWS`` of them, a random
        sample as each member's rows are in random order)."""
        self.model_.eval()
        with torch.no_grad():
            own = own[:, :SCALE_ROWS].to(self.device_)
            errors = member_errors(own, self.model_._run(own), 1 if self.score == "l1" else 2).cpu().numpy()
        return _typical_error(errors, axis=1, piled=piled)

    def _error_scale(self, data: np.ndarray, piled: np.ndarray) -> np.ndarray:
        """Typical error of every member on every feature over the rows of ``data``
        ``(members, F)`` (``_typical_error``)."""
        self.model_.eval()
        errors = self._batched(data, lambda xb: self._feature_errors(xb).transpose(0, 1), batch_size=4096)
        return _typical_error(errors, axis=0, piled=piled)

    def _member_scores(self, data: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Every member's score of every row ``(N, members)``: its per-feature errors
        (divided by ``error_scale_`` when standardised) averaged (``mse``) or summed
        (``l1``), then divided by ``member_scale_`` when set."""
        self.model_.eval()
        return self._batched(data, lambda xb: self._per_member(xb).T, batch_size=batch_size)

    def _member_terms(self, xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The two terms of every member's score of a batch, ``(members, N)`` each, before
        they are scaled: its per-feature errors (divided by ``error_scale_`` when standardised)
        averaged (``mse``) or summed (``l1``), and its code's surprise (``_code_surprise``;
        None without the code term)."""
        errors, codes = self._errors_and_codes(xb)
        if self.error_scale_ is not None:
            errors = errors / torch.as_tensor(self.error_scale_, dtype=errors.dtype, device=errors.device).unsqueeze(1)
        recon = errors.mean(2) if self.score == "mse" else errors.sum(2)
        surprise = None if getattr(self, "code_density_", None) is None else self._code_surprise(codes)
        return recon, surprise

    def _per_member(self, xb: torch.Tensor) -> torch.Tensor:
        """The members' scores of a batch ``(members, N)`` (see ``_member_scores``)."""
        per_member, surprise = self._member_terms(xb)
        member = getattr(self, "member_scale_", None)
        if member is not None:
            per_member = per_member / torch.as_tensor(member, dtype=per_member.dtype,
                                                      device=per_member.device).unsqueeze(1)
        if surprise is not None:
            surprise = surprise / torch.as_tensor(self.code_scale_, dtype=per_member.dtype,
                                                  device=per_member.device).unsqueeze(1)
            per_member = per_member + self.code_weight() * surprise
        return per_member

    def _scores(self, data: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        self.model_.eval()

        def per_row(xb):
            per_member = self._per_member(xb)
            return median_of_members(per_member) if self.combine == "median" else per_member.mean(0)

        return self._batched(data, per_row, batch_size=batch_size).astype(np.float64)

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
            out = self.model_(data)
            return (out.mean(0) if self.model == "ensemble" else out).cpu().numpy()

    # --- persistence ------------------------------------------------------------------
    def _fitted_state(self):
        fitted = {"encoder_": self.encoder_.to_dict(), "n_features_": self.n_features_,
                  "history_": self.history_, "best_epoch_": self.best_epoch_,
                  "error_scale_": None if self.error_scale_ is None else self.error_scale_.tolist(),
                  "member_scale_": None if self.member_scale_ is None else self.member_scale_.tolist()}
        tensors = self._network_tensors()
        density = getattr(self, "code_density_", None)
        if density is not None:
            fitted["code_scale_"] = self.code_scale_.tolist()
            fitted["code_weight_"] = self.code_weight()
            tensors.update({f"code_density.{k}": v.contiguous() for k, v in density.items()})
        return fitted, tensors

    def _restore_state(self, fitted, tensors):
        self.encoder_ = TableEncoder.from_dict(fitted["encoder_"])
        self.n_features_ = int(fitted["n_features_"])
        self.n_features_in_ = len(self.encoder_.columns_)
        if self.encoder_.named_:
            self.feature_names_in_ = np.asarray(self.encoder_.columns_, dtype=object)
        self.history_ = fitted["history_"]
        self.best_epoch_ = fitted["best_epoch_"]
        scale = fitted.get("error_scale_")
        self.error_scale_ = None if scale is None else np.asarray(scale, dtype=np.float64)
        member = fitted.get("member_scale_")
        self.member_scale_ = None if member is None else np.asarray(member, dtype=np.float64)
        density = {k[len("code_density."):]: v for k, v in tensors.items() if k.startswith("code_density.")}
        self.code_density_ = density or None  # files written before the code term have none
        if density:
            self.code_scale_ = np.asarray(fitted["code_scale_"], dtype=np.float64)
            self.code_weight_ = fitted.get("code_weight_")  # None: L / F, as such files were fitted
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


def row_range(parts: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The lowest and the highest value of every feature ``(..., 1, F)`` over blocks of rows
    ``(..., K, F)``, the rows along the second-last dimension (every member's own rows
    ``(members, K, F)``, or the rows of one network ``(N, F)``)."""
    return (torch.stack([p.amin(-2, keepdim=True) for p in parts]).amin(0),
            torch.stack([p.amax(-2, keepdim=True) for p in parts]).amax(0))


def piled_features(parts: list[torch.Tensor], lower: torch.Tensor, upper: torch.Tensor) -> np.ndarray:
    """Which features have at least ``PILED_SHARE`` of the rows on their lowest or their
    highest value (a count that is mostly 0, a pixel mostly blank), ``(..., F)``, from
    blocks of rows as in ``row_range`` and their range ``lower``, ``upper``
    (``row_range``'s, or the output bounds set from it)."""
    lower, upper = lower.reshape(parts[0].shape[:-2] + (1, -1)), upper.reshape(parts[0].shape[:-2] + (1, -1))
    rows = sum(p.shape[-2] for p in parts)
    on_lower = torch.zeros(lower.shape, dtype=torch.long)
    on_upper = torch.zeros(upper.shape, dtype=torch.long)
    for p in parts:
        for start in range(0, p.shape[-2], 4096):  # in blocks of rows: a large table is not copied
            block = p[..., start:start + 4096, :]
            on_lower += torch.count_nonzero(block == lower, dim=-2).unsqueeze(-2)
            on_upper += torch.count_nonzero(block == upper, dim=-2).unsqueeze(-2)
    return (torch.maximum(on_lower, on_upper) >= PILED_SHARE * rows).squeeze(-2).numpy()


def _typical_error(errors: np.ndarray, axis: int, piled: np.ndarray | None = None) -> np.ndarray:
    """A feature's typical training error, what its error is divided by: the median of its
    errors along the rows ``axis``; for the ``piled`` features (``piled_features``) the
    larger of the median and the mean, as there the median measures little more than how
    exactly the one value many rows share is rebuilt, and so would give a rare other value
    of that feature an arbitrary, often huge weight. Floored at a millionth of the mean
    error (a feature rebuilt exactly, such as a constant column, would otherwise get an
    infinite weight)."""
    typical = np.median(errors, axis=axis).astype(np.float64)
    if piled is not None:
        typical = np.where(piled, np.maximum(typical, errors.mean(axis=axis, dtype=np.float64)), typical)
    return np.maximum(typical, 1e-6 * float(errors.mean(dtype=np.float64)) + 1e-12)


class MemberBest:
    """Keeps, for every member of a ``TabularEnsemble``, the weights of the epoch with its
    own lowest loss on its own validation rows (called after each epoch by ``fit_model``),
    and puts them back with ``restore``: each member stops where it fitted best, not at the
    epoch best for the members' sum. ``history`` holds the members' mean validation loss
    per epoch, ``best_epoch`` each member's kept epoch."""

    def __init__(self, model: torch.nn.Module, val: torch.Tensor, trim: float):
        """``val``: the validation rows in the layout of ``member_slots``."""
        self.model, self.trim = model, trim
        self.x = slot_rows(val, model.members).to(next(model.parameters()).device)
        self.best = torch.full((model.members,), math.inf)
        self.best_epoch = torch.zeros(model.members, dtype=torch.long)
        self.history: list[float] = []
        self.state = [p.detach().clone() for p in model.parameters()]

    def losses(self) -> torch.Tensor:
        """Every member's validation loss ``(members,)``, trimmed as the training loss is."""
        with torch.no_grad():
            return member_losses(member_errors(self.x, self.model._run(self.x)), self.trim).cpu()

    def __call__(self, epoch: int) -> float:
        """Keep the members that improved; returns their mean validation loss."""
        loss = self.losses()
        self.history.append(float(loss.mean()))
        better = loss < self.best
        if better.any():
            self.best = torch.where(better, loss, self.best)
            self.best_epoch[better] = epoch
            with torch.no_grad():
                for kept, p in zip(self.state, self.model.parameters()):
                    kept.copy_(torch.where(better.view(-1, *[1] * (p.dim() - 1)).to(p.device), p, kept))
        return self.history[-1]

    def restore(self) -> None:
        with torch.no_grad():
            for kept, p in zip(self.state, self.model.parameters()):
                p.copy_(kept)
