"""A small dense Gaussian VAE for standardised tables (linear output)."""

from __future__ import annotations

import math

import torch
from torch import nn

from reconad.models.registry import register

# Hyper-parameters the tuner may search, as (kind, low, high, log) or ("categorical", choices).
SEARCH_SPACE = {
    "latent_dim": ("int", 2, 32, True),
    "width": ("categorical", [32, 64, 128]),
    "depth": ("int", 1, 3, False),
    "beta": ("float", 0.01, 1.0, True),
}


class TabularVAE(nn.Module):
    """Encoder ``F -> width -> ... -> (mu, logvar)`` of ``latent_dim``; mirrored decoder to a
    linear output. ``forward`` returns the reconstruction of the posterior mean (what a
    score uses); ``forward_train`` returns a sampled reconstruction, ``mu`` and ``logvar``."""

    def __init__(self, input_shape, latent_dim: int = 8, width: int = 64, depth: int = 2):
        super().__init__()
        self.input_shape = tuple(input_shape)
        n_in = math.prod(self.input_shape)
        sizes = [max(width // (2**i), latent_dim) for i in range(depth)]
        enc: list[nn.Module] = [nn.Flatten()]
        prev = n_in
        for h in sizes:
            enc += [nn.Linear(prev, h), nn.ReLU()]
            prev = h
        self.encoder = nn.Sequential(*enc)
        self.to_mu = nn.Linear(prev, latent_dim)
        self.to_logvar = nn.Linear(prev, latent_dim)
        dec: list[nn.Module] = []
        prev = latent_dim
        for h in reversed(sizes):
            dec += [nn.Linear(prev, h), nn.ReLU()]
            prev = h
        dec.append(nn.Linear(prev, n_in))
        self.decoder = nn.Sequential(*dec)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.to_mu(h), self.to_logvar(h).clamp(-10, 10)

    def forward_train(self, x: torch.Tensor):
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return self.decoder(z).reshape(x.shape), mu, logvar

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu, _ = self.encode(x)
        return self.decoder(mu).reshape(x.shape)


def kl_per_sample(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL divergence of N(mu, exp(logvar)) from N(0, 1), summed over the latent axis."""
    return -0.5 * (1 + logvar - mu.square() - logvar.exp()).sum(1)


def vae_loss(model: TabularVAE, x: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """Batch mean of the summed squared error plus ``beta`` times the KL term."""
    x_hat, mu, logvar = model.forward_train(x)
    rec = (x - x_hat).square().flatten(1).sum(1)
    return (rec + beta * kl_per_sample(mu, logvar)).mean()


@register("tabular_vae", default_loss="mse", default_score="mse",
          description="dense Gaussian VAE for tables, linear output (latent_dim, width, depth)")
def build_tabular_vae(input_shape, latent_dim: int = 8, width: int = 64, depth: int = 2) -> TabularVAE:
    return TabularVAE(input_shape, latent_dim=latent_dim, width=width, depth=depth)
