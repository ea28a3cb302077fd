"""Every model of every kind of data, in one table.

An entry names a model for one kind of data (``"image"``, ``"series"``, ``"table"``), its
family (how the detector trains and scores it), the builder of its network, its default
training loss and score, the scores it offers, the hyper-parameters ``tune`` searches,
and whether it exports and trains data-parallel. Detectors, the command line, ``tune``,
``export``, the service and the README's model tables read it. The same name may mean
different networks for different kinds (``conv_ae`` is 2-D for images, 1-D for series).

Adding a model is one entry below plus its network; code outside ``reconad`` may
``add`` an entry of its own. ``scripts/model_tables.py`` prints the README's tables.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Mapping

from reconad.scoring import names as score_names

if TYPE_CHECKING:
    from torch import nn

KINDS = ("image", "series", "table")
#: the model a detector of each kind trains when none is named
DEFAULT_MODELS = {"image": "conv_ae", "series": "conv_ae", "table": "ensemble"}
_PLURAL = {"image": "images", "series": "series", "table": "tables"}


@dataclass(frozen=True)
class SearchSpace:
    """Hyper-parameter distributions: parameter -> ``("int" | "float", low, high, log)``
    or ``("categorical", [choices])``. Called with an Optuna trial, it returns one
    suggestion per parameter."""

    distributions: Mapping[str, tuple]

    def __post_init__(self):
        for name, dist in self.distributions.items():
            if not isinstance(dist, (tuple, list)) or not dist or dist[0] not in ("int", "float", "categorical"):
                raise ValueError(f"bad search-space entry {name!r}: {dist!r}")

    def __call__(self, trial) -> dict:
        return {name: _suggest(trial, name, dist) for name, dist in self.distributions.items()}


def _suggest(trial, name: str, dist):
    kind = dist[0]
    if kind == "categorical":
        return trial.suggest_categorical(name, list(dist[1]))
    if kind == "int":
        return trial.suggest_int(name, int(dist[1]), int(dist[2]), log=bool(dist[3]))
    return trial.suggest_float(name, float(dist[1]), float(dist[2]), log=bool(dist[3]))


#: searched for every model trained with Adam in mini-batches
ADAM_SPACE = {"lr": ("float", 1e-4, 1e-2, True), "batch_size": ("categorical", [32, 64, 128])}


def _space(**distributions) -> SearchSpace:
    return SearchSpace({**distributions, **ADAM_SPACE})


@dataclass(frozen=True)
class ModelEntry:
    name: str
    kind: str
    family: str  # "reconstruction", "vae", "gmm", "gan", "features"
    builder: Callable[..., nn.Module] | None  # f(input_shape, **kwargs); None: no network
    default_loss: str
    default_score: str
    scores: tuple[str, ...]
    search_space: Callable | None  # optuna trial -> dict of parameters
    exportable: bool
    data_parallel: bool
    description: str
    # training epochs when the detector is given none; None: the detector's own default (the
    # feature heads train on many vectors per image and need far fewer than the pixel models)
    epochs: int | None = None

    def build(self, input_shape: tuple[int, ...], **kwargs) -> nn.Module:
        """The network for inputs of ``input_shape`` (without the batch axis)."""
        if self.builder is None:
            raise ValueError(f"{self.kind} model {self.name!r} has no network to build")
        for key in ("latent_dim", "width", "depth", "n_components", "pca_components"):
            v = kwargs.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"model {self.name!r}: {key} must be a positive integer, got {v!r}")
        if any(int(v) < 1 for v in input_shape):
            raise ValueError(f"model {self.name!r}: input shape {tuple(input_shape)} has an empty axis")
        try:
            return self.builder(tuple(int(v) for v in input_shape), **kwargs)
        except TypeError as exc:
            raise TypeError(f"model {self.name!r}: {exc}") from None


_ENTRIES: dict[tuple[str, str], ModelEntry] = {}


def add(entry: ModelEntry) -> ModelEntry:
    """Put ``entry`` in the catalogue (replacing one of the same kind and name)."""
    if entry.kind not in KINDS:
        raise ValueError(f"unknown kind {entry.kind!r}; choose one of {', '.join(KINDS)}")
    if entry.default_score not in entry.scores:
        raise ValueError(f"model {entry.name!r}: default score {entry.default_score!r} is not one "
                         f"of its scores {entry.scores}")
    _ENTRIES[(entry.kind, entry.name)] = entry
    return entry


def entries(kind: str | None = None) -> list[ModelEntry]:
    """All entries (of ``kind`` when given), in the catalogue's order."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    return [e for e in _ENTRIES.values() if kind is None or e.kind == kind]


def entry(kind: str, name: str) -> ModelEntry:
    """The entry of model ``name`` for ``kind``; ``ValueError`` naming the choices."""
    if (kind, name) not in _ENTRIES:
        choices = names(kind)
        raise ValueError(f"unknown model {name!r} for {_PLURAL[kind]}; choose one of {', '.join(choices)}")
    return _ENTRIES[(kind, name)]


