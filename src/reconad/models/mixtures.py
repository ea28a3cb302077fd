"""Gaussian mixtures (full covariance) fitted side by side by EM, one per block of samples.

``fit_mixtures`` fits a mixture to each of ``m`` blocks of codes ``(m, n, d)`` in one batched
torch computation: the tabular ensemble fits one to every member's bottleneck codes, and
eight scikit-learn fits cost more in call overhead than the EM steps themselves on tables of
a few thousand rows. The steps are scikit-learn's (``GaussianMixture``, ``covariance_type=
"full"``): k-means++ centres to start from, ``reg_covar`` added to every covariance, the
mean log-likelihood's change against ``tol`` to stop. The result is kept in scikit-learn's
form: weights, means and the Cholesky factors of the precisions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from reconad.scoring.terms import gmm_component_terms

# EM iterations at most, and the change of the mean log-likelihood that stops them (as
# scikit-learn's ``max_iter`` and ``tol``)
MAX_ITER = 30
TOL = 1e-3
# a covariance whose Cholesky factor fails gets its ridge multiplied by 10 this many times,
# then only its diagonal is kept
RIDGE_STEPS = 3


@dataclass
class Mixtures:
    """``m`` mixtures of ``k`` components in ``d`` dimensions: ``weights (m, k)``,
    ``means (m, k, d)``, ``precisions_cholesky (m, k, d, d)`` and the mean log-likelihood of
    each block's own samples ``(m,)``."""
    weights: torch.Tensor
    means: torch.Tensor
    precisions_cholesky: torch.Tensor
    log_likelihood: torch.Tensor


def fit_mixtures(z: torch.Tensor, components: int, seed: int = 0, max_iter: int = MAX_ITER, tol: float = TOL,
                 reg_covar: torch.Tensor | float | None = None) -> Mixtures:
    """A Gaussian mixture of ``components`` full-covariance components for every block of
    samples ``z (m, n, d)`` (computed in float64). ``reg_covar`` (a number or one per block;
    None: a thousandth of each block's mean variance) is added to every covariance's
    diagonal. Block ``i`` starts from k-means++ centres drawn with seed ``seed + i``; a
    component that gets no samples keeps a weight of about 0."""
    if z.dim() != 3 or z.shape[1] < 1 or z.shape[2] < 1:
        raise ValueError(f"need codes shaped (blocks, samples, dims) with at least one sample, got {tuple(z.shape)}")
    if components < 1:
        raise ValueError(f"components must be at least 1, got {components}")
    z = z.detach().to(torch.float64)
    if not torch.isfinite(z).all():
        raise ValueError("the codes hold NaN or infinite values")
    if reg_covar is None:
        reg_covar = 1e-3 * z.var(1, unbiased=False).mean(1) + 1e-9
    ridge = torch.as_tensor(reg_covar, dtype=z.dtype).expand(z.shape[0]).clone()
    resp = _start(z, components, seed)
    weights, means, prec_chol = _m_step(z, resp, ridge)
    previous = torch.full((z.shape[0],), -torch.inf, dtype=z.dtype)
    for _ in range(max_iter):
        resp, log_likelihood = _e_step(z, weights, means, prec_chol)
        weights, means, prec_chol = _m_step(z, resp, ridge)
        if ((log_likelihood - previous).abs() < tol).all():
            break
        previous = log_likelihood
    _, log_likelihood = _e_step(z, weights, means, prec_chol)
    return Mixtures(weights, means, prec_chol, log_likelihood)


def _start(z: torch.Tensor, components: int, seed: int) -> torch.Tensor:
    """Responsibilities ``(m, n, k)`` that give every sample to its nearest k-means++ centre
    (scikit-learn's ``kmeans_plusplus``) of its block."""
    from sklearn.cluster import kmeans_plusplus

    k = min(components, z.shape[1])
    centres = torch.stack([torch.as_tensor(kmeans_plusplus(block.numpy(), k, random_state=seed + i)[0])
                           for i, block in enumerate(z)])
    nearest = torch.cdist(z, centres).argmin(-1)
    return torch.nn.functional.one_hot(nearest, components).to(z.dtype)


def _e_step(z: torch.Tensor, weights: torch.Tensor, means: torch.Tensor,
            prec_chol: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Responsibilities ``(m, n, k)`` and every block's mean log-likelihood ``(m,)``."""
    D, A, M = gmm_component_terms(z, weights, means, prec_chol)
    log_joint = -(D + A + M)
    log_norm = torch.logsumexp(log_joint, -1, keepdim=True)
    return (log_joint - log_norm).exp(), log_norm.squeeze(-1).mean(1)


def _m_step(z: torch.Tensor, resp: torch.Tensor,
            ridge: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weights, means and precision Cholesky factors from the responsibilities. ``ridge``
    ``(m,)`` is raised in place for a block whose covariance cannot be factored."""
    nk = resp.sum(1) + 10 * torch.finfo(z.dtype).eps                            # (m, k)
    means = torch.einsum("mnk,mnd->mkd", resp, z) / nk.unsqueeze(-1)
    diff = z.unsqueeze(1) - means.unsqueeze(2)                                  # (m, k, n, d)
    scatter = (diff * resp.transpose(1, 2).unsqueeze(-1)).transpose(-1, -2) @ diff / nk[..., None, None]
    eye = torch.eye(z.shape[-1], dtype=z.dtype)
    for _ in range(RIDGE_STEPS + 1):
        chol, info = torch.linalg.cholesky_ex(scatter + ridge[:, None, None, None] * eye)
        failed = (info > 0).any(1)
        if not failed.any():
            break
        ridge[failed] *= 10
    else:  # those blocks keep only the variances
        diagonal = torch.diag_embed(torch.diagonal(scatter, dim1=-2, dim2=-1))
        scatter = torch.where(failed[:, None, None, None], diagonal, scatter)
        chol = torch.linalg.cholesky(scatter + ridge[:, None, None, None] * eye)
    prec_chol = torch.linalg.solve_triangular(chol, eye.expand_as(chol), upper=False).transpose(-1, -2)
    return nk / nk.sum(-1, keepdim=True), means, prec_chol
