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


def _conv_bn_relu(a: int, b: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(a, b, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(b), nn.ReLU())


class FeatureReverseDistillation(nn.Module):
    """Rebuilds a frozen backbone's multi-scale features from a one-class bottleneck
    (reverse distillation, Deng and Li 2022).

    Input: the stage maps ``[(N, C_1, H_1, W_1), ...]``, finest first, each stage twice
    the stride of the one before. Every stage is brought to the coarsest grid (strided
    3x3 convolutions), the results are joined and pressed into a code on a grid twice as
    coarse (``bottleneck`` channels). A decoder of 3x3 convolutions grows the code back,
    coarsest stage first, and rebuilds each stage's features from the code alone: nothing
    of a location's own features reaches its reconstruction except through the code of
    its surroundings, so an unusual patch is rebuilt as the normal surface around it.
    Output: the rebuilt stage maps, finest first, on the input's grids.
    """

    def __init__(self, channels: list[int], width: int = 64, bottleneck: int = 256,
                 decoder_widths: list[int] | None = None, gaussian: bool = False):
        super().__init__()
        n = len(channels)
        if n < 1:
            raise ValueError("FeatureReverseDistillation needs at least one stage")
        self.channels = [int(c) for c in channels]
        widths = decoder_widths or [min(48 * 2 ** i, 192) for i in range(n)]
        self.encoders = nn.ModuleList()
        for i, c in enumerate(self.channels):
            steps = n - 1 - i  # stride-2 steps to the coarsest grid
            layers = [_conv_bn_relu(c if k == 0 else width, width, 3, 2) for k in range(steps)]
            self.encoders.append(nn.Sequential(*layers) if layers else _conv_bn_relu(c, width, 1))
        self.bottleneck = nn.Sequential(_conv_bn_relu(width * n, bottleneck, 1),
                                        _conv_bn_relu(bottleneck, bottleneck, 3, 2))
        self.blocks = nn.ModuleList()
        self.heads = nn.ModuleList()
        for i in range(n):
            inp = widths[i + 1] if i + 1 < n else bottleneck
            self.blocks.append(nn.Sequential(_conv_bn_relu(inp, widths[i]), _conv_bn_relu(widths[i], widths[i])))
            self.heads.append(nn.Conv2d(widths[i], self.channels[i] * (2 if gaussian else 1), 1))
        self.gaussian = gaussian

    def encode(self, maps: list[torch.Tensor]) -> torch.Tensor:
        size = maps[-1].shape[-2:]
        codes = []
        for enc, m in zip(self.encoders, maps):
            c = enc(m)
            codes.append(c if c.shape[-2:] == size else nn.functional.interpolate(
                c, size=size, mode="bilinear", align_corners=False))
        return self.bottleneck(torch.cat(codes, 1))

    def forward_train(self, packed: torch.Tensor):
        """Training pass on a batch of crops packed by :func:`fold_stages`: the stage maps
        and their rebuilds."""
        maps = unfold_stages(packed, self.channels)
        return maps, self(maps)

    def forward(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(maps) != len(self.channels):
            raise ValueError(f"expected {len(self.channels)} stage maps, got {len(maps)}")
        h = self.encode(maps)
        out: list[torch.Tensor] = [None] * len(maps)  # type: ignore[list-item]
        for i in reversed(range(len(maps))):
            h = nn.functional.interpolate(h, size=maps[i].shape[-2:], mode="bilinear", align_corners=False)
            h = self.blocks[i](h)
            out[i] = self.heads[i](h)
        if self.gaussian:  # each stage: (mean, log-variance) of a Gaussian per feature
            out = [tuple(o.chunk(2, 1)) for o in out]
            out = [(mu, logvar.clamp(-8, 8)) for mu, logvar in out]
        return out


def cosine_distance_map(maps: list[torch.Tensor], rebuilt: list[torch.Tensor]) -> torch.Tensor:
    """``1 - cos`` between each location's feature vector and its reconstruction, per
    stage, resized to the finest stage's grid and averaged over the stages: ``(N, H_1, W_1)``."""
    size = maps[0].shape[-2:]
    total = None
    for m, r in zip(maps, rebuilt):
        d = 1 - nn.functional.cosine_similarity(m, r, dim=1)
        if d.shape[-2:] != size:
            d = nn.functional.interpolate(d[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
        total = d if total is None else total + d
    return total / len(maps)


def fold_stages(maps: list[torch.Tensor]) -> torch.Tensor:
    """Stage maps ``[(N, C_k, H * 2^(n-1-k), W * 2^(n-1-k))]`` (finest first) as one tensor
    on the coarsest grid ``(N, sum C_k 4^(n-1-k), H, W)``: each finer stage's cells folded
    into channels (``pixel_unshuffle``)."""
    n = len(maps)
    return torch.cat([nn.functional.pixel_unshuffle(m, 2 ** (n - 1 - k)) if k < n - 1 else m
                      for k, m in enumerate(maps)], 1)


def unfold_stages(packed: torch.Tensor, channels: list[int]) -> list[torch.Tensor]:
    """The inverse of :func:`fold_stages` for stages of ``channels`` (finest first)."""
    n, maps, start = len(channels), [], 0
    for k, c in enumerate(channels):
        f = 2 ** (n - 1 - k)
        part = packed[:, start:start + c * f * f]
        maps.append(nn.functional.pixel_shuffle(part, f) if f > 1 else part)
        start += c * f * f
    return maps


def build_feature_rd(input_shape, latent_dim: int = 256, width: int = 64) -> FeatureReverseDistillation:
    """A ``FeatureReverseDistillation`` for stage maps of ``input_shape = (C_1, C_2, ...)``
    channels, finest first; ``latent_dim``: channels of the bottleneck, ``width``: of each
    stage's encoder."""
    return FeatureReverseDistillation([int(c) for c in input_shape], width=width, bottleneck=latent_dim)
