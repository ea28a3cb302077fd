"""Fit and score ``ImageDetector``'s feature models on a frozen pretrained backbone.

=================  ==========================================================================
model              what it learns from the normal images' feature vectors
=================  ==========================================================================
``feature_ae``     an autoencoder of 1x1 convolutions; score: squared error per location
``feature_vae``    a VAE with a Gaussian decoder; score: the unregularised term
                   ``M = sum 1/2 (mu - x)^2 / sigma^2`` per location
``feature_knn``    a memory bank (greedy coreset); score: distance to the nearest vector
=================  ==========================================================================

Each image keeps its aspect ratio: it is resized so that its short side is
``image_size`` pixels, its grey levels are set to one mean and spread (``contrast``, see
:func:`standardise_contrast`), the backbone turns it into a feature map (several stages on one
grid, see :class:`reconad.models.features.FeaturePyramid`), the head scores every
location, the image score is the maximum or the mean of the ``topk`` highest locations,
and the anomaly map is the location map resized to the image and smoothed.

The functions here take the ``ImageDetector`` and set its fitted attributes;
:class:`Features` gives the detector its fit steps and scoring for the catalogue's
``features`` family.
"""

from __future__ import annotations

import contextlib
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from reconad.scoring import features as feature_scoring
from reconad.data.images import to_image_list
from reconad.models.catalogue import entries, entry
from reconad.models.features import (EFFICIENTNET_LITE0, FeaturePyramid, fuse_batchnorm, load_backbone,
                                     sha256_file)
from reconad.models.memory_bank import greedy_coreset, nearest_distance
from reconad.persistence import ModelFileError
from reconad.training.loop import progress_bar, resolve_device

DEFAULT_IMAGE_SIZE = 256

# Settings taken from ``model_kwargs`` (with these defaults).
OPTIONS = {
    "stages": ("s16", "s32"),  # backbone stages by output stride, put on the finest one's grid
    "pool": 3,                 # neighbourhood averaging of each stage (1 = none)
    "image_score": "topk",     # "max" or "topk" (mean of the topk highest locations)
    "topk": 10,
    "smooth_sigma": 4.0,       # Gaussian smoothing of the anomaly map, in resized pixels
    "memory_size": 10000,      # feature_knn: vectors kept in the memory bank
    "coreset_pool": 100000,    # feature_knn: random vectors the coreset is chosen from
    "max_vectors": 100000,     # feature_ae/vae: random training vectors
    "batch_vectors": 4096,     # feature_ae/vae: vectors per training batch
    "extract_batch": 8,        # images per backbone batch
    "contrast": "image",       # "image": each image's grey levels set to one mean and spread; "none"
}
CONTRASTS = ("image", "none")
# Grey-level mean and standard deviation every image is given when ``contrast="image"``.
CONTRAST_MEAN, CONTRAST_STD = 0.45, 0.2
HEAD_DEFAULTS = {"latent_dim": 32, "width": 256}


def is_feature_model(name: str) -> bool:
    return any(e.name == name and e.family == "features" for e in entries("image"))


# --- settings -------------------------------------------------------------------------
def options(det) -> dict:
    """``OPTIONS`` updated from ``det.model_kwargs``; unknown keys are an error."""
    kw = dict(det.model_kwargs or {})
    unknown = sorted(set(kw) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown model_kwargs {unknown} for model {det.model!r}; "
                         f"known: {', '.join(OPTIONS)}")
    opts = {**OPTIONS, **kw}
    opts["stages"] = tuple(opts["stages"])
    if opts["image_score"] not in feature_scoring.IMAGE_SCORES:
        raise ValueError(f"unknown image_score {opts['image_score']!r}; choose one of "
                         f"{', '.join(feature_scoring.IMAGE_SCORES)}")
    if opts["contrast"] not in CONTRASTS:
        raise ValueError(f"unknown contrast {opts['contrast']!r}; choose one of {', '.join(CONTRASTS)}")
    for name in ("topk", "pool", "memory_size", "coreset_pool", "max_vectors", "batch_vectors", "extract_batch"):
        if int(opts[name]) < 1:
            raise ValueError(f"model_kwargs {name} must be at least 1, got {opts[name]}")
    return opts


def image_size(det) -> int:
    size = DEFAULT_IMAGE_SIZE if det.image_size is None else det.image_size
    if not isinstance(size, (int, np.integer)) or size < 32:
        raise ValueError(f"image_size (short side in pixels) must be an integer >= 32, got {size!r}")
    return int(size)


def _head_kwargs(det) -> dict:
    return {k: (getattr(det, k) if getattr(det, k) is not None else v) for k, v in HEAD_DEFAULTS.items()}


