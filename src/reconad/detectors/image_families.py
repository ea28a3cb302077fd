"""How ``ImageDetector`` fits and scores each family of image models.

``ImageDetector`` keeps the parameters; its catalogue entry's family picks one of these
objects, which supplies the steps of the fit template (``TorchDetector``) and the
scoring: :class:`Reconstruction` (autoencoders, VAEs and the PCA + GMM, on whole images or
in patch mode), :class:`GAN` (AnoGAN, f-AnoGAN) and, in
:mod:`reconad.detectors.features`, the pretrained-feature models. Each method takes the
detector as its first argument and keeps its fitted state on it.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from reconad.data.images import MAX_PIXELS, image_sequence, is_file_input, to_float_array, to_image_list

#: the smallest image side the convolutional models take
MIN_IMAGE_SIDE = 8
from reconad.detectors.torch_template import split_tensors
from reconad.models import gmm, vae
from reconad.models.inference import fast_inference_copy
from reconad.scoring import patches
from reconad.scoring import terms as scoring
from reconad.training.gan import fit_encoder, fit_gan
from reconad.training.memory import check_training_memory, training_bytes

# patches per forward pass when scoring a grid (at least one whole grid row, e.g. 137
# patches for a 640-pixel-wide image at stride 4): convolutional networks run fastest on
# small batches that stay in cache, the GMM's matrix products on large ones
PATCH_BATCH = {"convolutional": 64, "other": 512}


class Reconstruction:
    """Networks that rebuild the image (or patch); the score compares input and output:
    reconstruction terms for autoencoders, Gaussian terms for VAEs, the GMM's terms."""

    # --- settings ---------------------------------------------------------------------
    def check(self, det) -> None:
        """Settings errors before any work."""
        det._score_name()
        det._loss_name()
        if det.patch_size is not None:
            patches.check_patch_settings(int(det.patch_size), det.stride)
            patches.aggregate(np.zeros(1), det.patch_aggregate, det.top_k)  # checks the name

    def build(self, det) -> torch.nn.Module:
        return det._entry().build(det.input_shape_, **det._model_kwargs())

    # --- fit steps --------------------------------------------------------------------
    def samples(self, det, X):
        """Whole images as one array (setting ``input_shape_``), or in patch mode the list
        of images the crops come from."""
        if det.patch_size is not None:
            images = to_image_list(X)
            patches.check_image_sizes(images, int(det.patch_size))
            if images:
                det.input_shape_ = (int(images[0].shape[0]), int(det.patch_size), int(det.patch_size))
            return images
        files = image_sequence(X) if is_file_input(X) else None  # sizes from the headers, nothing decoded
        if files is not None and len(files):
            self.check_memory(det, files.shapes[0], len(files))
        data = to_float_array(X)
        if files is None:
            self.check_memory(det, data.shape[1:], len(data))
        if min(data.shape[2:]) < MIN_IMAGE_SIDE and not det.model.startswith("dense"):
            raise ValueError(f"images of {data.shape[2]}x{data.shape[3]} pixels are too small for model "
                             f"{det.model!r} (at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE}; dense_ae takes any size)")
        det.input_shape_ = tuple(int(v) for v in data.shape[1:])
        return data

    def check_memory(self, det, shape: tuple[int, int, int], n_images: int) -> None:
        """Refuse whole images whose training would not fit in this machine's memory, before
        they are decoded (``reconad.training.memory``)."""
        shape = tuple(int(v) for v in shape)
        needed = training_bytes(lambda: det._entry().build(shape, **det._model_kwargs()), shape,
                                det.batch_size, n_images, self.training_step)
        check_training_memory(
            needed, f"{det.model} on whole images of {shape[1]}x{shape[2]} pixels in batches of {det.batch_size}",
            "train on patches (patch_size, --patch-size, e.g. 64), use an ImageNet feature model "
            "(model 'feature_knn', --model feature_knn), use smaller batches or smaller images")

    @staticmethod
    def training_step(net: torch.nn.Module, x: torch.Tensor):
        """What one training step computes for a batch ``x`` (traced for its memory)."""
        return net(x)

    def training_data(self, det, samples, train_idx, val_idx):
        det.model_ = det._build()
        if det.patch_size is None:
            return split_tensors(samples, train_idx, val_idx)
        p, rng = int(det.patch_size), np.random.default_rng(det.random_state)
        crops = lambda idx: torch.from_numpy(patches.random_crops(  # noqa: E731
            [samples[i] for i in idx], p, int(det.patches_per_image), rng))
        return crops(train_idx), (crops(val_idx) if len(val_idx) else None)

    def train(self, det, train, val) -> None:
        """EM for the GMM, Adam otherwise."""
        if det._family() == "gmm":
            gmm.fit_pca_gmm(det.model_, train.numpy(), random_state=det.random_state)
            det.model_.to(det.device_).eval()
            det.history_ = {"train_loss": [], "val_loss": []}
            det.best_epoch_ = -1
            return
        det._fit_network(train, val)

    def loss_fn(self, det):
        if det._family() == "vae":
            return lambda out, xb: vae.elbo_loss(xb, out)
        name = det._loss_name()
        return lambda out, xb: scoring.loss(xb, out, name)

    def held_out_scores(self, det, held_out) -> np.ndarray:
        if det.patch_size is not None:
            return self.patch_image_scores(det, held_out, det._score_name(), det.stride)
        return self.scores(det, held_out, det._score_name())

    # --- scoring ----------------------------------------------------------------------
    def inference_model(self, det) -> torch.nn.Module:
        """The fitted network as a fast inference copy (``fast_inference_copy``), made
        once and made again when the network or its weights change."""
        det.model_.eval()
        tensors = [*det.model_.parameters(), *det.model_.buffers()]
        versions = tuple(t._version for t in tensors)  # bumped by every in-place update
        cached = getattr(det, "_inference_cache", None)
        if cached is None or cached[0] is not det.model_ or cached[1] != versions:
            det._inference_cache = (det.model_, versions, fast_inference_copy(det.model_))
        return det._inference_cache[2]

    def inference_layout(self, det) -> torch.memory_format:
        """Channels-last for networks with 2-D convolutions (their fast layout), else as is."""
        convolutional = any(t.dim() == 4 for t in det.model_.parameters())
        return torch.channels_last if convolutional else torch.contiguous_format

    def batches(self, det, data: np.ndarray, fn) -> np.ndarray:
        """``fn(x, network(x))`` over ``data`` in batches, with the fast inference copy."""
        model = self.inference_model(det)
        return det._batched(data, lambda xb: fn(xb, model(xb)), layout=self.inference_layout(det))

    def score_fn(self, det, score: str):
        """``f(x, model_output) -> one score per sample`` for this model family."""
        family = det._family()
        if family == "gmm":
            return lambda x, out: gmm.gmm_score(out, score)
        if family == "vae":
            return lambda x, out: scoring.vae_per_sample(x, *out, score, beta=det.beta)
        return lambda x, r: scoring.per_sample(x, r, score)

    def scores(self, det, data: np.ndarray, score: str) -> np.ndarray:
        return self.batches(det, data, self.score_fn(det, score)).astype(np.float64)

    def pixel_limit(self, det) -> int:
        """The most pixels an image file may declare: ``4 * H * W`` for a model of whole
        images of ``H x W`` (a larger image is refused before it is decoded; one a little
        off in size is decoded, cheaply, and refused with its size), else ``MAX_PIXELS``."""
        if det.patch_size is None and hasattr(det, "input_shape_"):
            return 4 * int(det.input_shape_[1]) * int(det.input_shape_[2])
        return MAX_PIXELS

    def check_images(self, det, X) -> np.ndarray:
        det._check_fitted()
        data = to_float_array(X, channels=det.input_shape_[0], max_pixels=self.pixel_limit(det))
        if data.shape[2:] != det.input_shape_[1:]:
            h, w = data.shape[2:]
            raise ValueError(f"images are {h}x{w} but the model was trained on "
                             f"{det.input_shape_[1]}x{det.input_shape_[2]} (height x width)")
        return data

    def check_image_list(self, det, X) -> list[np.ndarray]:
        det._check_fitted()
        images = to_image_list(X, channels=det.input_shape_[0])
        patches.check_image_sizes(images, int(det.patch_size))
        return images

    def patch_grids(self, det, images: list[np.ndarray], score: str, stride: int) -> list[np.ndarray]:
        fn = self.score_fn(det, score)
        # many small patches: batch norm folded, channels-last, small batches (1.5x to 1.8x
        # faster than the training network in batches of 512 for 96x96 patches)
        fast, layout = self.inference_model(det), self.inference_layout(det)
        conv = layout == torch.channels_last
        with torch.no_grad():
            return [patches.grid_scores(im, int(det.patch_size), int(stride), lambda b: fn(b, fast(b)),
                                        batch_size=PATCH_BATCH["convolutional" if conv else "other"],
                                        device=det.device_, channels_last=conv)
                    for im in images]

    def patch_image_scores(self, det, images: list[np.ndarray], score: str, stride: int) -> np.ndarray:
        return self.grid_image_scores(det, self.patch_grids(det, images, score, stride))

    @staticmethod
    def grid_image_scores(det, grids: list[np.ndarray]) -> np.ndarray:
        """Each image's score from its patch grid (``patch_aggregate``)."""
        return np.array([patches.aggregate(g, det.patch_aggregate, det.top_k) for g in grids])

    def decision_function(self, det, X, score: str | None = None) -> np.ndarray:
        name = det._score_name(score)
        if det.patch_size is not None:
            return self.patch_image_scores(det, self.check_image_list(det, X), name, det.stride)
        return self.scores(det, self.check_images(det, X), name)

    def patch_scores(self, det, X, score: str | None, stride: int | None) -> list[np.ndarray]:
        if det.patch_size is None:
            raise ValueError("patch_scores needs patch mode (set patch_size)")
        name = det._score_name(score)
        return self.patch_grids(det, self.check_image_list(det, X), name, stride or det.stride)

    def anomaly_map(self, det, X, score: str | None, stride: int, sigma: float):
        return self.smoothed(self.raw_anomaly_map(det, X, score, stride), sigma)

    def scores_and_maps(self, det, X, score: str | None, stride: int, sigma: float):
        """Scores and maps; in patch mode, with maps at the scoring stride and a score that is
        also the pixel score, from one pass over the patch grid."""
        name = det._score_name(score)
        if det.patch_size is None or int(stride) != int(det.stride) or self.pixel_score(det, score) != name:
            return self.decision_function(det, X, score), self.anomaly_map(det, X, score, stride, sigma)
        images = self.check_image_list(det, X)
        grids = self.patch_grids(det, images, name, int(stride))
        return self.grid_image_scores(det, grids), self.smoothed(self.grid_maps(det, grids, images, int(stride)), sigma)

    @staticmethod
    def grid_maps(det, grids: list[np.ndarray], images: list[np.ndarray], stride: int):
        """Per-pixel maps from patch grids: ``(N, H, W)`` when the images share a size, else a list."""
        maps = [patches.scores_to_map(g, int(det.patch_size), stride, *im.shape[1:]) for g, im in zip(grids, images)]
        return np.stack(maps) if len({m.shape for m in maps}) == 1 else maps

    @staticmethod
    def smoothed(maps, sigma: float):
        """Maps smoothed by a Gaussian of ``sigma`` pixels (mirrored edges); as they are for 0."""
        if float(sigma) == 0:
            return maps
        smooth = [ndimage.gaussian_filter(m, float(sigma)) for m in maps]
        return np.stack(smooth) if isinstance(maps, np.ndarray) else smooth

    def pixel_score(self, det, score: str | None) -> str:
        return det._score_name(score)

    def raw_anomaly_map(self, det, X, score: str | None, stride: int):
        name = self.pixel_score(det, score)
        if det.patch_size is not None:
            images = self.check_image_list(det, X)
            return self.grid_maps(det, self.patch_grids(det, images, name, stride), images, int(stride))
        family = det._family()
        if family == "gmm":
            raise ValueError("a GMM on whole images gives no per-pixel map; use patch mode (patch_size)")
        if family == "vae":
            fn = lambda x, out: scoring.vae_pixel_map(x, *out, name, beta=det.beta)  # noqa: E731
        else:
            fn = lambda x, r: scoring.pixel_map(x, r, name)  # noqa: E731
        return self.batches(det, self.check_images(det, X), fn)

    def encode(self, det, X) -> np.ndarray:
        return self.batches(det, self.check_images(det, X), lambda x, r: det.model_.encode(x))

    def reconstruct(self, det, X) -> np.ndarray:
        if det._family() == "gmm":
            raise ValueError("the GMM does not reconstruct images")
        rec = self.batches(det, self.check_images(det, X), lambda x, r: getattr(r, "mu_x", r))
        rec = rec.transpose(0, 2, 3, 1)
        return rec[..., 0] if rec.shape[-1] == 1 else rec

    # --- persistence ------------------------------------------------------------------
    def fitted_state(self, det):
        fitted = {"input_shape_": list(det.input_shape_), "history_": det.history_,
                  "best_epoch_": det.best_epoch_}
        return fitted, det._network_tensors()

    def restore_state(self, det, fitted, tensors) -> None:
        det.input_shape_ = tuple(fitted["input_shape_"])
        det.history_ = fitted["history_"]
        det.best_epoch_ = fitted["best_epoch_"]
        det._restore_network(tensors)


