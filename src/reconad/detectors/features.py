"""Fit and score ``ImageDetector``'s feature models on a frozen pretrained backbone.

=================  ==========================================================================
model              what it learns from the normal images' feature vectors
=================  ==========================================================================
``feature_ae``     an autoencoder of 1x1 convolutions; score: squared error per location
``feature_vae``    a VAE with a Gaussian decoder; score: the unregularised term
                   ``M = sum 1/2 (mu - x)^2 / sigma^2`` per location
``feature_knn``    a memory bank (greedy coreset); score: distance to the nearest vector
                   divided by how far apart the normal vectors lie there, where the bank
                   is a coreset of at most a quarter of the vectors (``bank_scale``)
``feature_rd``     reverse distillation: a decoder rebuilds every stage's features from a
                   one-class bottleneck, a code of the surroundings on a coarser grid;
                   score: ``1 - cos`` between each location's features and their rebuild
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
import functools
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from reconad.scoring import features as feature_scoring
from reconad.data.images import image_sequence, image_shapes
from reconad.models.catalogue import entries, entry
from reconad.models.features import (EFFICIENTNET_LITE0, FeaturePyramid, fuse_batchnorm, load_backbone,
                                     sha256_file)
from reconad.models.feature_heads import cosine_distance_map, fold_stages
from reconad.models.memory_bank import PROJECTION_DIM, NearestNeighbours, greedy_coreset
from reconad.persistence import ModelFileError
from reconad.training.loop import fit_model, progress_bar, resolve_device
from reconad.training.threads import cpu_threads

DEFAULT_IMAGE_SIZE = 256

# Settings taken from ``model_kwargs`` (with these defaults).
OPTIONS = {
    "stages": ("s16", "s32"),  # backbone stages by output stride, put on the finest one's grid
                               # (feature_knn and feature_vae: see MODEL_OPTIONS)
    "grid": None,              # the stage whose grid the features are put on (None: the finest)
    "pool": 3,                 # neighbourhood averaging of each stage (1 = none)
    "image_score": "topk",     # "max", "topk" or "top_share" (mean of the highest locations)
    "topk": 10,                # image_score "topk": locations averaged
    "top_share": 0.01,         # image_score "top_share": share of the locations averaged
    "smooth_sigma": 4.0,       # Gaussian smoothing of the anomaly map, in resized pixels
    "memory_size": 10000,      # feature_knn: vectors kept in the memory bank
    "coreset_pool": 100000,    # feature_knn: random vectors the coreset is chosen from
    "coreset_dim": PROJECTION_DIM,  # feature_knn: projected dimensions of the coreset's distances
    "bank_scale": "auto",      # feature_knn: "none": the plain distance; "local": the distance to the
                               # nearest bank vector divided by that vector's spacing (mean distance
                               # to its 3 nearest bank vectors) over the median spacing; "auto":
                               # "local" where the coreset keeps at most LOCAL_SCALE_SHARE of the
                               # vectors it is chosen from, else "none"
    "max_vectors": 100000,     # feature_ae/vae: random training vectors
    "batch_vectors": 1024,     # feature_ae/vae: vectors per training batch
    "extract_batch": 8,        # images per backbone batch
    "contrast": "image",       # "image": each image's grey levels set to one mean and spread; "none"
    "crop": 8,                 # feature_rd: training crops, in locations of the coarsest stage
    "batch_images": 16,        # feature_rd: crops per training batch
}
# Settings in which one model's defaults differ from ``OPTIONS``. feature_knn adds the finer
# stage s8, averaged onto the s16 grid: over the magnetic tiles' real defects and spots and
# scratches planted on the tiles and on three textures, it raises the mean image and pixel
# ROC-AUC and costs at most 0.01 on any one (docs/magnetic_tile_features.md). feature_ae and
# feature_rd keep s16 + s32, where s8 lowered reverse distillation's figures.
MODEL_OPTIONS = {"feature_knn": {"stages": ("s8", "s16", "s32"), "grid": "s16"},
                 # feature_vae with its code score: the finer stage s8 helps as it helps the memory
                 # bank (magnetic tile 0.973 / 0.837 -> 0.977 / 0.833 on cached features; planted
                 # spots and scratches and textures level or better; docs/magnetic_tile_features.md)
                 "feature_vae": {"stages": ("s8", "s16", "s32"), "grid": "s16"}}
CONTRASTS = ("image", "none")
BANK_SCALES = ("auto", "local", "none")
# ``bank_scale="auto"`` divides by the local spacing only where the coreset keeps at most this
# share of the vectors it is chosen from. A coreset that leaves most vectors out spreads over
# them, so a bank vector's distance to its nearest bank vectors says how far apart normal
# vectors lie there; a bank that keeps (nearly) every vector holds each location's overlapping
# neighbours of the same image, and that spacing says nothing about the normal variation (the
# synthetic bricks of the tests, pixel ROC-AUC plain / "local": 0.938 / 0.939 with 8 % of the
# vectors kept, 0.936 / 0.937 with 17 %, 0.932 / 0.927 with 25 %, 0.922 / 0.913 with 50 %,
# 0.922 / 0.858 with 84 %, 0.923 / 0.737 with all of them; docs/magnetic_tile_features.md).
LOCAL_SCALE_SHARE = 0.25
# Grey-level mean and standard deviation every image is given when ``contrast="image"``.
CONTRAST_MEAN, CONTRAST_STD = 0.45, 0.2
HEAD_DEFAULTS = {"latent_dim": 32, "width": 256}
# feature_vae: a wider head; its score M gains most from capacity (magnetic tile image ROC-AUC
# 0.94 at width 256 / latent 32, 0.96 at 512 / 64, same training; docs/magnetic_tile_features.md)
VAE_DEFAULTS = {"latent_dim": 64, "width": 512}
# feature_vae's "code" score (the default) adds to M the distance of the location's code
# (posterior mean) to the nearest of this many training codes, chosen by greedy coreset; each
# term over its median on the held-out vectors (magnetic tile image / pixel ROC-AUC 0.963 / 0.808
# with M alone, 0.973 / 0.837 with the code term; planted spots and scratches 0.788 / 0.824 and
# 0.813 / 0.848; docs/magnetic_tile_features.md)
CODE_BANK_SIZE = 10000
# feature_rd: latent_dim = channels of the bottleneck, width = channels of each stage's encoder
RD_DEFAULTS = {"latent_dim": 256, "width": 64}


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
    opts = {**OPTIONS, **MODEL_OPTIONS.get(det.model, {}), **kw}
    opts["stages"] = tuple(opts["stages"])
    if opts["image_score"] not in feature_scoring.IMAGE_SCORES:
        raise ValueError(f"unknown image_score {opts['image_score']!r}; choose one of "
                         f"{', '.join(feature_scoring.IMAGE_SCORES)}")
    if not 0 < float(opts["top_share"]) <= 1:
        raise ValueError(f"model_kwargs top_share must be in (0, 1], got {opts['top_share']}")
    if opts["grid"] is not None and opts["grid"] not in opts["stages"]:
        raise ValueError(f"model_kwargs grid {opts['grid']!r} must be one of the stages {opts['stages']}")
    if opts["contrast"] not in CONTRASTS:
        raise ValueError(f"unknown contrast {opts['contrast']!r}; choose one of {', '.join(CONTRASTS)}")
    if opts["bank_scale"] not in BANK_SCALES:
        raise ValueError(f"unknown bank_scale {opts['bank_scale']!r}; choose one of {', '.join(BANK_SCALES)}")
    if det.model == "feature_rd":  # the decoder rebuilds the stages finest first
        opts["stages"] = tuple(sorted(opts["stages"], key=lambda st: int(str(st)[1:])))
    for name in ("topk", "pool", "memory_size", "coreset_pool", "coreset_dim", "max_vectors", "batch_vectors",
                 "extract_batch", "crop", "batch_images"):
        if int(opts[name]) < 1:
            raise ValueError(f"model_kwargs {name} must be at least 1, got {opts[name]}")
    return opts


def image_size(det) -> int:
    size = DEFAULT_IMAGE_SIZE if det.image_size is None else det.image_size
    if not isinstance(size, (int, np.integer)) or size < 32:
        raise ValueError(f"image_size (short side in pixels) must be an integer >= 32, got {size!r}")
    return int(size)


def _head_kwargs(det) -> dict:
    defaults = {"feature_rd": RD_DEFAULTS, "feature_vae": VAE_DEFAULTS}.get(det.model, HEAD_DEFAULTS)
    return {k: (getattr(det, k) if getattr(det, k) is not None else v) for k, v in defaults.items()}


# --- features -------------------------------------------------------------------------
def _backbone_name(det):
    return EFFICIENTNET_LITE0 if det.backbone is None else det.backbone


def load_pyramid(det, layout: tuple | None = None) -> FeaturePyramid:
    """Build the frozen feature pyramid; sets ``backbone_file_`` and ``backbone_sha256_``.
    ``layout = (stages, grid)`` overrides the settings' stages and grid (a saved model's own)."""
    opts = options(det)
    stages, grid = (opts["stages"], opts["grid"]) if layout is None else (tuple(layout[0]), layout[1])
    net, path = load_backbone(_backbone_name(det))
    pyramid = FeaturePyramid(fuse_batchnorm(net), stages, pool=int(opts["pool"]), grid=grid)
    det.backbone_file_ = str(path)
    det.backbone_sha256_ = sha256_file(path)
    det.device_ = resolve_device(det.device)
    det.pyramid_ = pyramid.to(det.device_).to(memory_format=torch.channels_last).eval()
    return det.pyramid_


def resized_shape(height: int, width: int, short_side: int) -> tuple[int, int]:
    """Height and width after scaling the short side to ``short_side`` (aspect kept)."""
    s = short_side / min(height, width)
    return max(1, round(height * s)), max(1, round(width * s))


def _shape(a) -> tuple:
    """Shape of an image or feature map; of the finest map for a list of stage maps."""
    return tuple(a[0].shape if isinstance(a, (list, tuple)) else a.shape)


def _by_shape(arrays, shapes: list[tuple] | None = None) -> dict[tuple, list[int]]:
    """Indices of ``arrays`` grouped by shape (``shapes``: theirs, when known without them)."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, shape in enumerate(shapes if shapes is not None else (_shape(a) for a in arrays)):
        groups[tuple(shape)].append(i)
    return groups


