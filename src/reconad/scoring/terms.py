"""Score terms: per-element errors between an input and its reconstruction, and their
aggregation to one score per sample.

=======  ============================================  =====================================
name     per element                                   per sample
=======  ============================================  =====================================
``l1``   ``|x - x_hat|``                               sum over all elements
``mse``  ``(x - x_hat)**2``                            mean over all elements
``bce``  ``-x log x_hat - (1-x) log(1-x_hat)``         sum over all elements
=======  ============================================  =====================================
"""

from __future__ import annotations

import math

import torch

from reconad.scoring.names import GAUSSIAN_SCORES, RECONSTRUCTION_TERMS

_EPS = 1e-7


def _check(name: str) -> None:
    if name not in RECONSTRUCTION_TERMS:
        raise ValueError(f"unknown score {name!r}; choose one of {', '.join(RECONSTRUCTION_TERMS)}")


def elementwise(x: torch.Tensor, x_hat: torch.Tensor, name: str) -> torch.Tensor:
    """Per-element error of kind ``name``, same shape as ``x``."""
    _check(name)
    if name == "l1":
        return (x - x_hat).abs()
    if name == "mse":
        return (x - x_hat).square()
    p = x_hat.clamp(_EPS, 1 - _EPS)
    return -(x * p.log() + (1 - x) * (1 - p).log())


def per_sample(x: torch.Tensor, x_hat: torch.Tensor, name: str) -> torch.Tensor:
    """One score per sample (first axis)."""
    err = elementwise(x, x_hat, name).flatten(1)
    return err.mean(1) if name == "mse" else err.sum(1)


def pixel_map(x: torch.Tensor, x_hat: torch.Tensor, name: str) -> torch.Tensor:
    """Per-pixel error map ``(N, H, W)`` for images ``(N, C, H, W)``, summed over channels."""
    return elementwise(x, x_hat, name).sum(1)


def loss(x: torch.Tensor, x_hat: torch.Tensor, name: str) -> torch.Tensor:
    """Training loss: the batch mean of the per-element error."""
    return elementwise(x, x_hat, name).mean()


# --- Gaussian score terms (VAE with a Gaussian decoder, GMM) ---------------------------
#
# At z = mu_z the negative ELBO of a VAE with a Gaussian decoder splits into
#   D = sum_j 1/2 (-log s2_zj - 1 + s2_zj + mu_zj^2)      (KL term, per sample)
#   A = sum_i 1/2 log(2 pi s2_xi)                          (log-normaliser, per pixel)
#   M = sum_i 1/2 (mu_xi - x_i)^2 / s2_xi                  (normalised distance, per pixel)
# and the "unregularized" score is M alone. The same split holds for a Gaussian mixture
# with k the most probable component: D = -log w_k, A = 1/2 log((2 pi)^d |S_k|),
# M = 1/2 (x - mu_k)^T S_k^-1 (x - mu_k).

_LOG_2PI = math.log(2 * math.pi)


def kl_term(mu_z: torch.Tensor, log_var_z: torch.Tensor) -> torch.Tensor:
    """D: KL divergence of N(mu_z, exp(log_var_z)) from N(0, I), one value per sample."""
    return 0.5 * (-log_var_z - 1 + log_var_z.exp() + mu_z.square()).flatten(1).sum(1)


def log_normalizer(log_var_x: torch.Tensor) -> torch.Tensor:
    """A per element: 1/2 log(2 pi sigma_x^2)."""
    return 0.5 * (_LOG_2PI + log_var_x)


def normalized_distance(x: torch.Tensor, mu_x: torch.Tensor, log_var_x: torch.Tensor) -> torch.Tensor:
    """M per element: 1/2 (mu_x - x)^2 / sigma_x^2."""
    return 0.5 * (x - mu_x).square() * (-log_var_x).exp()


def combine_gaussian(name: str, D: torch.Tensor, A: torch.Tensor, M: torch.Tensor,
                     recon: torch.Tensor | None = None, beta: float = 1.0) -> torch.Tensor:
    """One score per sample from the terms (each per sample): ``unregularized`` = M,
    ``elbo`` = D + A + M, ``kl`` = D, ``log_norm`` = A, ``recon_kl`` = recon + beta * D."""
    if name == "unregularized":
        return M
    if name == "elbo":
        return D + A + M
    if name == "kl":
        return D
    if name == "log_norm":
        return A
    if name == "recon_kl":
        if recon is None:
            raise ValueError("score 'recon_kl' needs a reconstruction error")
        return recon + beta * D
    raise ValueError(f"unknown score {name!r}; choose one of {', '.join(GAUSSIAN_SCORES)}")