# --- features -------------------------------------------------------------------------
def _backbone_name(det):
    return EFFICIENTNET_LITE0 if det.backbone is None else det.backbone


def load_pyramid(det) -> FeaturePyramid:
    """Build the frozen feature pyramid; sets ``backbone_file_`` and ``backbone_sha256_``."""
    opts = options(det)
    net, path = load_backbone(_backbone_name(det))
    pyramid = FeaturePyramid(fuse_batchnorm(net), opts["stages"], pool=int(opts["pool"]))
    det.backbone_file_ = str(path)
    det.backbone_sha256_ = sha256_file(path)
    det.device_ = resolve_device(det.device)
    det.pyramid_ = pyramid.to(det.device_).to(memory_format=torch.channels_last).eval()
    return det.pyramid_


def resized_shape(height: int, width: int, short_side: int) -> tuple[int, int]:
    """Height and width after scaling the short side to ``short_side`` (aspect kept)."""
    s = short_side / min(height, width)
    return max(1, round(height * s)), max(1, round(width * s))


def _by_shape(arrays) -> dict[tuple, list[int]]:
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, a in enumerate(arrays):
        groups[tuple(a.shape)].append(i)
    return groups


def standardise_contrast(x: torch.Tensor) -> torch.Tensor:
    """Images ``(N, C, H, W)`` with each image's values (all channels together) shifted and
    scaled to mean ``CONTRAST_MEAN`` and standard deviation ``CONTRAST_STD``: dark and
    bright, flat and contrasty photos of the same surface then look alike to the backbone."""
    mean = x.mean((1, 2, 3), keepdim=True)
    std = x.std((1, 2, 3), keepdim=True).clamp_min(1e-3)
    return (x - mean) / std * CONTRAST_STD + CONTRAST_MEAN


def extract_features(det, X, on_progress=None) -> tuple[list[torch.Tensor], list[tuple[int, int]]]:
    """Feature maps ``(C, h, w)`` (float32, CPU) of images ``X`` and their original sizes.
    Images of the same size go through the backbone together; grayscale images stay one
    channel until they reach the backbone, which sees them repeated as RGB.
    ``on_progress(k, total)`` is called after each batch of ``k`` of the ``total`` images."""
    images = to_image_list(X)
    pyramid = getattr(det, "pyramid_", None)
    if pyramid is None:
        pyramid = load_pyramid(det)
    opts = options(det)
    size, batch = image_size(det), int(opts["extract_batch"])
    feats: list[torch.Tensor | None] = [None] * len(images)
    with torch.no_grad():
        for shape, idx in _by_shape(images).items():
            target = resized_shape(shape[1], shape[2], size)
            for start in range(0, len(idx), batch):
                part = idx[start:start + batch]
                x = torch.from_numpy(np.stack([images[i] for i in part])).to(det.device_)
                if x.shape[-2:] != target:
                    x = F.interpolate(x, size=target, mode="bilinear", align_corners=False, antialias=True)
                if opts["contrast"] == "image":
                    x = standardise_contrast(x)
                x = x.expand(-1, 3, -1, -1).contiguous(memory_format=torch.channels_last)
                out = pyramid(x).float().cpu().contiguous()
                for i, f in zip(part, out):
                    feats[i] = f
                if on_progress is not None:
                    on_progress(len(part), len(images))
    return feats, [im.shape[1:] for im in images]


def _vectors(feats: list[torch.Tensor]) -> torch.Tensor:
    """All locations of all maps as rows ``(M, C)``."""
    return torch.cat([f.flatten(1).T for f in feats])


