"""Heads that work on a frozen backbone's feature maps, location by location.

Every layer is a 1x1 convolution, so a head rebuilds each feature vector from itself
alone and takes feature maps of any height and width: ``(N, C, H, W)`` in, the same out.
"""

from __future__ import annotations

import torch
from torch import nn


def _mlp(sizes: list[int], last_activation: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Conv2d(a, b, 1))
        if i < len(sizes) - 2 or last_activation:
            layers += [nn.BatchNorm2d(b), nn.ReLU()]
    return nn.Sequential(*layers)


class FeatureAE(nn.Module):
    """Autoencoder of 1x1 convolutions: ``channels -> width -> latent_dim -> width -> channels``."""

    def __init__(self, channels: int, latent_dim: int = 64, width: int = 256):
        super().__init__()
        self.encoder = _mlp([channels, width, latent_dim], last_activation=False)
        self.decoder = _mlp([latent_dim, width, channels], last_activation=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class FeatureVAE(nn.Module):
    """Variational autoencoder of 1x1 convolutions with a Gaussian decoder.

    ``forward`` returns ``(mu_x, logvar_x, mu_z, logvar_z)``: the decoder's mean and
    log-variance per feature, and the posterior's. The latent is sampled in training
    mode and taken at its mean in evaluation mode.
    """

    def __init__(self, channels: int, latent_dim: int = 64, width: int = 256):
        super().__init__()
        self.encoder = _mlp([channels, width], last_activation=True)
        self.to_mu_z = nn.Conv2d(width, latent_dim, 1)
        self.to_logvar_z = nn.Conv2d(width, latent_dim, 1)
        self.decoder = _mlp([latent_dim, width], last_activation=True)
        self.to_mu_x = nn.Conv2d(width, channels, 1)
        self.to_logvar_x = nn.Conv2d(width, channels, 1)

    def forward(self, x: torch.Tensor):
        h = self.encoder(x)
        mu_z, logvar_z = self.to_mu_z(h), self.to_logvar_z(h).clamp(-10, 10)
        z = mu_z + torch.randn_like(mu_z) * (0.5 * logvar_z).exp() if self.training else mu_z
        g = self.decoder(z)
        return self.to_mu_x(g), self.to_logvar_x(g).clamp(-8, 8), mu_z, logvar_z


def build_feature_ae(input_shape, latent_dim: int = 64, width: int = 256) -> FeatureAE:
    """A ``FeatureAE`` for feature vectors of ``input_shape = (channels,)``."""
    return FeatureAE(int(input_shape[0]), latent_dim=latent_dim, width=width)


def build_feature_vae(input_shape, latent_dim: int = 64, width: int = 256) -> FeatureVAE:
    """A ``FeatureVAE`` for feature vectors of ``input_shape = (channels,)``."""
    return FeatureVAE(int(input_shape[0]), latent_dim=latent_dim, width=width)