def _stack(feats: list, part: list[int], device) -> torch.Tensor | list[torch.Tensor]:
    """A batch of the feature maps ``part`` (a list of stage batches for stage maps)."""
    if isinstance(feats[part[0]], (list, tuple)):
        return [torch.stack([feats[i][k] for i in part]).to(device) for k in range(len(feats[part[0]]))]
    return torch.stack([feats[i] for i in part]).to(device)


def standardise_contrast(x: torch.Tensor) -> torch.Tensor:
    """Images ``(N, C, H, W)`` with each image's values (all channels together) shifted and
    scaled to mean ``CONTRAST_MEAN`` and standard deviation ``CONTRAST_STD``: dark and
    bright, flat and contrasty photos of the same surface then look alike to the backbone."""
    mean = x.mean((1, 2, 3), keepdim=True)
    std = x.std((1, 2, 3), keepdim=True).clamp_min(1e-3)
    return (x - mean) / std * CONTRAST_STD + CONTRAST_MEAN


def extract_features(det, X, on_progress=None) -> tuple[list, list[tuple[int, int]]]:
    """Feature maps ``(C, h, w)`` (float32, CPU) of images ``X`` and their original sizes;
    for ``feature_rd`` a list of the stages' maps per image, finest first.
    Images of the same size go through the backbone together; grayscale images stay one
    channel until they reach the backbone, which sees them repeated as RGB.
    ``on_progress(k, total)`` is called after each batch of ``k`` of the ``total`` images."""
    return _extract(det, image_sequence(X), on_progress)


