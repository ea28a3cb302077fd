"""GAN networks for AnoGAN and f-AnoGAN: a generator, a discriminator with a feature
layer, and an encoder (f-AnoGAN's izi_f), with their anomaly scores.

Both detectors score an image by ``(1 - lam) * residual + lam * discrimination``, the
residual being the mean squared difference between the image and its reconstruction
``G(z)``, the discrimination term the mean squared difference of their discriminator
features (feature matching). They differ in how ``z`` is found:

* ``anogan``: gradient descent on ``z`` at test time (``search_steps`` Adam steps on the
  same loss), for a whole batch at once.
* ``fanogan``: ``z = E(x)`` from the trained encoder, one forward pass.

Training lives in ``reconad.training.gan``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

GAN_MODELS = ("anogan", "fanogan")


class Generator(nn.Module):
    """``z (latent_dim)`` -> width -> 2*width -> image in 0..1."""

    def __init__(self, input_shape, latent_dim: int, width: int):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.net = nn.Sequential(
            nn.Linear(latent_dim, width), nn.LeakyReLU(0.2),
            nn.Linear(width, 2 * width), nn.LeakyReLU(0.2),
            nn.Linear(2 * width, math.prod(self.input_shape)), nn.Sigmoid())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).reshape(-1, *self.input_shape)


class Discriminator(nn.Module):
    """image -> 2*width -> width (the feature layer) -> one logit; dropout while training
    keeps it from overpowering the generator."""

    def __init__(self, input_shape, width: int, dropout: float = 0.3):
        super().__init__()
        self.features = nn.Sequential(
            nn.Flatten(), nn.Linear(math.prod(input_shape), 2 * width), nn.LeakyReLU(0.2),
            nn.Dropout(dropout), nn.Linear(2 * width, width), nn.LeakyReLU(0.2), nn.Dropout(dropout))
        self.head = nn.Linear(width, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(x)
        return self.head(f).squeeze(1), f


class Encoder(nn.Module):
    """image -> 2*width -> width -> z (f-AnoGAN's encoder)."""

    def __init__(self, input_shape, latent_dim: int, width: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(math.prod(input_shape), 2 * width), nn.LeakyReLU(0.2),
            nn.Linear(2 * width, width), nn.LeakyReLU(0.2), nn.Linear(width, latent_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class AnoGAN(nn.Module):
    """Generator, discriminator and (``fanogan``) encoder for one image shape.

    ``forward(x)`` returns the reconstruction ``G(z)``; ``anomaly_score(x)`` the score per
    image. Both search ``z`` by gradient descent for ``kind="anogan"`` (they switch
    gradients on for the search themselves, so they work inside ``torch.no_grad``).
    """

    def __init__(self, input_shape, kind: str = "fanogan", latent_dim: int = 64, width: int = 256,
                 lam: float = 0.1, search_steps: int = 200, search_lr: float = 0.05):
        super().__init__()
        if kind not in GAN_MODELS:
            raise ValueError(f"kind must be one of {', '.join(GAN_MODELS)}, got {kind!r}")
        if not 0 <= lam <= 1:
            raise ValueError(f"lam must be in [0, 1], got {lam}")
        self.input_shape = tuple(input_shape)
        self.kind = kind
        self.latent_dim = latent_dim
        self.lam = float(lam)
        self.search_steps = int(search_steps)
        self.search_lr = float(search_lr)
        self.generator = Generator(input_shape, latent_dim, width)
        self.discriminator = Discriminator(input_shape, width)
        self.encoder = Encoder(input_shape, latent_dim, width) if kind == "fanogan" else None

    def score_terms(self, x: torch.Tensor, x_hat: torch.Tensor,
                    fx: torch.Tensor | None = None) -> torch.Tensor:
        """``(1 - lam) * residual + lam * discrimination`` per image; ``fx``: the
        discriminator features of ``x`` when already known."""
        residual = (x - x_hat).square().flatten(1).mean(1)
        if fx is None:
            _, fx = self.discriminator(x)
        _, fr = self.discriminator(x_hat)
        return (1 - self.lam) * residual + self.lam * (fx - fr).square().mean(1)

    def search_latent(self, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
        """AnoGAN's search: Adam on ``z`` (one per image, all images at once) to minimise
        the score of ``G(z)``. Network weights are not touched. Every image starts from the
        same code (one draw from the prior, fixed by ``seed``), so an image's score does not
        depend on the batch it is scored in or its place there."""
        gen = torch.Generator(device=x.device).manual_seed(seed)
        start = torch.randn(1, self.latent_dim, generator=gen, device=x.device)
        z = start.repeat(len(x), 1).requires_grad_(True)
        opt = torch.optim.Adam([z], lr=self.search_lr)
        x = x.detach()
        with torch.no_grad():
            _, fx = self.discriminator(x)
        with torch.enable_grad():
            for _ in range(self.search_steps):
                loss = self.score_terms(x, self.generator(z), fx).sum()  # images are independent
                (grad,) = torch.autograd.grad(loss, z)
                z.grad = grad
                opt.step()
        return z.detach()

    def latent(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "fanogan":
            return self.encoder(x)
        return self.search_latent(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.generator(self.latent(x))

    def anomaly_score(self, x: torch.Tensor) -> torch.Tensor:
        return self.score_terms(x, self.forward(x))


def build_anogan(input_shape, latent_dim: int = 64, width: int = 256, lam: float = 0.1,
                 search_steps: int = 200, search_lr: float = 0.05) -> AnoGAN:
    return AnoGAN(input_shape, kind="anogan", latent_dim=latent_dim, width=width, lam=lam,
                  search_steps=search_steps, search_lr=search_lr)


def build_fanogan(input_shape, latent_dim: int = 64, width: int = 256, lam: float = 0.1,
                  search_steps: int = 200, search_lr: float = 0.05) -> AnoGAN:
    return AnoGAN(input_shape, kind="fanogan", latent_dim=latent_dim, width=width, lam=lam,
                  search_steps=search_steps, search_lr=search_lr)
