"""Fully connected autoencoder on flattened inputs."""

from __future__ import annotations

import math

import torch
from torch import nn



class DenseAE(nn.Module):
    """Dense autoencoder: ``depth`` hidden layers halving from ``width``, a linear
    bottleneck of ``latent_dim``, a mirrored decoder and a sigmoid output (inputs in 0..1).

    Parameters
    ----------
    input_shape : tuple
        Shape of one sample, e.g. ``(1, 28, 28)``; it is flattened.
    latent_dim : int
        Size of the bottleneck.
    width : int
        Units of the first hidden layer; each further layer has half as many.
    depth : int
        Number of hidden layers in the encoder (and in the decoder).
    output : {"sigmoid", "linear"}
        Output activation: sigmoid for data in 0..1, linear for standardised data.
    """

    def __init__(self, input_shape, latent_dim: int = 32, width: int = 256, depth: int = 2,
                 output: str = "sigmoid"):
        super().__init__()
        self.input_shape = tuple(input_shape)
        n_in = math.prod(self.input_shape)
        sizes = [max(width // (2**i), latent_dim) for i in range(depth)]
        enc: list[nn.Module] = []
        prev = n_in
        for h in sizes:
            enc += [nn.Linear(prev, h), nn.ReLU()]
            prev = h
        enc.append(nn.Linear(prev, latent_dim))
        dec: list[nn.Module] = []
        prev = latent_dim
        for h in reversed(sizes):
            dec += [nn.Linear(prev, h), nn.ReLU()]
            prev = h
        dec.append(nn.Linear(prev, n_in))
        if output == "sigmoid":
            dec.append(nn.Sigmoid())
        elif output != "linear":
            raise ValueError(f"output must be 'sigmoid' or 'linear', got {output!r}")
        self.encoder = nn.Sequential(nn.Flatten(), *enc)
        self.decoder = nn.Sequential(*dec)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x)).reshape(x.shape)


def build_dense_ae(input_shape, latent_dim: int = 32, width: int = 256, depth: int = 2,
                   output: str = "sigmoid") -> DenseAE:
    return DenseAE(input_shape, latent_dim=latent_dim, width=width, depth=depth, output=output)