def _extract(det, images, on_progress=None) -> tuple[list, list[tuple[int, int]]]:
    """``extract_features`` of ``image_sequence``'s images; image files are read and resized one at a
    time, so that a batch holds one image at full size and the others at the backbone's size."""
    pyramid = getattr(det, "pyramid_", None)
    if pyramid is None:
        pyramid = load_pyramid(det)
    opts = options(det)
    size, batch = image_size(det), int(opts["extract_batch"])
    feats: list[torch.Tensor | None] = [None] * len(images)
    with torch.no_grad():
        shapes = image_shapes(images)
        for shape, idx in _by_shape(images, shapes).items():
            target = resized_shape(shape[1], shape[2], size)
            for start in range(0, len(idx), batch):
                part = idx[start:start + batch]
                # each image resized as soon as it is read: one image at full size at a time
                x = torch.empty((len(part), shape[0], *target), device=det.device_)
                for j, i in enumerate(part):
                    image = torch.from_numpy(np.asarray(images[i], dtype=np.float32)).to(det.device_)[None]
                    if image.shape[-2:] != target:
                        image = F.interpolate(image, size=target, mode="bilinear", align_corners=False,
                                              antialias=True)
                    x[j] = image[0]
                    del image
                if opts["contrast"] == "image":
                    x = standardise_contrast(x)
                x = x.expand(-1, 3, -1, -1).contiguous(memory_format=torch.channels_last)
                if det.model == "feature_rd":
                    stages = [m.float().cpu().contiguous() for m in pyramid.stage_maps(x)]
                    for j, i in enumerate(part):
                        feats[i] = [m[j] for m in stages]
                else:
                    out = pyramid(x).float().cpu().contiguous()
                    for i, f in zip(part, out):
                        feats[i] = f
                del x  # before the next batch is read
                if on_progress is not None:
                    on_progress(len(part), len(images))
    return feats, [shape[1:] for shape in shapes]


