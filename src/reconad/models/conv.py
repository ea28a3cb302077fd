"""Convolutional autoencoders for images."""

from __future__ import annotations

import torch
from torch import nn



def _down(n: int) -> int:
    """Output length of a 3x3 convolution with stride 2 and padding 1."""
    return (n - 1) // 2 + 1


def _up(in_ch: int, out_ch: int, n_in: tuple[int, int], n_out: tuple[int, int]) -> nn.ConvTranspose2d:
    """A stride-2 transposed convolution that maps size ``n_in`` back to exactly ``n_out``."""
    pad = tuple(o - (2 * i - 1) for i, o in zip(n_in, n_out))
    return nn.ConvTranspose2d(in_ch, out_ch, 3, stride=2, padding=1, output_padding=pad)


class ConvAE(nn.Module):
    """Convolutional autoencoder with a dense bottleneck.

    The encoder has ``depth`` blocks of a stride-2 3x3 convolution, batch norm and
    LeakyReLU, with ``width`` channels doubling per block; a linear layer maps the
    feature map to ``latent_dim``. The decoder mirrors it with transposed convolutions
    and ends in a sigmoid, so outputs lie in 0..1 like the inputs. Any image size works.
    """

    def __init__(self, input_shape, latent_dim: int = 32, width: int = 32, depth: int = 3):
        super().__init__()
        c, h, w = input_shape
        self.input_shape = (c, h, w)
        sizes = [(h, w)]
        for _ in range(depth):
            sizes.append((_down(sizes[-1][0]), _down(sizes[-1][1])))
        chans = [c] + [width * 2**i for i in range(depth)]
        enc: list[nn.Module] = []
        for i in range(depth):
            enc += [nn.Conv2d(chans[i], chans[i + 1], 3, stride=2, padding=1),
                    nn.BatchNorm2d(chans[i + 1]), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*enc)
        self.code_shape = (chans[-1], *sizes[-1])
        n_code = chans[-1] * sizes[-1][0] * sizes[-1][1]
        self.to_latent = nn.Linear(n_code, latent_dim)
        self.from_latent = nn.Sequential(nn.Linear(latent_dim, n_code), nn.LeakyReLU(0.2))
        dec: list[nn.Module] = []
        for i in range(depth, 0, -1):
            dec.append(_up(chans[i], chans[i - 1] if i > 1 else width, sizes[i], sizes[i - 1]))
            if i > 1:
                dec += [nn.BatchNorm2d(chans[i - 1]), nn.LeakyReLU(0.2)]
        dec += [nn.LeakyReLU(0.2), nn.Conv2d(width, c, 3, padding=1), nn.Sigmoid()]
        self.reconstruct = nn.Sequential(*dec)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_latent(self.features(x).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.encode(x)
        return self.reconstruct(self.from_latent(z).reshape(-1, *self.code_shape))


class TutorialCAE(nn.Module):
    """The classic tutorial network: Conv 128 -> Conv 64 -> Dense 1024 -> 64 -> latent 32,
    a mirrored decoder with transposed convolutions and a sigmoid output; trained with
    binary cross-entropy."""

    def __init__(self, input_shape, latent_dim: int = 32):
        super().__init__()
        c, h, w = input_shape
        self.input_shape = (c, h, w)
        s1 = (_down(h), _down(w))
        s2 = (_down(s1[0]), _down(s1[1]))
        self.code_shape = (64, *s2)
        n_code = 64 * s2[0] * s2[1]
        self.encoder = nn.Sequential(
            nn.Conv2d(c, 128, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(128, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(),
            nn.Linear(n_code, 1024), nn.ReLU(),
            nn.Linear(1024, 64), nn.ReLU(),
            nn.Linear(64, latent_dim),
        )
        self.dense_decoder = nn.Sequential(
            nn.Linear(latent_dim, 64), nn.ReLU(),
            nn.Linear(64, 1024), nn.ReLU(),
            nn.Linear(1024, n_code), nn.ReLU(),
        )
        self.conv_decoder = nn.Sequential(
            _up(64, 128, s2, s1), nn.ReLU(),
            _up(128, c, s1, (h, w)), nn.Sigmoid(),
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.encoder(x)
        return self.conv_decoder(self.dense_decoder(z).reshape(-1, *self.code_shape))


def build_conv_ae(input_shape, latent_dim: int = 32, width: int = 32, depth: int = 3) -> ConvAE:
    if len(input_shape) != 3:
        raise ValueError(f"conv_ae needs image inputs (C, H, W), got shape {input_shape}")
    return ConvAE(input_shape, latent_dim=latent_dim, width=width, depth=depth)


def build_tutorial_cae(input_shape, latent_dim: int = 32) -> TutorialCAE:
    if len(input_shape) != 3:
        raise ValueError(f"tutorial_cae needs image inputs (C, H, W), got shape {input_shape}")
    return TutorialCAE(input_shape, latent_dim=latent_dim)