class GAN(Reconstruction):
    """AnoGAN and f-AnoGAN on whole images: adversarial training (and f-AnoGAN's encoder);
    the ``gan`` score searches or encodes each image's latent code. Reconstruction scores
    and pixel maps compare the image with ``G(z)``."""

    def check(self, det) -> None:
        if det.patch_size is not None:
            raise ValueError(f"model {det.model!r} works on whole images; patch mode (patch_size) "
                             "is for reconstruction models")
        det._score_name()
        det._loss_name()

    @staticmethod
    def training_step(net, x):
        """The discriminator on real and generated images and, for f-AnoGAN, the encoder's
        rebuild (``fit_gan``, ``fit_encoder``)."""
        fake = net.generator(torch.empty((len(x), net.latent_dim)))
        out = [net.discriminator(x), net.discriminator(fake)]
        if net.encoder is not None:
            out.append(net.generator(net.encoder(x)))
        return out

    def train(self, det, train, val) -> None:
        history = fit_gan(det.model_, train, epochs=det._epochs(), batch_size=det.batch_size, lr=det.lr,
                          device=det.device_, seed=det.random_state)
        det.best_epoch_ = det._epochs() - 1
        if det.model == "fanogan":
            result = fit_encoder(det.model_, train, val, epochs=det._epochs(), batch_size=det.batch_size,
                                 lr=det.lr, device=det.device_, seed=det.random_state, verbose=det.verbose)
            history.update(result.history)
            det.best_epoch_ = result.best_epoch
        det.history_ = history

    def scores(self, det, data: np.ndarray, score: str) -> np.ndarray:
        """The ``gan`` score in batches (AnoGAN searches each batch's codes together)."""
        if score != "gan":
            return super().scores(det, data, score)
        det.model_.eval()
        return det._batched(data, det.model_.anomaly_score).astype(np.float64)

    def pixel_score(self, det, score: str | None) -> str:
        name = det._score_name(score)
        return "mse" if name == "gan" else name
