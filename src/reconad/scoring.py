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

import torch

RECONSTRUCTION_TERMS = ("l1", "mse", "bce")
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
