"""1-D convolutional autoencoder for windows of a multivariate series ``(N, window, F)``."""

from __future__ import annotations

import torch
from torch import nn

from reconad.models.recurrent import _check_series_shape


def _down(n: int) -> int:
    """Length after a stride-2 convolution with kernel 7 and padding 3."""
    return (n - 1) // 2 + 1


class Conv1dAE(nn.Module):
    """Strided 1-D convolutions over time and their transposed mirror.

    ``depth`` blocks of Conv1d (kernel ``kernel_size``, stride 2) + ReLU halve the length;
    channels start at ``width`` and halve per block (32 -> 16 by default, the SKAB
    leaderboard's Conv-AE layout); dropout after the first block of the encoder and of
    the decoder. The decoder's transposed convolutions restore the exact length and a
    last transposed convolution maps to the ``F`` sensors (linear output, for scaled data).
    ``latent_dim`` adds a dense bottleneck of that size between encoder and decoder.
    """

    def __init__(self, input_shape, width: int = 32, depth: int = 2, kernel_size: int = 7,
                 dropout: float = 0.2, latent_dim: int | None = None):
        super().__init__()
        self.window, self.n_features = _check_series_shape("conv_ae", input_shape)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        pad = kernel_size // 2
        chans = [self.n_features] + [max(width // 2**i, 4) for i in range(depth)]
        sizes = [self.window]
        for _ in range(depth):
            sizes.append((sizes[-1] + 2 * pad - kernel_size) // 2 + 1)
        enc: list[nn.Module] = []
        for i in range(depth):
            enc += [nn.Conv1d(chans[i], chans[i + 1], kernel_size, stride=2, padding=pad), nn.ReLU()]
            if i == 0 and dropout:
                enc.append(nn.Dropout(dropout))
        dec: list[nn.Module] = []
        for i in range(depth, 0, -1):
            n_in, n_out = sizes[i], sizes[i - 1]
            extra = n_out - ((n_in - 1) * 2 - 2 * pad + kernel_size)  # 0 or 1: exact length
            dec += [nn.ConvTranspose1d(chans[min(i + 1, depth)], chans[i], kernel_size, stride=2,
                                       padding=pad, output_padding=extra), nn.ReLU()]
            if i == depth and dropout:
                dec.append(nn.Dropout(dropout))
        dec.append(nn.ConvTranspose1d(chans[1], self.n_features, kernel_size, padding=pad))
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)
        self.code_shape = (chans[depth], sizes[depth])
        n_code = chans[depth] * sizes[depth]
        # optional dense bottleneck between encoder and decoder
        self.bottleneck = (nn.Sequential(nn.Flatten(), nn.Linear(n_code, latent_dim), nn.ReLU(),
                                         nn.Linear(latent_dim, n_code), nn.ReLU())
                           if latent_dim else None)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.transpose(1, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        code = self.encode(x)
        if self.bottleneck is not None:
            code = self.bottleneck(code).reshape(-1, *self.code_shape)
        return self.decoder(code).transpose(1, 2)


def build_conv1d_ae(input_shape, width: int = 32, depth: int = 2, kernel_size: int = 7,
                    dropout: float = 0.2, latent_dim: int | None = None) -> Conv1dAE:
    return Conv1dAE(input_shape, width=width, depth=depth, kernel_size=kernel_size, dropout=dropout,
                    latent_dim=latent_dim)
