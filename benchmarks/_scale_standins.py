"""Stand-in detectors for the scale-out benchmark when reconad has no ``TabularDetector``
or ``SeriesDetector``: small dense autoencoders (random weights, fixed seed) with the same
contract (one score per row; windows of ``window`` steps, one score per time step as the
mean over the windows that cover it). They cost what a small real model costs to score."""

from __future__ import annotations

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view
from torch import nn

from reconad import BaseDetector


def _autoencoder(n_in: int, hidden: int, latent: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, latent), nn.ReLU(),
                         nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, n_in)).eval()


class TableAE(BaseDetector):
    def __init__(self, n_features: int = 16, hidden: int = 32, latent: int = 8, batch_size: int = 65536):
        self.n_features = n_features
        self.hidden = hidden
        self.latent = latent
        self.batch_size = batch_size

    def fit(self, X, y=None):
        self.model_ = _autoencoder(self.n_features, self.hidden, self.latent)
        self.feature_names_in_ = [f"f{i}" for i in range(self.n_features)]
        self._set_threshold_from(self.decision_function(X))
        return self

    def _errors(self, x: np.ndarray) -> np.ndarray:
        out = []
        with torch.no_grad():
            for s in range(0, len(x), self.batch_size):
                xb = torch.from_numpy(np.ascontiguousarray(x[s:s + self.batch_size], dtype=np.float32))
                out.append((self.model_(xb) - xb).square().mean(1).numpy())
        return np.concatenate(out).astype(np.float64)

    def decision_function(self, X):
        return self._errors(np.asarray(X, dtype=np.float32))

    def _fitted_state(self):
        return {"feature_names_in_": self.feature_names_in_}, \
            {f"model.{k}": v for k, v in self.model_.state_dict().items()}

    def _restore_state(self, fitted, tensors):
        self.feature_names_in_ = fitted["feature_names_in_"]
        self.model_ = _autoencoder(self.n_features, self.hidden, self.latent)
        self.model_.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})


class SeriesAE(TableAE):
    def __init__(self, n_features: int = 2, window: int = 60, hidden: int = 16, latent: int = 8,
                 batch_size: int = 8192):
        self.n_features = n_features
        self.window = window
        self.hidden = hidden
        self.latent = latent
        self.batch_size = batch_size

    def fit(self, X, y=None):
        self.model_ = _autoencoder(self.n_features * self.window, self.hidden, self.latent)
        self.feature_names_in_ = [f"f{i}" for i in range(self.n_features)]
        self._set_threshold_from(self.decision_function(X))
        return self

    def decision_function(self, X):
        x = np.ascontiguousarray(np.asarray(X, dtype=np.float32))
        w = self.window
        if len(x) < w:
            raise ValueError(f"series of {len(x)} steps is shorter than the window of {w}")
        windows = sliding_window_view(x, w, axis=0)  # (T - w + 1, F, w), a view
        scores = []
        for s in range(0, len(windows), self.batch_size):
            scores.append(self._errors(windows[s:s + self.batch_size].reshape(-1, self.n_features * w)))
        per_window = np.concatenate(scores)
        total = np.convolve(per_window, np.ones(w))  # step t: windows starting in t-w+1 .. t
        count = np.convolve(np.ones(len(per_window)), np.ones(w))
        return total / count

    def _restore_state(self, fitted, tensors):
        self.feature_names_in_ = fitted["feature_names_in_"]
        self.model_ = _autoencoder(self.n_features * self.window, self.hidden, self.latent)
        self.model_.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