def _vectors(feats: list[torch.Tensor]) -> torch.Tensor:
    """All locations of all maps as rows ``(M, C)``."""
    return torch.cat([f.flatten(1).T for f in feats])


def _subsample(rows: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    if len(rows) <= n:
        return rows
    return rows[torch.randperm(len(rows), generator=gen)[:n]]


# --- fit ------------------------------------------------------------------------------
def _crop_grid(stage_maps: list[torch.Tensor], crop: int) -> tuple[int, int]:
    """Rows and columns of the coarsest grid where a crop of the stage maps may start."""
    factor = 2 ** (len(stage_maps) - 1)
    hc, wc = stage_maps[-1].shape[-2:]
    hf, wf = stage_maps[0].shape[-2:]
    return min(hc, hf // factor) - crop + 1, min(wc, wf // factor) - crop + 1


def _crops(images: list[list[torch.Tensor]], crop: int, gen: torch.Generator | None) -> torch.Tensor:
    """One crop of ``crop`` x ``crop`` coarsest locations from each image's stage maps (at a
    random place with ``gen``, else the middle), the finer stages folded into channels
    (:func:`~reconad.models.feature_heads.fold_stages`) so that a batch is one tensor on the
    coarsest grid."""
    n = len(images[0])
    out = []
    for maps in images:
        rows, cols = _crop_grid(maps, crop)
        if gen is None:
            y0, x0 = rows // 2, cols // 2
        else:
            y0, x0 = (int(torch.randint(rows, (1,), generator=gen)), int(torch.randint(cols, (1,), generator=gen)))
        out.append(fold_stages([m[None, :, y0 * 2 ** (n - 1 - k):(y0 + crop) * 2 ** (n - 1 - k),
                                     x0 * 2 ** (n - 1 - k):(x0 + crop) * 2 ** (n - 1 - k)]
                                   for k, m in enumerate(maps)])[0])
    return torch.stack(out)


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
    """``loss(output, x)`` of a feature head on vectors shaped ``(N, C, 1, 1)`` (for
    ``feature_rd``: on packed crops of stage maps, ``output`` the maps and their rebuilds)."""
    if model == "feature_rd":
        return lambda out, x: cosine_distance_map(*out).mean()
    if model == "feature_ae":
        return lambda out, x: (out - x).square().mean()

    def vae_loss(out, x):
        mu_x, logvar_x, mu_z, logvar_z = out
        nll = feature_scoring.gaussian_nll(x, mu_x, logvar_x)
        return (nll + feature_scoring.kl_standard_normal(mu_z, logvar_z)).mean() / x.shape[1]

    return vae_loss


# --- scoring --------------------------------------------------------------------------
def bank_scale(setting: str, bank: int, pool: int) -> str:
    """The ``bank_scale`` a bank of ``bank`` vectors chosen from ``pool`` gets: ``"auto"`` is
    ``"local"`` where the bank is at most ``LOCAL_SCALE_SHARE`` of the pool, else ``"none"``."""
    if setting != "auto":
        return setting
    return "local" if bank <= LOCAL_SCALE_SHARE * pool else "none"


def _neighbours(det, name: str = "memory_bank_") -> NearestNeighbours:
    """The nearest-neighbour index of ``det.<name>`` (the memory bank, or ``feature_vae``'s
    code bank), built once per bank."""
    bank = getattr(det, name)
    cache = det.__dict__.setdefault("_neighbours", {})
    index = cache.get(name)
    if index is None or index.bank.data_ptr() != bank.data_ptr():
        index = cache[name] = NearestNeighbours(bank)
    return index


def _vae_terms(det, z: torch.Tensor, batch: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
    """M and the code (posterior mean) of standardised 1x1 rows ``(N, C, 1, 1)``."""
    ms, codes = [], []
    with torch.no_grad():
        for start in range(0, len(z), batch):
            x = z[start:start + batch]
            mu_x, logvar_x, mu_z, _ = det.model_(x)
            ms.append(feature_scoring.unregularised_score(x, mu_x, logvar_x).flatten())
            codes.append(mu_z.flatten(1))
    return torch.cat(ms), torch.cat(codes)


def _fit_code_bank(det, train: torch.Tensor, val: torch.Tensor, opts: dict) -> None:
    """``feature_vae``'s code bank for the ``"code"`` score: ``CODE_BANK_SIZE`` training codes
    chosen by greedy coreset, and the medians of M and of the code distance over the held-out
    rows, which put the two terms on one scale."""
    det.model_.eval()
    _, codes = _vae_terms(det, train)
    keep = greedy_coreset(codes, min(CODE_BANK_SIZE, len(codes)), projection_dim=int(opts["coreset_dim"]),
                          seed=det.random_state)
    det.code_bank_ = codes[keep.to(codes.device)].contiguous()
    m, held_codes = _vae_terms(det, val)
    d = _neighbours(det, "code_bank_").search(held_codes)[0][:, 0].to(m.device)
    det.code_scale_ = torch.stack([m.median(), d.median()]).clamp_min(1e-6).cpu()


def _map_of(det, f: torch.Tensor, score: str) -> torch.Tensor:
    """Score map ``(N, h, w)`` of a batch of feature maps ``(N, C, h, w)`` on the device."""
    if det.model == "feature_rd":
        return cosine_distance_map(f, det.model_(f))
    if det.model == "feature_knn":
        n, c, h, w = f.shape
        d, idx = _neighbours(det).search(f.permute(0, 2, 3, 1).reshape(-1, c))
        d, idx = d[:, 0], idx[:, 0]
        weight = getattr(det, "bank_weight_", None)
        if weight is not None:
            d = d * weight.to(d.device)[idx.to(d.device)]
        return d.view(n, h, w).to(f.device)
    mean = det.feature_mean_.to(f.device).view(1, -1, 1, 1)
    std = det.feature_std_.to(f.device).view(1, -1, 1, 1)
    z = (f - mean) / std
    out = det.model_(z)
    if det.model == "feature_ae":
        return (out - z).square().sum(1) if score == "mse" else (out - z).abs().sum(1)
    mu_x, logvar_x = out[0], out[1]
    if score == "code":
        if getattr(det, "code_bank_", None) is None:
            raise ValueError("score 'code' needs the code bank, which this feature_vae was saved "
                             "without (fitted by an earlier version); fit it again")
        n, _, h, w = z.shape
        m = feature_scoring.unregularised_score(z, mu_x, logvar_x)
        d = _neighbours(det, "code_bank_").search(out[2].permute(0, 2, 3, 1).reshape(n * h * w, -1))[0][:, 0]
        scale = det.code_scale_.to(m.device)
        return m / scale[0] + d.view(n, h, w).to(m.device) / scale[1]
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
        if det.model == "feature_rd":  # a list of stage maps per image
            with torch.no_grad():
                maps = [_map_of(det, _stack(feats, idx[s:s + 32], det.device_), name).cpu().numpy()
                        for s in range(0, len(idx), 32)]
            maps = np.concatenate(maps)
        else:
            maps = det._batched([feats[i] for i in idx], lambda f: _map_of(det, f, name), batch_size=32)
        for i, m in zip(idx, maps):
            out[i] = torch.from_numpy(m)
    return out


def image_scores(det, maps: list[torch.Tensor]) -> np.ndarray:
    opts = options(det)
    return np.array([float(feature_scoring.image_score(m, opts["image_score"], int(opts["topk"]),
                                                       float(opts["top_share"])))
                     for m in maps], dtype=np.float64)


# Scoring shows the progress of the feature extraction (while ``verbose``) from this many images on.
SCORING_PROGRESS_MIN = 100


def _scoring_features(det, X):
    images = image_sequence(X)
    if len(images) < SCORING_PROGRESS_MIN:
        return _extract(det, images)
    with _progress(det, "backbone features") as advance:
        return _extract(det, images, on_progress=advance)


def decision_function(det, X, score: str | None = None) -> np.ndarray:
    det._check_fitted()
    det._score_name(score)
    with cpu_threads(det.device_):
        feats, _ = _scoring_features(det, X)
        return image_scores(det, score_maps(det, feats, score))


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def _location_coords(pixels: int, resized: int, stride: int, locations: int) -> torch.Tensor:
    """For each of ``pixels`` image pixels along one axis, where it falls on the location grid
    of a backbone stage of ``stride`` run on the image resized to ``resized`` pixels, in
    ``grid_sample``'s units (-1 and 1: the first and the last location). The backbone pads its
    convolutions on both sides, so location ``i`` is centred on pixel ``stride * i`` of the
    resized image."""
    p = torch.arange(pixels, dtype=torch.float32)
    u = ((p + 0.5) * resized / pixels - 0.5) / stride
    return 2 * u / max(locations - 1, 1) - 1


def upsample_map(score_map: torch.Tensor, size: tuple[int, int], sigma: float, stride: int,
                 short: int) -> np.ndarray:
    """A location map ``(h, w)`` of a grid of ``stride`` on the image resized to a ``short``
    side, put on the image of ``size`` where the backbone centred each location
    (``_location_coords``, bilinear, the edge extended) and smoothed by a Gaussian of ``sigma``
    pixels (``smooth_map``). Both steps act on rows and columns apart, so the map is
    ``rows @ map @ columns.T`` with one matrix per axis (``_axis_operator``): the same numbers
    as sampling the whole image and smoothing it, at a small part of the cost."""
    (height, width), (h, w) = size, score_map.shape[-2:]
    resized = resized_shape(height, width, short)
    rows = _axis_operator(height, resized[0], stride, h, float(sigma))
    columns = _axis_operator(width, resized[1], stride, w, float(sigma))
    return (rows @ score_map.float().cpu() @ columns.T).numpy()


@functools.lru_cache(maxsize=32)
def _axis_operator(pixels: int, resized: int, stride: int, locations: int, sigma: float) -> torch.Tensor:
    """``(pixels, locations)``: each image pixel's bilinear weights on the locations of one axis
    (``_location_coords``, clamped to the first and last), smoothed along the pixels by a
    Gaussian of ``sigma`` pixels with the edge pixels repeated, as ``smooth_map`` does."""
    u = ((_location_coords(pixels, resized, stride, locations) + 1) / 2 * max(locations - 1, 1))
    u = u.clamp(0, locations - 1)
    op = torch.zeros(pixels, locations)
    if locations == 1:
        op[:, 0] = 1
    else:
        at = torch.arange(pixels)
        lo = u.floor().long().clamp(max=locations - 2)
        op[at, lo] += 1 - (u - lo)
        op[at, lo + 1] += u - lo
    if sigma > 0:
        k = _gaussian_kernel(sigma)
        r = len(k) // 2
        op = F.conv1d(F.pad(op.T[:, None], (r, r), mode="replicate"), k.view(1, 1, -1))[:, 0].T
    return op.contiguous()


def smooth_map(m: torch.Tensor, sigma: float) -> np.ndarray:
    """A map ``(1, 1, H, W)`` smoothed with a Gaussian of ``sigma`` pixels (0 = none), ``(H, W)``."""
    if sigma > 0:
        k = _gaussian_kernel(sigma)
        r = len(k) // 2
        m = F.pad(m, (r, r, r, r), mode="replicate")
        m = F.conv2d(F.conv2d(m, k.view(1, 1, 1, -1)), k.view(1, 1, -1, 1))
    return m[0, 0].numpy()


def image_maps(det, maps: list[torch.Tensor], sizes, sigma: float | None = None) -> np.ndarray | list[np.ndarray]:
    """Location maps (``score_maps``) on their images of ``sizes``, smoothed by ``sigma`` pixels
    at the resized scale (None: the ``smooth_sigma`` option): one ``(N, H, W)`` array, filled map
    by map, when the images share a size, else a list of ``(H, W)`` maps."""
    short = image_size(det)
    sigma = float(options(det)["smooth_sigma"]) if sigma is None else float(sigma)
    sizes = [tuple(hw) for hw in sizes]

    def placed(m, hw):
        return upsample_map(m, hw, sigma * min(hw) / short, det.pyramid_.stride, short)

    if len(set(sizes)) != 1:
        return [placed(m, hw) for m, hw in zip(maps, sizes)]
    out = np.empty((len(sizes), *sizes[0]), dtype=np.float32)  # no list of maps to stack: one copy
    for i, m in enumerate(maps):
        out[i] = placed(m, sizes[i])
    return out


def anomaly_maps_from_features(det, feats, sizes, score: str | None = None) -> list[np.ndarray]:
    return image_maps(det, score_maps(det, feats, score), sizes)


def anomaly_map(det, X, score: str | None = None):
    """Per-pixel maps: ``(N, H, W)`` when the images share a size, else a list of ``(H, W)``."""
    return scores_and_maps(det, X, score)[1]


def scores_and_maps(det, X, score: str | None = None):
    """``decision_function`` and ``anomaly_map`` of ``X`` from one pass through the backbone."""
    det._check_fitted()
    det._score_name(score)
    with cpu_threads(det.device_):
        feats, sizes = _scoring_features(det, X)
        location_maps = score_maps(det, feats, score)
        maps = image_maps(det, location_maps, sizes)
    return image_scores(det, location_maps), maps


# --- reverse distillation -------------------------------------------------------------
def _rd_training_data(det, train: list, held_out: list, opts: dict):
    """The network; the training images' indices (their crops are drawn afresh every epoch)
    and the held-out images' middle crops."""
    channels = [int(m.shape[0]) for m in train[0]]
    smallest = min(min(_crop_grid(m, 1)) for m in train + held_out)
    crop = min(int(opts["crop"]), smallest)
    if crop < 2:
        raise ValueError(f"images too small for feature_rd: the coarsest stage {opts['stages'][-1]} needs at "
                         f"least 2 x 2 locations; raise image_size (now {image_size(det)})")
    det.stage_channels_ = channels
    det.feature_channels_ = sum(channels)
    det.model_ = det._build()
    det._rd_crops = (train, crop)
    return torch.arange(len(train), dtype=torch.float32), _crops(held_out, crop, None)


def _train_reverse_distillation(det, index: torch.Tensor, val: torch.Tensor, opts: dict) -> None:
    """Train the decoder on one random crop of each training image per epoch, loss ``1 - cos``
    averaged over locations and stages; the held-out crops pick the best epoch."""
    train, crop = det.__dict__.pop("_rd_crops")

    def augment(batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return _crops([train[int(i)] for i in batch], crop, gen)

    result = fit_model(det.model_, _loss_fn(det.model), index, val, epochs=det._epochs(),
                       batch_size=int(opts["batch_images"]), lr=det.lr, weight_decay=det.weight_decay,
                       patience=det.patience, device=det.device_, seed=det.random_state, verbose=det.verbose,
                       augment=augment)
    det.history_, det.best_epoch_ = result.history, result.best_epoch


# --- the family ---------------------------------------------------------------------
class Features:
    """``ImageDetector``'s steps for the feature models (see the module docstring)."""

    def check(self, det) -> None:
        _check_settings(det)

    def build(self, det) -> torch.nn.Module:
        shape = det.stage_channels_ if det.model == "feature_rd" else (det.feature_channels_,)
        return entry("image", det.model).build(tuple(shape), **_head_kwargs(det))

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
        det.history_, det.best_epoch_ = {"train_loss": [], "val_loss": []}, -1
        if det.model == "feature_rd":
            return _rd_training_data(det, train, held_out, opts)
        vectors = _vectors(train)
        det.feature_channels_ = int(vectors.shape[1])
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
        if det.model == "feature_rd":
            _train_reverse_distillation(det, train, val, opts)
            return
        if det.model != "feature_knn":
            det._fit_network(train, val, batch_size=int(opts["batch_vectors"]))
            if det.model == "feature_vae":
                _fit_code_bank(det, train, val, opts)
            return
        size = min(int(opts["memory_size"]), len(train))
        with _progress(det, f"memory bank: {size} of {len(train)} vectors", size) as advance:
            keep = greedy_coreset(train, size, projection_dim=int(opts["coreset_dim"]), seed=det.random_state,
                                  on_progress=advance)
        det.memory_bank_ = train[keep.to(train.device)].contiguous()
        det.bank_weight_ = None
        if bank_scale(opts["bank_scale"], size, len(train)) == "local":
            spacing = _neighbours(det).spacing()
            det.bank_weight_ = (spacing.median() / spacing).cpu()

    def loss_fn(self, det):
        return _loss_fn(det.model)

    def held_out_scores(self, det, held_out) -> np.ndarray:
        return image_scores(det, score_maps(det, held_out))

    def decision_function(self, det, X, score: str | None = None) -> np.ndarray:
        return decision_function(det, X, score)

    def anomaly_map(self, det, X, score: str | None, stride: int, sigma: float):
        return anomaly_map(det, X, score)

    def scores_and_maps(self, det, X, score: str | None, stride: int, sigma: float):
        return scores_and_maps(det, X, score)

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
                  "best_epoch_": det.best_epoch_, "stages_": list(det.pyramid_.stages),
                  "grid_": det.pyramid_.grid}
        if det.model == "feature_knn":
            tensors = {"state.memory_bank_": det.memory_bank_}
            if getattr(det, "bank_weight_", None) is not None:
                tensors["state.bank_weight_"] = det.bank_weight_
            return fitted, tensors
        tensors = det._network_tensors()
        if det.model == "feature_rd":
            fitted["stage_channels_"] = list(det.stage_channels_)
            return fitted, tensors
        tensors["state.feature_mean_"] = det.feature_mean_
        tensors["state.feature_std_"] = det.feature_std_
        if getattr(det, "code_bank_", None) is not None:
            tensors["state.code_bank_"] = det.code_bank_
            tensors["state.code_scale_"] = det.code_scale_
        return fitted, tensors

    def restore_state(self, det, fitted: dict, tensors: dict[str, torch.Tensor]) -> None:
        """Rebuild a saved feature model; the backbone must be the very file it was fitted with.
        The stages are the saved model's own; files saved before they were recorded used
        ``OPTIONS`` and the model's settings (without ``MODEL_OPTIONS``, which came later)."""
        if "stages_" in fitted:
            layout = (fitted["stages_"], fitted["grid_"])
        else:
            kw = dict(det.model_kwargs or {})
            layout = (kw.get("stages", OPTIONS["stages"]), kw.get("grid", OPTIONS["grid"]))
        load_pyramid(det, layout)
        if det.backbone_sha256_ != fitted["backbone_sha256_"]:
            raise ModelFileError(
                f"backbone weights {det.backbone_file_} differ from those the model was fitted with "
                f"({Path(fitted['backbone_file_']).name}, sha256 {fitted['backbone_sha256_'][:12]}...)")
        det.feature_channels_ = int(fitted["feature_channels_"])
        det.history_, det.best_epoch_ = fitted["history_"], fitted["best_epoch_"]
        if det.model == "feature_knn":
            det.model_ = None
            det.memory_bank_ = tensors["state.memory_bank_"].to(det.device_)
            det.bank_weight_ = tensors.get("state.bank_weight_")
            return
        if det.model == "feature_rd":
            det.stage_channels_ = [int(c) for c in fitted["stage_channels_"]]
        else:
            det.feature_mean_ = tensors["state.feature_mean_"]
            det.feature_std_ = tensors["state.feature_std_"]
            det.code_bank_ = tensors.get("state.code_bank_")
            det.code_scale_ = tensors.get("state.code_scale_")
            if det.model == "feature_vae" and det.code_bank_ is None and det.score is None:
                det.score = "unregularised"  # saved before the code bank: the score it was fitted for
        det._restore_network(tensors)
