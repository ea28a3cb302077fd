"""PCA + Gaussian mixture (full covariance) on flattened images or patches.

``PCAGaussianMixture`` is an ``nn.Module`` holding only the fitted numbers as buffers
(PCA mean and axes, mixture weights, means and precision Cholesky factors), so it is saved
and moved to a device like the networks. ``fit_pca_gmm`` fits it with scikit-learn (PCA,
then ``GaussianMixture`` by EM). Its forward pass returns the score terms of
``scoring.gmm_terms``: D, A, M of the most probable component and the NLL.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from reconad.scoring import terms as scoring
from reconad.scoring.names import GMM_SCORES


class PCAGaussianMixture(nn.Module):
    """``pca_components`` (N_h) PCA axes, then ``n_components`` (N_z) full-covariance
    Gaussians."""

    def __init__(self, input_shape, n_components: int = 5, pca_components: int = 32):
        super().__init__()
        d_in = math.prod(input_shape)
        h = min(int(pca_components), d_in)
        k = int(n_components)
        if k < 1 or h < 1:
            raise ValueError(f"n_components and pca_components must be >= 1, got {k} and {h}")
        self.input_shape = tuple(input_shape)
        self.register_buffer("pca_mean", torch.zeros(d_in))
        self.register_buffer("pca_axes", torch.zeros(h, d_in))
        self.register_buffer("weights", torch.full((k,), 1.0 / k))
        self.register_buffer("means", torch.zeros(k, h))
        self.register_buffer("precisions_cholesky", torch.eye(h).repeat(k, 1, 1))

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """PCA features ``(n, N_h)`` of samples ``x``."""
        return (x.flatten(1) - self.pca_mean) @ self.pca_axes.T

    encode = project

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return scoring.gmm_terms(self.project(x), self.weights, self.means, self.precisions_cholesky)


def gmm_score(terms: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """One score per sample from ``PCAGaussianMixture``'s terms."""
    if name == "nll":
        return terms["nll"]
    if name == "recon_kl":
        raise ValueError("score 'recon_kl' is for VAEs; the GMM offers " + ", ".join(GMM_SCORES))
    return scoring.combine_gaussian(name, terms["D"], terms["A"], terms["M"])


def fit_pca_gmm(model: PCAGaussianMixture, X: np.ndarray, random_state: int | None = 0,
                max_iter: int = 200, reg_covar: float = 1e-6) -> PCAGaussianMixture:
    """Fit the PCA and the mixture (EM, scikit-learn) on samples ``X (n, ...)``."""
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

    flat = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    h, k = model.pca_axes.shape[0], model.weights.shape[0]
    if len(flat) <= max(h, k):
        raise ValueError(f"need more than {max(h, k)} training samples for pca_components={h} "
                         f"and n_components={k}, got {len(flat)}")
    pca = PCA(n_components=h, random_state=random_state).fit(flat)
    feats = pca.transform(flat)
    gm = GaussianMixture(n_components=k, covariance_type="full", reg_covar=reg_covar,
                         max_iter=max_iter, random_state=random_state).fit(feats)
    f32 = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    model.pca_mean.copy_(f32(pca.mean_))
    model.pca_axes.copy_(f32(pca.components_))
    model.weights.copy_(f32(gm.weights_))
    model.means.copy_(f32(gm.means_))
    # scikit-learn's precisions_cholesky_[k] = U with P_k = U U^T
    model.precisions_cholesky.copy_(f32(gm.precisions_cholesky_))
    return model


def build_gmm(input_shape, n_components: int = 5, pca_components: int = 32) -> PCAGaussianMixture:
    return PCAGaussianMixture(input_shape, n_components=n_components, pca_components=pca_components)