def names(kind: str) -> list[str]:
    """Model names for ``kind``, in the catalogue's order."""
    return [e.name for e in entries(kind)]


def _network(module: str, builder: str, **fixed) -> Callable[..., "nn.Module"]:
    """``reconad.models.<module>.<builder>`` (with ``fixed`` keywords), imported when first
    called: naming the models (the command line's help) does not load torch."""

    def build(input_shape: tuple[int, ...], **kwargs) -> "nn.Module":
        fn = getattr(importlib.import_module(f"reconad.models.{module}"), builder)
        return fn(input_shape, **fixed, **kwargs)

    build.__qualname__ = f"{module}.{builder}"
    return build


# --- the catalogue --------------------------------------------------------------------
_RECON = score_names.RECONSTRUCTION_TERMS
_GAUSS = score_names.GAUSSIAN_SCORES
_IMAGE_CONV = dict(latent_dim=("int", 8, 128, True), width=("categorical", [16, 32, 64]),
                   depth=("int", 2, 3, False))
_DENSE = dict(latent_dim=("int", 2, 64, True), width=("categorical", [32, 64, 128, 256]),
              depth=("int", 1, 3, False))
_LSTM = dict(latent_dim=("int", 4, 64, True), width=("categorical", [32, 64, 128]),
             depth=("int", 1, 2, False))
_TABLE = dict(latent_dim=("int", 2, 32, True), width=("categorical", [32, 64, 128]),
              depth=("int", 1, 3, False))
_HEAD = dict(latent_dim=("int", 8, 64, True), width=("categorical", [128, 256, 512]),
             lr=ADAM_SPACE["lr"])
# GANs: not lam, which changes the scale of the score, so the unlabelled objective cannot compare it
_GAN = dict(latent_dim=("int", 8, 128, True), width=("categorical", [128, 256, 512]))

