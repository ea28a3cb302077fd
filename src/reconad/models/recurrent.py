"""Recurrent autoencoders for windows of a multivariate series ``(N, window, F)``."""

from __future__ import annotations

import torch
from torch import nn



def _check_series_shape(name: str, input_shape) -> tuple[int, int]:
    if len(input_shape) != 2:
        raise ValueError(f"{name} needs series windows (window, features), got shape {input_shape}")
    return int(input_shape[0]), int(input_shape[1])


class LSTMAE(nn.Module):
    """LSTM encoder -> latent vector -> LSTM decoder (the textbook sequence autoencoder).

    The encoder LSTM (``depth`` layers of ``width`` units) reads the window; its last
    hidden state is mapped to a ``latent_dim`` code (``latent_dim=None`` uses the hidden
    state itself), which is repeated at every time step and read by the decoder LSTM; a
    linear layer per step maps back to the ``F`` sensors.
    """

    def __init__(self, input_shape, latent_dim: int | None = 16, width: int = 64, depth: int = 1):
        super().__init__()
        self.window, self.n_features = _check_series_shape("lstm_ae", input_shape)
        self.encoder = nn.LSTM(self.n_features, width, num_layers=depth, batch_first=True)
        self.to_latent = nn.Linear(width, latent_dim) if latent_dim else nn.Identity()
        code = latent_dim or width
        self.decoder = nn.LSTM(code, width, num_layers=depth, batch_first=True)
        self.output = nn.Linear(width, self.n_features)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.encoder(x)
        return self.to_latent(h[-1])

    def decode(self, z: torch.Tensor, steps: int) -> torch.Tensor:
        out, _ = self.decoder(z.unsqueeze(1).expand(-1, steps, -1))
        return self.output(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x), x.shape[1])


class LSTMVAE(LSTMAE):
    """Variational LSTM autoencoder: the encoder gives a mean and a log-variance, a code is
    sampled while training (the mean is used in evaluation). ``forward`` returns the
    reconstruction; ``forward_train`` the reconstruction and the batch mean KL divergence
    per input element, which the training loss adds (weighted by ``beta``)."""

    def __init__(self, input_shape, latent_dim: int = 16, width: int = 64, depth: int = 1,
                 beta: float = 1.0):
        super().__init__(input_shape, latent_dim=latent_dim, width=width, depth=depth)
        self.to_latent = nn.Linear(width, 2 * latent_dim)
        self.beta = float(beta)

    def forward_train(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, (h, _) = self.encoder(x)
        mu, logvar = self.to_latent(h[-1]).chunk(2, dim=-1)
        logvar = logvar.clamp(-10, 10)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        kl = -0.5 * (1 + logvar - mu.square() - logvar.exp()).sum(-1)
        return self.decode(z, x.shape[1]), kl.mean() / (x.shape[1] * x.shape[2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_train(x)[0]


def build_lstm_ae(input_shape, latent_dim: int | None = 16, width: int = 64, depth: int = 1) -> LSTMAE:
    return LSTMAE(input_shape, latent_dim=latent_dim, width=width, depth=depth)


def build_lstm_vae(input_shape, latent_dim: int = 16, width: int = 64, depth: int = 1,
                   beta: float = 1.0) -> LSTMVAE:
    return LSTMVAE(input_shape, latent_dim=latent_dim, width=width, depth=depth, beta=beta)