def _subsample(rows: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    if len(rows) <= n:
        return rows
    return rows[torch.randperm(len(rows), generator=gen)[:n]]


# --- fit ------------------------------------------------------------------------------
def fit_features(det, feats: list[torch.Tensor]):
    """Fit the head on feature maps from :func:`extract_features` (lets callers extract
    once and compare heads); returns ``det``."""
    _check_settings(det)
    return det._fit_samples(feats)


@contextlib.contextmanager
def _progress(det, label: str, total: int | None = None):
    """``advance(k, total=None)`` for a progress bar shown while ``det.verbose`` (a no-op
    otherwise)."""
    bar = progress_bar(det.verbose, label)
    if bar is None:
        yield lambda k, total=None: None
        return
    task = bar.add_task(label, total=total, info="")
    with bar:
        yield lambda k, total=None: bar.update(task, advance=k, **({"total": total} if total else {}))


def _check_settings(det) -> None:
    if not is_feature_model(det.model):
        names = [e.name for e in entries("image") if e.family == "features"]
        raise ValueError(f"{det.model!r} is not a feature model ({', '.join(names)})")
    options(det)
    image_size(det)
    det._score_name()


def _standardise(det, rows: torch.Tensor) -> torch.Tensor:
    return (rows - det.feature_mean_) / det.feature_std_


def _loss_fn(model: str):
    """``loss(output, x)`` of a feature head on vectors shaped ``(N, C, 1, 1)``."""
    if model == "feature_ae":
        return lambda out, x: (out - x).square().mean()

    def vae_loss(out, x):
        mu_x, logvar_x, mu_z, logvar_z = out
        nll = feature_scoring.gaussian_nll(x, mu_x, logvar_x)
        return (nll + feature_scoring.kl_standard_normal(mu_z, logvar_z)).mean() / x.shape[1]

    return vae_loss


# --- scoring --------------------------------------------------------------------------
def _map_of(det, f: torch.Tensor, score: str) -> torch.Tensor:
    """Score map ``(N, h, w)`` of a batch of feature maps ``(N, C, h, w)`` on the device."""
    if det.model == "feature_knn":
        n, c, h, w = f.shape
        d = nearest_distance(f.permute(0, 2, 3, 1).reshape(-1, c), det.memory_bank_)
        return d.view(n, h, w)
    mean = det.feature_mean_.to(f.device).view(1, -1, 1, 1)
    std = det.feature_std_.to(f.device).view(1, -1, 1, 1)
    z = (f - mean) / std
    out = det.model_(z)
    if det.model == "feature_ae":
        return (out - z).square().sum(1) if score == "mse" else (out - z).abs().sum(1)
    mu_x, logvar_x = out[0], out[1]
    if score == "unregularised":
        return feature_scoring.unregularised_score(z, mu_x, logvar_x)
    if score == "nll":
        return feature_scoring.gaussian_nll(z, mu_x, logvar_x)
    return feature_scoring.squared_error(z, mu_x)


def score_maps(det, feats: list[torch.Tensor], score: str | None = None) -> list[torch.Tensor]:
    """Per-location score maps ``(h, w)`` (CPU) of feature maps ``(C, h, w)``."""
    name = det._score_name(score)
    if det.model_ is not None:
        det.model_.to(det.device_).eval()
    if det.model == "feature_knn":
        det.memory_bank_ = det.memory_bank_.to(det.device_)
    out: list[torch.Tensor | None] = [None] * len(feats)
    for _, idx in _by_shape(feats).items():
        maps = det._batched([feats[i] for i in idx], lambda f: _map_of(det, f, name), batch_size=32)
        for i, m in zip(idx, maps):
            out[i] = torch.from_numpy(m)
    return out


def image_scores(det, maps: list[torch.Tensor]) -> np.ndarray:
    opts = options(det)
    return np.array([float(feature_scoring.image_score(m, opts["image_score"], int(opts["topk"])))
                     for m in maps], dtype=np.float64)


def decision_function(det, X, score: str | None = None) -> np.ndarray:
    det._check_fitted()
    det._score_name(score)
    feats, _ = extract_features(det, X)
    return image_scores(det, score_maps(det, feats, score))


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def upsample_map(score_map: torch.Tensor, size: tuple[int, int], sigma: float) -> np.ndarray:
    """A location map ``(h, w)`` resized to the image ``size`` and smoothed with a
    Gaussian of ``sigma`` pixels (0 = none)."""
    m = F.interpolate(score_map[None, None], size=tuple(size), mode="bilinear", align_corners=False)
    if sigma > 0:
        k = _gaussian_kernel(sigma)
        r = len(k) // 2
        m = F.pad(m, (r, r, r, r), mode="replicate")
        m = F.conv2d(F.conv2d(m, k.view(1, 1, 1, -1)), k.view(1, 1, -1, 1))
    return m[0, 0].numpy()


def anomaly_maps_from_features(det, feats, sizes, score: str | None = None) -> list[np.ndarray]:
    opts = options(det)
    short = image_size(det)
    maps = score_maps(det, feats, score)
    return [upsample_map(m, hw, float(opts["smooth_sigma"]) * min(hw) / short) for m, hw in zip(maps, sizes)]


def anomaly_map(det, X, score: str | None = None):
    """Per-pixel maps: ``(N, H, W)`` when the images share a size, else a list of ``(H, W)``."""
    det._check_fitted()
    det._score_name(score)
    feats, sizes = extract_features(det, X)
    maps = anomaly_maps_from_features(det, feats, sizes, score)
    return np.stack(maps) if len({m.shape for m in maps}) == 1 else maps


# --- the family ---------------------------------------------------------------------
class Features:
    """``ImageDetector``'s steps for the feature models (see the module docstring)."""

    def check(self, det) -> None:
        _check_settings(det)

    def build(self, det) -> torch.nn.Module:
        return entry("image", det.model).build((det.feature_channels_,), **_head_kwargs(det))

    def samples(self, det, X) -> list[torch.Tensor]:
        load_pyramid(det)
        with _progress(det, "backbone features") as advance:
            feats, _ = extract_features(det, X, on_progress=advance)
        return feats

    def training_data(self, det, feats, train_idx, val_idx):
        """Feature vectors of the training maps: a random pool for the memory bank, or
        standardised rows to train the head on (and validation rows)."""
        opts = options(det)
        gen = torch.Generator().manual_seed(int(det.random_state or 0))
        train = [feats[i] for i in train_idx]
        held_out = [feats[i] for i in val_idx] or train
        vectors = _vectors(train)
        det.feature_channels_ = int(vectors.shape[1])
        det.history_, det.best_epoch_ = {"train_loss": [], "val_loss": []}, -1
        if det.model == "feature_knn":
            det.model_ = None
            return _subsample(vectors, int(opts["coreset_pool"]), gen).to(det.device_), None
        det.feature_mean_ = vectors.mean(0)
        det.feature_std_ = vectors.std(0).clamp_min(1e-6)
        train_rows = _standardise(det, _subsample(vectors, int(opts["max_vectors"]), gen))
        val_rows = _standardise(det, _subsample(_vectors(held_out), max(int(opts["max_vectors"]) // 10, 1), gen))
        det.model_ = det._build()
        return train_rows[:, :, None, None], val_rows[:, :, None, None]  # 1x1 feature maps

    def train(self, det, train, val) -> None:
        opts = options(det)
        if det.model != "feature_knn":
            det._fit_network(train, val, batch_size=int(opts["batch_vectors"]))
            return
        size = min(int(opts["memory_size"]), len(train))
        with _progress(det, f"memory bank: {size} of {len(train)} vectors", size) as advance:
            keep = greedy_coreset(train, size, seed=det.random_state, on_progress=advance)
        det.memory_bank_ = train[keep.to(train.device)].contiguous()

    def loss_fn(self, det):
        return _loss_fn(det.model)

    def held_out_scores(self, det, held_out) -> np.ndarray:
        return image_scores(det, score_maps(det, held_out))

    def decision_function(self, det, X, score: str | None = None) -> np.ndarray:
        return decision_function(det, X, score)

    def anomaly_map(self, det, X, score: str | None, stride: int, sigma: float):
        return anomaly_map(det, X, score)

    def patch_scores(self, det, X, score, stride):
        raise ValueError("patch_scores needs patch mode (set patch_size)")

    def encode(self, det, X):
        raise ValueError(f"model {det.model!r} has no latent code of its own; see extract_features")

    def reconstruct(self, det, X):
        raise ValueError(f"model {det.model!r} rebuilds features, not pixels; use anomaly_map")

    def fitted_state(self, det) -> tuple[dict, dict[str, torch.Tensor]]:
        """Fitted settings and tensors; the backbone's weights are not saved, only its file
        name and checksum."""
        fitted = {"backbone_file_": det.backbone_file_, "backbone_sha256_": det.backbone_sha256_,
                  "feature_channels_": det.feature_channels_, "history_": det.history_,
                  "best_epoch_": det.best_epoch_}
        if det.model == "feature_knn":
            return fitted, {"state.memory_bank_": det.memory_bank_}
        tensors = det._network_tensors()
        tensors["state.feature_mean_"] = det.feature_mean_
        tensors["state.feature_std_"] = det.feature_std_
        return fitted, tensors

    def restore_state(self, det, fitted: dict, tensors: dict[str, torch.Tensor]) -> None:
        """Rebuild a saved feature model; the backbone must be the very file it was fitted with."""
        load_pyramid(det)
        if det.backbone_sha256_ != fitted["backbone_sha256_"]:
            raise ModelFileError(
                f"backbone weights {det.backbone_file_} differ from those the model was fitted with "
                f"({Path(fitted['backbone_file_']).name}, sha256 {fitted['backbone_sha256_'][:12]}...)")
        det.feature_channels_ = int(fitted["feature_channels_"])
        det.history_, det.best_epoch_ = fitted["history_"], fitted["best_epoch_"]
        if det.model == "feature_knn":
            det.model_ = None
            det.memory_bank_ = tensors["state.memory_bank_"].to(det.device_)
            return
        det.feature_mean_ = tensors["state.feature_mean_"]
        det.feature_std_ = tensors["state.feature_std_"]
        det._restore_network(tensors)