def gaussian_terms(x: torch.Tensor, mu_x: torch.Tensor, log_var_x: torch.Tensor | None,
                   mu_z: torch.Tensor, log_var_z: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-element ``A``, ``M`` and ``recon`` (squared error) maps and the per-sample ``D``.
    ``log_var_x=None`` means a Bernoulli decoder: M is the binary cross-entropy, A is 0,
    ``recon`` is the binary cross-entropy too."""
    if log_var_x is None:
        M = elementwise(x, mu_x, "bce")
        A = torch.zeros_like(M)
        recon = M
    else:
        M = normalized_distance(x, mu_x, log_var_x)
        A = log_normalizer(log_var_x)
        recon = (x - mu_x).square()
    return {"D": kl_term(mu_z, log_var_z), "A": A, "M": M, "recon": recon}


# the terms each score adds up (the others are not computed when scoring)
_TERMS = {"unregularized": "M", "elbo": "DAM", "kl": "D", "log_norm": "A", "recon_kl": "RD"}


def vae_per_sample(x, mu_x, log_var_x, mu_z, log_var_z, name: str, beta: float = 1.0) -> torch.Tensor:
    """One score per sample for a VAE's output (see ``combine_gaussian``); only the terms
    that the score needs are computed."""
    need = _TERMS.get(name, "DAMR")
    zero = x.new_zeros(len(x))
    per = lambda t: t.flatten(1).sum(1)  # noqa: E731
    if log_var_x is None:  # Bernoulli decoder: M and the reconstruction error are the BCE
        M = per(elementwise(x, mu_x, "bce")) if set(need) & set("MR") else zero
        A, recon = zero, M
    else:
        M = per(normalized_distance(x, mu_x, log_var_x)) if "M" in need else zero
        A = per(log_normalizer(log_var_x)) if "A" in need else zero
        recon = per((x - mu_x).square()) if "R" in need else zero
    D = kl_term(mu_z, log_var_z) if "D" in need else zero
    return combine_gaussian(name, D, A, M, recon, beta)


def vae_pixel_map(x, mu_x, log_var_x, mu_z, log_var_z, name: str, beta: float = 1.0) -> torch.Tensor:
    """Per-pixel map ``(N, H, W)`` whose sum over pixels is the per-sample score; the
    per-sample D is spread evenly over the pixels."""
    t = gaussian_terms(x, mu_x, log_var_x, mu_z, log_var_z)
    n_pix = x.shape[-1] * x.shape[-2]
    D = (t["D"] / n_pix)[:, None, None]
    A = t["A"].sum(1)
    return combine_gaussian(name, D, A, t["M"].sum(1), t["recon"].sum(1), beta).expand_as(A)


def gmm_component_terms(X: torch.Tensor, weights: torch.Tensor, means: torch.Tensor,
                        precisions_cholesky: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The terms ``D``, ``A``, ``M`` of every component of a full-covariance Gaussian mixture
    for samples ``X (..., n, d)``, each ``(..., n, K)``: ``-log w_k``, ``1/2 log (2pi)^d |S_k|``
    and ``1/2 (x - mu_k)^T P_k (x - mu_k)``; ``weights (..., K)``, ``means (..., K, d)`` and
    ``precisions_cholesky (..., K, d, d)`` (scikit-learn's ``precisions_cholesky_``:
    P_k = L_k L_k^T). Leading dimensions are mixtures side by side."""
    d = X.shape[-1]
    diff = X.unsqueeze(-3) - means.unsqueeze(-2)                          # (..., K, n, d)
    y = torch.matmul(diff, precisions_cholesky)                           # L_k^T (x - mu_k)
    M_all = 0.5 * y.square().sum(-1).transpose(-1, -2)                    # (..., n, K)
    log_det_prec = torch.log(torch.diagonal(precisions_cholesky, dim1=-2, dim2=-1)).sum(-1)
    # log 2 pi written out, not ``_LOG_2PI``: TorchScript (the exported table graph) takes no globals
    A_all = (0.5 * d * math.log(2 * math.pi) - log_det_prec).unsqueeze(-2).expand_as(M_all)
    D_all = (-torch.log(weights)).unsqueeze(-2).expand_as(M_all)
    return D_all, A_all, M_all


def gmm_terms(X: torch.Tensor, weights: torch.Tensor, means: torch.Tensor,
              precisions_cholesky: torch.Tensor) -> dict[str, torch.Tensor]:
    """Score terms of a full-covariance Gaussian mixture for samples ``X (n, d)``.

    ``precisions_cholesky (K, d, d)`` are the Cholesky factors of the precision matrices
    (scikit-learn's ``precisions_cholesky_``: P_k = L_k L_k^T). Returns per sample ``D``,
    ``A``, ``M`` of the most probable component, its index ``k`` and ``nll``
    (-log sum_k w_k N(x | mu_k, S_k))."""
    D_all, A_all, M_all = gmm_component_terms(X, weights, means, precisions_cholesky)
    neg_joint = D_all + A_all + M_all                                     # -log w_k N(x|k)
    k = neg_joint.argmin(1)
    best = k[:, None]  # the most probable component (TorchScript has no lambdas)
    return {"D": D_all.gather(1, best)[:, 0], "A": A_all.gather(1, best)[:, 0], "M": M_all.gather(1, best)[:, 0],
            "k": k, "nll": -torch.logsumexp(-neg_joint, dim=1)}


def gmm_nll(X: torch.Tensor, weights: torch.Tensor, means: torch.Tensor,
            precisions_cholesky: torch.Tensor) -> torch.Tensor:
    """``-log sum_k w_k N(x | mu_k, S_k)`` of samples ``X (..., n, d)`` under mixtures side by
    side (``gmm_component_terms``), ``(..., n)``."""
    D_all, A_all, M_all = gmm_component_terms(X, weights, means, precisions_cholesky)
    return -torch.logsumexp(-(D_all + A_all + M_all), dim=-1)
