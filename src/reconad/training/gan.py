"""Training for the GAN detectors: the adversarial loop (generator and discriminator),
then, for f-AnoGAN, the encoder (izi_f) with the GAN frozen."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from reconad.models.gan import AnoGAN
from reconad.training.loop import FitResult, fit_model


def fit_gan(gan: AnoGAN, train: torch.Tensor, *, epochs: int, batch_size: int, lr: float,
            device: torch.device, seed: int | None, real_label: float = 0.9) -> dict[str, list[float]]:
    """Non-saturating GAN training (Adam, betas 0.5/0.999; one-sided label smoothing: real
    images get target ``real_label``) on normal images; returns the mean discriminator and
    generator loss per epoch."""
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    gan.to(device)
    G, D = gan.generator, gan.discriminator
    opt_g = torch.optim.Adam(G.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=lr, betas=(0.5, 0.999))
    gen = torch.Generator().manual_seed(int(seed) if seed is not None else torch.seed())
    history = {"d_loss": [], "g_loss": []}
    n_batches = math.ceil(len(train) / batch_size)
    for epoch in range(epochs):
        G.train()
        D.train()
        order = torch.randperm(len(train), generator=gen)
        d_total = g_total = 0.0
        for b in range(n_batches):
            idx = order[b * batch_size:(b + 1) * batch_size]
            if len(idx) < 2:
                continue
            real = train[idx].to(device)
            z = torch.randn(len(idx), gan.latent_dim, generator=gen).to(device)
            fake = G(z)
            ones = torch.ones(len(idx), device=device)
            real_target = torch.full((len(idx),), real_label, device=device)
            zeros = torch.zeros(len(idx), device=device)
            opt_d.zero_grad(set_to_none=True)
            d_loss = (F.binary_cross_entropy_with_logits(D(real)[0], real_target)
                      + F.binary_cross_entropy_with_logits(D(fake.detach())[0], zeros))
            d_loss.backward()
            opt_d.step()
            opt_g.zero_grad(set_to_none=True)
            g_loss = F.binary_cross_entropy_with_logits(D(fake)[0], ones)
            g_loss.backward()
            opt_g.step()
            if not (torch.isfinite(d_loss) and torch.isfinite(g_loss)):
                raise FloatingPointError(f"GAN loss became non-finite at epoch {epoch + 1}; "
                                         "lower the learning rate")
            d_total += float(d_loss.detach()) * len(idx)
            g_total += float(g_loss.detach()) * len(idx)
        history["d_loss"].append(d_total / len(train))
        history["g_loss"].append(g_total / len(train))
    gan.eval()
    return history


def fit_encoder(gan: AnoGAN, train: torch.Tensor, val: torch.Tensor | None, *, epochs: int,
                batch_size: int, lr: float, device: torch.device, seed: int | None,
                kappa: float = 1.0, verbose: int = 0) -> FitResult:
    """f-AnoGAN's izi_f training: the encoder learns ``x -> z`` so that ``G(E(x))`` matches
    ``x`` in pixels and in discriminator features (weight ``kappa``); G and D stay fixed."""
    for p in list(gan.generator.parameters()) + list(gan.discriminator.parameters()):
        p.requires_grad_(False)
    gan.generator.eval()
    gan.discriminator.eval()

    def loss_fn(code, xb):
        rec = gan.generator(code)
        _, fx = gan.discriminator(xb)
        _, fr = gan.discriminator(rec)
        return (xb - rec).square().mean() + kappa * (fx - fr).square().mean()

    try:
        return fit_model(gan.encoder, loss_fn, train, val, epochs=epochs, batch_size=batch_size,
                         lr=lr, device=device, seed=seed, verbose=verbose)
    finally:
        for p in gan.parameters():
            p.requires_grad_(True)
        gan.eval()
