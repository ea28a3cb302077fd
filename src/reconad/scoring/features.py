"""Score terms in feature space, per location, and the image score from a map.

The Gaussian terms are those of :mod:`reconad.scoring.terms` (A, M and D of the product-photo
VAE), summed over the feature channels of each location:

=================  ===============================================  ==========================
name               per location (summed over channels)              role
=================  ===============================================  ==========================
``unregularised``  M = ``1/2 (x - mu)^2 / sigma^2``                  anomaly score
``nll``            M + A, A = ``1/2 log(2 pi sigma^2)``             reconstruction term of the loss
``kl``             D = ``KL(N(mu_z, sigma_z^2) || N(0, 1))``        regulariser of the loss
=================  ===============================================  ==========================
"""

from __future__ import annotations

import torch

from reconad.scoring.terms import log_normalizer, normalized_distance

IMAGE_SCORES = ("max", "topk", "top_share")


def squared_error(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """``sum_c (x - x_hat)^2`` per location: ``(N, C, H, W) -> (N, H, W)``."""
    return (x - x_hat).square().sum(1)


def unregularised_score(x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """M per location: ``(N, C, H, W) -> (N, H, W)``."""
    return normalized_distance(x, mu, logvar).sum(1)


def gaussian_nll(x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of ``x`` under ``N(mu, exp(logvar))`` per location: M + A."""
    return (normalized_distance(x, mu, logvar) + log_normalizer(logvar)).sum(1)


def kl_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """D per location: ``KL(N(mu, exp(logvar)) || N(0, I))`` summed over channels."""
    return 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(1)


def image_score(score_map: torch.Tensor, method: str = "topk", k: int = 10, share: float = 0.01) -> torch.Tensor:
    """One score per image from its map ``(H, W)`` or ``(N, H, W)``: the maximum
    (``"max"``), the mean of the ``k`` highest locations (``"topk"``), or the mean of the
    highest ``share`` of the locations, at least one (``"top_share"``: the same part of
    the image whatever its size and the grid of the map)."""
    flat = score_map.flatten(-2)
    if method == "max":
        return flat.max(-1).values
    if method == "topk":
        return flat.topk(min(int(k), flat.shape[-1]), dim=-1).values.mean(-1)
    if method == "top_share":
        n = min(max(1, round(float(share) * flat.shape[-1])), flat.shape[-1])
        return flat.topk(n, dim=-1).values.mean(-1)
    raise ValueError(f"unknown image_score {method!r}; choose one of {', '.join(IMAGE_SCORES)}")
