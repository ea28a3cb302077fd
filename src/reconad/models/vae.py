"""Variational autoencoders with a Gaussian decoder (a mean and a standard deviation per
pixel) or a Bernoulli one.

Every VAE here returns a ``VAEOutput``: ``mu_x`` (0..1), ``log_var_x`` (None for the
Bernoulli decoder), ``mu_z`` and ``log_var_z``. In training mode the decoder sees a
sample ``z = mu_z + sigma_z * eps``; in evaluation mode it sees ``z = mu_z``, so scores
are deterministic.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from reconad.scoring import terms as scoring

DECODERS = ("gaussian", "bernoulli")
INIT_LOG_VAR = -3.0


class VAEOutput(NamedTuple):
    mu_x: torch.Tensor
    log_var_x: torch.Tensor | None
    mu_z: torch.Tensor
    log_var_z: torch.Tensor


class _VAEBase(nn.Module):
    """Shared parts: the reparameterisation and the decoder's output head."""

    def __init__(self, decoder: str, min_log_var: float):
        super().__init__()
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
        self.decoder = decoder
        self.min_log_var = float(min_log_var)

    @property
    def out_factor(self) -> int:
        """Output channels per input channel: mean and log-variance, or the mean only."""
        return 2 if self.decoder == "gaussian" else 1

    def _head(self, raw: torch.Tensor, channels: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        mu_x = torch.sigmoid(raw[:, :channels])
        if self.decoder == "bernoulli":
            return mu_x, None
        # log sigma^2 >= min_log_var, smooth: min + softplus(raw + init - min); a raw output
        # of 0 gives log sigma^2 near INIT_LOG_VAR (sigma about 0.2, a fair start for 0..1 data)
        log_var_x = self.min_log_var + F.softplus(raw[:, channels:] + INIT_LOG_VAR - self.min_log_var)
        return mu_x, log_var_x

    def _sample(self, mu_z: torch.Tensor, log_var_z: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return mu_z
        return mu_z + torch.randn_like(mu_z) * (0.5 * log_var_z).exp()


def _conv_out(n: int, kernel: int) -> int:
    """Output length of a stride-2 convolution (3x3 padding 1, or 4x4 padding 1)."""
    return (n - 1) // 2 + 1 if kernel == 3 else n // 2


def _deconv(in_ch: int, out_ch: int, kernel: int, n_in, n_out) -> nn.ConvTranspose2d:
    """A stride-2 transposed convolution mapping ``n_in`` back to exactly ``n_out``."""
    if kernel == 3:
        pad = tuple(o - (2 * i - 1) for i, o in zip(n_in, n_out))
    else:
        pad = tuple(o - 2 * i for i, o in zip(n_in, n_out))
    return nn.ConvTranspose2d(in_ch, out_ch, kernel, stride=2, padding=1, output_padding=pad)


class ConvVAE(_VAEBase):
    """Convolutional VAE: ``depth`` stride-2 convolutions (``kernel`` 3 or 4) with batch
    norm and an activation, channels ``width * 2**i``; a dense layer to ``2 * latent_dim``
    (mu_z, log sigma_z^2); a mirrored decoder ending in ``2 * C`` channels (mu_x and log
    sigma_x^2) for the Gaussian decoder or ``C`` for the Bernoulli one."""

    def __init__(self, input_shape, latent_dim: int = 32, width: int = 32, depth: int = 3,
                 kernel: int = 3, activation: str = "leaky_relu", decoder: str = "gaussian",
                 min_log_var: float = -8.0):
        super().__init__(decoder, min_log_var)
        if kernel not in (3, 4):
            raise ValueError(f"kernel must be 3 or 4, got {kernel}")
        c, h, w = input_shape
        self.input_shape = (c, h, w)
        act = (lambda: nn.LeakyReLU(0.2)) if activation == "leaky_relu" else nn.ReLU
        sizes = [(h, w)]
        for _ in range(depth):
            sizes.append((_conv_out(sizes[-1][0], kernel), _conv_out(sizes[-1][1], kernel)))
        if min(sizes[-1]) < 1:
            raise ValueError(f"input {h}x{w} is too small for {depth} stride-2 layers")
        chans = [c] + [width * 2**i for i in range(depth)]
        enc: list[nn.Module] = []
        for i in range(depth):
            enc += [nn.Conv2d(chans[i], chans[i + 1], kernel, stride=2, padding=1),
                    nn.BatchNorm2d(chans[i + 1]), act()]
        self.features = nn.Sequential(*enc)
        self.code_shape = (chans[-1], *sizes[-1])
        n_code = math.prod(self.code_shape)
        self.to_latent = nn.Linear(n_code, 2 * latent_dim)
        self.from_latent = nn.Sequential(nn.Linear(latent_dim, n_code), act())
        dec: list[nn.Module] = []
        for i in range(depth, 0, -1):
            out_ch = chans[i - 1] if i > 1 else c * self.out_factor
            dec.append(_deconv(chans[i], out_ch, kernel, sizes[i], sizes[i - 1]))
            if i > 1:
                dec += [nn.BatchNorm2d(chans[i - 1]), act()]
        self.reconstruct = nn.Sequential(*dec)
        self.latent_dim = latent_dim

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """mu_z for ``x``."""
        return self.to_latent(self.features(x).flatten(1))[:, :self.latent_dim]

    def forward(self, x: torch.Tensor) -> VAEOutput:
        mu_z, log_var_z = self.to_latent(self.features(x).flatten(1)).chunk(2, dim=1)
        z = self._sample(mu_z, log_var_z)
        raw = self.reconstruct(self.from_latent(z).reshape(-1, *self.code_shape))
        mu_x, log_var_x = self._head(raw, self.input_shape[0])
        return VAEOutput(mu_x, log_var_x, mu_z, log_var_z)


class DenseVAE(_VAEBase):
    """Dense VAE on flattened inputs: ``depth`` hidden layers halving from ``width``."""

    def __init__(self, input_shape, latent_dim: int = 32, width: int = 256, depth: int = 2,
                 decoder: str = "gaussian", min_log_var: float = -8.0):
        super().__init__(decoder, min_log_var)
        self.input_shape = tuple(input_shape)
        n_in = math.prod(self.input_shape)
        sizes = [max(width // (2**i), latent_dim) for i in range(depth)]
        enc: list[nn.Module] = [nn.Flatten()]
        prev = n_in
        for hid in sizes:
            enc += [nn.Linear(prev, hid), nn.ReLU()]
            prev = hid
        enc.append(nn.Linear(prev, 2 * latent_dim))
        dec: list[nn.Module] = []
        prev = latent_dim
        for hid in reversed(sizes):
            dec += [nn.Linear(prev, hid), nn.ReLU()]
            prev = hid
        dec.append(nn.Linear(prev, n_in * self.out_factor))
        self.encoder = nn.Sequential(*enc)
        self.decoder_net = nn.Sequential(*dec)
        self.latent_dim = latent_dim

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)[:, :self.latent_dim]

    def forward(self, x: torch.Tensor) -> VAEOutput:
        mu_z, log_var_z = self.encoder(x).chunk(2, dim=1)
        z = self._sample(mu_z, log_var_z)
        c = self.input_shape[0]
        raw = self.decoder_net(z).reshape(-1, c * self.out_factor, *self.input_shape[1:])
        mu_x, log_var_x = self._head(raw, c)
        return VAEOutput(mu_x, log_var_x, mu_z, log_var_z)


def elbo_loss(x: torch.Tensor, out: VAEOutput, beta: float = 1.0) -> torch.Tensor:
    """Training loss: the batch mean of D + A + M (with beta * D), divided by the number of
    elements per sample so its scale does not depend on the image size."""
    t = scoring.gaussian_terms(x, *out)
    per_sample = beta * t["D"] + t["A"].flatten(1).sum(1) + t["M"].flatten(1).sum(1)
    return per_sample.mean() / x[0].numel()


def _check_image_shape(name: str, input_shape) -> None:
    if len(input_shape) != 3:
        raise ValueError(f"{name} needs image inputs (C, H, W), got shape {input_shape}")


def build_conv_vae(input_shape, latent_dim: int = 32, width: int = 32, depth: int = 3,
                   decoder: str = "gaussian", min_log_var: float = -8.0) -> ConvVAE:
    _check_image_shape("conv_vae", input_shape)
    return ConvVAE(input_shape, latent_dim=latent_dim, width=width, depth=depth, kernel=3,
                   activation="leaky_relu", decoder=decoder, min_log_var=min_log_var)


def build_dense_vae(input_shape, latent_dim: int = 32, width: int = 256, depth: int = 2,
                    decoder: str = "gaussian", min_log_var: float = -8.0) -> DenseVAE:
    return DenseVAE(input_shape, latent_dim=latent_dim, width=width, depth=depth,
                    decoder=decoder, min_log_var=min_log_var)


def build_paper_vae(input_shape, latent_dim: int = 10, width: int = 32, depth: int = 5,
                    decoder: str = "gaussian", min_log_var: float = -8.0) -> ConvVAE:
    _check_image_shape("paper_vae", input_shape)
    return ConvVAE(input_shape, latent_dim=latent_dim, width=width, depth=depth, kernel=4,
                   activation="relu", decoder=decoder, min_log_var=min_log_var)