for _e in [
    # images
    ModelEntry("conv_ae", "image", "reconstruction", _network("conv", "build_conv_ae"), "mse", "mse", _RECON,
               _space(**_IMAGE_CONV), True, True,
               "convolutional autoencoder with a dense bottleneck (latent_dim, width, depth)"),
    ModelEntry("dense_ae", "image", "reconstruction", _network("dense", "build_dense_ae"), "mse", "mse", _RECON,
               _space(**_DENSE), True, True,
               "dense autoencoder on flattened pixels (latent_dim, width, depth)"),
    ModelEntry("tutorial_cae", "image", "reconstruction", _network("conv", "build_tutorial_cae"), "bce", "l1", _RECON,
               _space(latent_dim=("int", 8, 128, True)), True, True,
               "the classic tutorial CAE: Conv 128, Conv 64, Dense 1024-64-32, BCE loss"),
    ModelEntry("conv_vae", "image", "vae", _network("vae", "build_conv_vae"), "elbo", "unregularized", _GAUSS,
               _space(**_IMAGE_CONV), True, True,
               "convolutional VAE, Gaussian (mu_x, sigma_x) or Bernoulli decoder (latent_dim, width, depth)"),
    ModelEntry("dense_vae", "image", "vae", _network("vae", "build_dense_vae"), "elbo", "unregularized", _GAUSS,
               _space(**_DENSE), True, True,
               "dense VAE on flattened pixels, Gaussian or Bernoulli decoder (latent_dim, width, depth)"),
    ModelEntry("paper_vae", "image", "vae", _network("vae", "build_paper_vae"), "elbo", "unregularized", _GAUSS,
               _space(latent_dim=("int", 4, 64, True), width=("categorical", [16, 32, 64])), True, True,
               "the unregularized-score paper's VAE: 5 convs 4x4 stride 2, channels N_c*2^(n-1), BN, "
               "ReLU, dense to 2*N_z, mirrored decoder (latent_dim=N_z, width=N_c)"),
    ModelEntry("gmm", "image", "gmm", _network("gmm", "build_gmm"), "em", "unregularized", score_names.GMM_SCORES,
               SearchSpace({"latent_dim": ("int", 1, 10, False),
                            "pca_components": ("categorical", [8, 16, 32])}), True, False,
               "PCA (pca_components = N_h) + Gaussian mixture with full covariance "
               "(n_components = N_z, also set by latent_dim), fitted by EM"),
    ModelEntry("anogan", "image", "gan", _network("gan", "build_anogan"), "adversarial", "gan", ("gan", *_RECON),
               _space(**_GAN), False, False,
               "GAN; latent search by gradient descent at test time (latent_dim, width, lam, "
               "search_steps, search_lr)"),
    ModelEntry("fanogan", "image", "gan", _network("gan", "build_fanogan"), "adversarial", "gan", ("gan", *_RECON),
               _space(**_GAN), True, False,
               "GAN with an encoder (izi_f), no search at test time (latent_dim, width, lam)"),
    ModelEntry("feature_ae", "image", "features", _network("feature_heads", "build_feature_ae"), "mse", "mse", ("mse", "l1"),
               SearchSpace(_HEAD), False, True,
               "autoencoder of 1x1 convolutions on the features of a frozen pretrained backbone; "
               "score: squared error per location (latent_dim, width)", epochs=5),
    ModelEntry("feature_vae", "image", "features", _network("feature_heads", "build_feature_vae"), "elbo", "code",
               ("code", "unregularised", "nll", "mse"), SearchSpace(_HEAD), False, True,
               "VAE with a Gaussian decoder on backbone features; score: the unregularised term M "
               "plus the code's distance to the nearest training code, per location (latent_dim, width)",
               epochs=20),
    ModelEntry("feature_knn", "image", "features", None, "coreset", "distance", ("distance",),
               SearchSpace({"pool": ("categorical", [1, 3, 5])}), False, False,
               "memory bank of backbone feature vectors (greedy coreset); score: distance to the "
               "nearest vector"),
    ModelEntry("feature_rd", "image", "features", _network("feature_heads", "build_feature_rd"), "cosine", "cosine", ("cosine",),
               SearchSpace({"latent_dim": ("categorical", [128, 256, 512]), "width": ("categorical", [32, 64, 128]),
                            "lr": ADAM_SPACE["lr"]}), False, False,
               "reverse distillation: a decoder rebuilds the backbone's stages from a one-class bottleneck "
               "(a code of each location's surroundings); score: 1 - cos per location (latent_dim, width)",
               epochs=10),
    # series windows (window, sensors)
    ModelEntry("conv_ae", "series", "reconstruction", _network("conv1d", "build_conv1d_ae"), "mse", "mae", ("mae", "mse"),
               _space(width=("categorical", [16, 32, 64]), depth=("int", 1, 2, False)), True, True,
               "1-D convolutional autoencoder over time (width, depth, kernel_size, latent_dim)"),
    ModelEntry("lstm_ae", "series", "reconstruction", _network("recurrent", "build_lstm_ae"), "mse", "mae", ("mae", "mse"),
               _space(**_LSTM), True, True,
               "LSTM encoder -> latent -> LSTM decoder (latent_dim, width, depth)"),
    ModelEntry("lstm_vae", "series", "vae", _network("recurrent", "build_lstm_vae"), "mse", "mae", ("mae", "mse"),
               _space(**_LSTM, beta=("float", 0.01, 1.0, True)), True, True,
               "variational LSTM autoencoder, trained on the error plus beta * KL "
               "(latent_dim, width, depth, beta)"),
    ModelEntry("dense_ae", "series", "reconstruction",
               _network("dense", "build_dense_ae", output="linear"), "mse", "mae", ("mae", "mse"),
               _space(**_DENSE), True, True,
               "dense autoencoder on flattened windows (latent_dim, width, depth)"),
    # tables (rows of scaled, encoded features)
    ModelEntry("ensemble", "table", "reconstruction", _network("tabular", "build_tabular_ensemble"), "mse", "mse",
               ("mse", "l1"), _space(**_TABLE, members=("int", 2, 16, False)), True, True,
               "small dense autoencoders trained side by side as one batched network, each on its own "
               "half of the rows, output bounded to the training range, plus each member's code term "
               "(negative log-density of its bottleneck code under a Gaussian mixture, code_components), "
               "median of their scores (latent_dim, width, depth, members, bounded)"),
    ModelEntry("ae", "table", "reconstruction", _network("tabular", "build_tabular_ae"), "mse", "mse", ("mse", "l1"),
               _space(**_TABLE), True, True,
               "dense autoencoder, output bounded to the training range (latent_dim, width, depth, bounded)"),
    ModelEntry("vae", "table", "vae", _network("tabular", "build_tabular_vae"), "elbo", "mse", ("mse", "l1"),
               _space(**_TABLE, beta=("float", 0.01, 1.0, True)), True, True,
               "dense Gaussian VAE, trained on the squared error plus beta * KL, scored on the "
               "reconstruction of the posterior mean (latent_dim, width, depth, bounded, beta)"),
]:
    add(_e)
del _e


# --- the README's tables --------------------------------------------------------------
def markdown(kind: str) -> str:
    """The table of ``kind``'s models as Markdown."""
    yes = {True: "yes", False: "no"}
    rows = ["| model | family | default score | scores | export | data-parallel | what it is |",
            "|---|---|---|---|---|---|---|"]
    for e in entries(kind):
        rows.append(f"| `{e.name}` | {e.family} | `{e.default_score}` | "
                    f"{', '.join(f'`{s}`' for s in e.scores)} | {yes[e.exportable]} | "
                    f"{yes[e.data_parallel]} | {e.description} |")
    return "\n".join(rows)

