"""Tiny detectors and data for every model of the catalogue (the contract suite and the
data-parallel loss test use them). A model added to the catalogue gets a case here by
default; only sizes that make it fast are set per model."""

from __future__ import annotations

import numpy as np
import pandas as pd

from reconad import ImageDetector, SeriesDetector, TabularDetector
from reconad.models import catalogue

DETECTORS = {"image": ImageDetector, "series": SeriesDetector, "table": TabularDetector}
COMMON = dict(epochs=1, batch_size=8, verbose=0, device="cpu", random_state=0)

# per (kind, name): settings that keep the model tiny (anything else: the model's defaults)
SIZES = {
    ("image", "conv_ae"): dict(latent_dim=4, width=4, depth=2),
    ("image", "dense_ae"): dict(latent_dim=4, width=16, depth=1),
    ("image", "tutorial_cae"): dict(latent_dim=4),
    ("image", "conv_vae"): dict(latent_dim=4, width=4, depth=2),
    ("image", "dense_vae"): dict(latent_dim=4, width=16, depth=1),
    ("image", "paper_vae"): dict(latent_dim=4, width=4),
    ("image", "gmm"): dict(latent_dim=2, model_kwargs={"pca_components": 4}),
    ("image", "anogan"): dict(latent_dim=4, width=16, model_kwargs={"search_steps": 2}),
    ("image", "fanogan"): dict(latent_dim=4, width=16),
    ("image", "feature_ae"): dict(latent_dim=4, width=16, image_size=32),
    ("image", "feature_vae"): dict(latent_dim=4, width=16, image_size=32),
    ("image", "feature_knn"): dict(image_size=32, model_kwargs={"memory_size": 16}),
    ("image", "feature_rd"): dict(latent_dim=8, width=8, image_size=64),
    ("series", "conv_ae"): dict(window=8, width=4),
    ("series", "lstm_ae"): dict(window=8, latent_dim=4, width=8),
    ("series", "lstm_vae"): dict(window=8, latent_dim=4, width=8),
    ("series", "dense_ae"): dict(window=8, latent_dim=4, width=16, depth=1),
    ("table", "ensemble"): dict(latent_dim=2, width=8, members=2),
    ("table", "ae"): dict(latent_dim=2, width=8),
    ("table", "vae"): dict(latent_dim=2, width=8),
}


def cases() -> list[catalogue.ModelEntry]:
    return catalogue.entries()


def case_id(entry: catalogue.ModelEntry) -> str:
    return f"{entry.kind}-{entry.name}"


def detector(entry: catalogue.ModelEntry, **overrides):
    """An unfitted tiny detector for ``entry``."""
    sizes = SIZES.get((entry.kind, entry.name), {})
    return DETECTORS[entry.kind](model=entry.name, **{**COMMON, **sizes, **overrides})


def data(kind: str, seed: int = 0):
    """``(normal, test)`` data of ``kind``: 32x32 grey images with a bright square that
    moves; a 3-sensor series of sines; a numeric table of correlated columns."""
    rng = np.random.default_rng(seed)
    if kind == "image":
        images = rng.uniform(0.0, 0.2, size=(16, 32, 32)).astype(np.float32)
        for i, im in enumerate(images):
            r = 4 + i % 16
            im[r:r + 8, 8:16] = 0.9
        return images[:12], images[12:]
    if kind == "series":
        t = np.arange(120)
        frame = pd.DataFrame({"a": np.sin(t / 5), "b": np.cos(t / 7), "c": 0.1 * rng.normal(size=len(t))})
        return frame.iloc[:80].reset_index(drop=True), frame.iloc[80:].reset_index(drop=True)
    z = rng.normal(size=(70, 2))
    frame = pd.DataFrame({"x": z[:, 0], "y": z[:, 0] + 0.1 * z[:, 1], "w": z[:, 1]})
    return frame.iloc[:60].reset_index(drop=True), frame.iloc[60:].reset_index(drop=True)


def n_scores(kind: str, test) -> int:
    """How many scores ``decision_function`` gives for ``test``: one per image, time step or row."""
    return len(test)
