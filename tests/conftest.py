import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from reconad import ImageDetector
from reconad.detectors.base import BaseDetector
from reconad.data.samples import load_mnist_01

DATA_DIR = Path(os.environ.get("RECONAD_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small networks: one torch thread is fastest, most of all on a busy machine. A module
    asks for it with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def mnist01():
    return load_mnist_01()


@pytest.fixture(scope="session")
def small_detector(mnist01):
    """A small conv AE trained briefly on 600 bundled MNIST 1s."""
    return ImageDetector(model="conv_ae", width=8, latent_dim=16, epochs=4, batch_size=32,
                         verbose=0, random_state=0).fit(mnist01["train_ones"][:600])


def write_pngs(folder: Path, images: np.ndarray) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, im in enumerate(images):
        p = folder / f"img_{i:04d}.png"
        Image.fromarray(im).save(p)
        paths.append(p)
    return paths


class RowDetector(BaseDetector):
    """A tiny stand-in for a table model: squared distance to the training mean."""

    kind = "table"

    def __init__(self, q: float = 95):
        self.q = q

    def _check(self, X):
        if isinstance(X, pd.DataFrame):
            missing = [c for c in self.feature_names_in_ if c not in X.columns]
            if missing:
                raise ValueError(f"missing columns: {', '.join(missing)}")
            X = X[list(self.feature_names_in_)]
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"expected rows of {self.n_features_in_} values, got shape {X.shape}")
        if not np.isfinite(X).all():
            raise ValueError("rows contain NaN or infinite values")
        return X

    def fit(self, X, y=None):
        self.feature_names_in_ = np.array(list(X.columns))
        self.n_features_in_ = X.shape[1]
        self.mean_ = X.to_numpy(float).mean(0)
        self.history_ = {"train_loss": [1.0, 0.5], "val_loss": [1.1, 0.6]}
        self._set_threshold_from(self.decision_function(X))
        return self

    def decision_function(self, X):
        return ((self._check(X) - self.mean_) ** 2).sum(1)
