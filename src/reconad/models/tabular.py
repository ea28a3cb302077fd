"""Networks for standardised tables: an ensemble of small dense autoencoders trained side
by side, a dense autoencoder and a small dense Gaussian VAE.

All can squash their output into the box of values seen in training (``lower`` and
``upper`` per feature, kept as buffers): ``lower + (upper - lower) * sigmoid(h)``. A
reconstruction then never leaves the training range, so a row with an extreme value is
not rebuilt by linear extrapolation and gets a high error. Without bounds the output is
linear.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from reconad.models.dense import DenseAE
from reconad.scoring.terms import gmm_nll


class OutputBox(nn.Module):
    """Maps pre-activations to ``lower + (upper - lower) * sigmoid(h)`` per feature, or
    passes them through when built without bounds. With ``members`` the bounds are kept
    per member, ``(members, 1, F)``, for an ensemble's ``(members, N, F)`` output."""

    def __init__(self, n_features: int, bounded: bool, members: int | None = None):
        super().__init__()
        self.bounded = bounded
        shape = (n_features,) if members is None else (members, 1, n_features)
        self.register_buffer("lower", torch.zeros(shape))
        self.register_buffer("upper", torch.ones(shape))

    def set_bounds(self, lower: torch.Tensor, upper: torch.Tensor) -> None:
        """Bounds of shape ``(F,)`` (the same for every member) or the buffers' shape."""
        self.lower.copy_(torch.as_tensor(lower, dtype=self.lower.dtype).expand_as(self.lower))
        self.upper.copy_(torch.as_tensor(upper, dtype=self.upper.dtype).expand_as(self.upper))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # files written before the bounds were kept per member hold one ``(F,)`` row
        for name in ("lower", "upper"):
            key = prefix + name
            if key in state_dict and state_dict[key].shape != getattr(self, name).shape:
                state_dict[key] = state_dict[key].expand_as(getattr(self, name)).clone()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if not self.bounded:
            return h
        return self.lower + (self.upper - self.lower) * torch.sigmoid(h)


class TabularAE(nn.Module):
    """``DenseAE`` with a linear last layer, followed by an :class:`OutputBox`."""

    def __init__(self, input_shape, latent_dim: int = 8, width: int = 64, depth: int = 2,
                 bounded: bool = True):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.net = DenseAE(input_shape, latent_dim=latent_dim, width=width, depth=depth, output="linear")
        self.box = OutputBox(math.prod(self.input_shape), bounded)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.encode(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.box(self.net(x).flatten(1)).reshape(x.shape)


class TabularEnsemble(nn.Module):
    """``members`` dense autoencoders of the same shape (``F -> width -> ... -> latent_dim``
    and mirrored), each with its own random initial weights, run as one batched network:
    every layer is one batched matrix product over the members, so training them side by
    side costs about as much as training one. ``forward`` returns every member's
    reconstruction, ``(members, N, F)``; the output goes through an :class:`OutputBox`.

    In training every member can see its own rows: ``forward_train`` takes batches of
    ``(N, members * F)``, member ``m``'s rows in the ``m``-th block of ``F`` columns, and
    returns the reconstructions with the members' inputs, both ``(members, N, F)``.
    """

    def __init__(self, input_shape, latent_dim: int = 8, width: int = 64, depth: int = 1,
                 members: int = 4, bounded: bool = True):
        super().__init__()
        if members < 1:
            raise ValueError(f"members must be at least 1, got {members}")
        self.input_shape = tuple(input_shape)
        n_in = math.prod(self.input_shape)
        hidden = [max(width // (2**i), latent_dim) for i in range(depth)]
        sizes = [n_in, *hidden, latent_dim, *reversed(hidden), n_in]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            bound = 1.0 / math.sqrt(fan_in)  # nn.Linear's default initialisation
            self.weights.append(nn.Parameter(torch.empty(members, fan_in, fan_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(members, 1, fan_out).uniform_(-bound, bound)))
        self.box = OutputBox(n_in, bounded, members=members)

    @property
    def members(self) -> int:
        return self.weights[0].shape[0]

    def forward_train(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = slot_rows(batch, self.members)
        return self._run(x), x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(self.member_inputs(x))

    def member_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Rows ``(N, F)`` given to every member, ``(members, N, F)``."""
        return x.flatten(1).unsqueeze(0).expand(self.members, -1, -1)

    def rebuild_and_codes(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every member's reconstruction of the rows ``(N, F)`` and its bottleneck codes,
        ``(members, N, F)`` and ``(members, N, latent)``, from one pass."""
        z = self.codes(self.member_inputs(x))
        return self.decode(z), z

    def _run(self, h: torch.Tensor) -> torch.Tensor:
        """The members' reconstructions of their inputs ``(members, N, F)``."""
        return self.decode(self.codes(h))

    def codes(self, h: torch.Tensor) -> torch.Tensor:
        """The members' bottleneck codes of their inputs ``(members, N, F)``, ``(members, N, latent)``."""
        return self._layers(h, 0, len(self.weights) // 2)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """The members' reconstructions from their bottleneck codes ``(members, N, latent)``."""
        return self.box(self._layers(codes, len(self.weights) // 2, len(self.weights)))

    def _layers(self, h: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        last = len(self.weights) - 1
        for i in range(start, stop):
            h = torch.baddbmm(self.biases[i], h, self.weights[i])
            if i < last:
                h = torch.relu(h)
        return h


def code_surprise(z: torch.Tensor, means: torch.Tensor, prec_chol: torch.Tensor, log_weights: torch.Tensor,
                  offset: torch.Tensor) -> torch.Tensor:
    """Every member's negative log-density of its codes ``z`` ``(m, N, L)`` under its Gaussian
    mixture (``means`` ``(m, C, L)``, Cholesky factors of the precisions ``(m, C, L, L)`` and
    log weights ``(m, C)``, as scikit-learn's ``GaussianMixture`` keeps them), less
    ``offset`` ``(m,)`` (its lowest value over the member's own rows) and not below 0, ``(m, N)``;
    the negative log-density is ``scoring.gmm_nll``'s, all members at once."""
    return (gmm_nll(z, log_weights.exp(), means, prec_chol) - offset.unsqueeze(1)).clamp_min(0)


def member_errors(x: torch.Tensor, members_out: torch.Tensor, power: int = 2) -> torch.Tensor:
    """Per-feature error ``|x - x_hat| ** power`` of every member, ``(members, N, F)``;
    ``x`` is ``(N, F)`` (the same rows for every member) or ``(members, N, F)``."""
    if x.dim() != 3:
        x = x.flatten(1).unsqueeze(0)
    return (members_out - x).abs().pow(power)


def member_slots(rows: torch.Tensor, members: int, generator: torch.Generator, share: float = 1.0) -> torch.Tensor:
    """``(K, members * F)``: for every member its own random ``share`` of the ``N`` rows
    ``(N, F)`` (``K = round(share * N)``, at least 1; all of them in a random order when
    ``share`` is 1), member ``m``'s rows in the ``m``-th block of ``F`` columns, so that a
    batch of samples gives every member a different set of rows."""
    k = min(len(rows), max(1, round(share * len(rows))))
    return torch.cat([rows[torch.randperm(len(rows), generator=generator)[:k]] for _ in range(members)], 1)


def slot_rows(slots: torch.Tensor, members: int) -> torch.Tensor:
    """The rows of ``member_slots``' layout as ``(members, K, F)``."""
    return slots.reshape(len(slots), members, -1).transpose(0, 1)


def _kept_rows(errors: torch.Tensor, trim: float) -> torch.Tensor:
    """Each member's per-row errors ``(members, K)`` of ``errors`` ``(members, N, F)``,
    without its ``trim`` share of worst-rebuilt rows (lowest first when trimmed)."""
    per_row = errors.mean(2)
    keep = per_row.shape[1] - int(trim * per_row.shape[1])
    if keep < per_row.shape[1]:
        per_row = per_row.topk(max(keep, 1), dim=1, largest=False).values
    return per_row


def trimmed_loss(errors: torch.Tensor, trim: float) -> torch.Tensor:
    """Mean error over the rows of a batch, leaving out each member's ``trim`` share of
    worst-rebuilt rows (so a few outliers among the training rows are not learnt).
    ``errors`` is ``(members, N, F)``."""
    return _kept_rows(errors, trim).mean()


def member_losses(errors: torch.Tensor, trim: float) -> torch.Tensor:
    """``trimmed_loss`` of every member apart, ``(members,)``."""
    return _kept_rows(errors, trim).mean(1)


def median_of_members(per_member: torch.Tensor) -> torch.Tensor:
    """The median over the members ``(members, N) -> (N,)``: the mean of the middle two
    for an even count (as ``numpy.median``)."""
    ordered = per_member.sort(dim=0).values
    k = ordered.size(0)
    return 0.5 * (ordered[(k - 1) // 2] + ordered[k // 2])


class TabularVAE(nn.Module):
    """Encoder ``F -> width -> ... -> (mu, logvar)`` of ``latent_dim``; mirrored decoder and
    an :class:`OutputBox`. ``forward`` returns the reconstruction of the posterior mean
    (what a score uses); ``forward_train`` a sampled reconstruction, ``mu`` and ``logvar``."""

    def __init__(self, input_shape, latent_dim: int = 8, width: int = 64, depth: int = 2,
                 bounded: bool = True):
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
        self.box = OutputBox(n_in, bounded)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.to_mu(h), self.to_logvar(h).clamp(-10, 10)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.box(self.decoder(z))

    def forward_train(self, x: torch.Tensor):
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return self.decode(z).reshape(x.shape), mu, logvar

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu, _ = self.encode(x)
        return self.decode(mu).reshape(x.shape)


def kl_per_sample(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL divergence of N(mu, exp(logvar)) from N(0, 1), summed over the latent axis."""
    return -0.5 * (1 + logvar - mu.square() - logvar.exp()).sum(1)


def vae_loss(x: torch.Tensor, terms: tuple[torch.Tensor, ...], beta: float = 1.0) -> torch.Tensor:
    """Batch mean of the summed squared error plus ``beta`` times the KL term, from
    ``TabularVAE.forward_train``'s ``(x_hat, mu, logvar)``."""
    x_hat, mu, logvar = terms
    rec = (x - x_hat).square().flatten(1).sum(1)
    return (rec + beta * kl_per_sample(mu, logvar)).mean()


def build_tabular_ae(input_shape, latent_dim: int = 8, width: int = 64, depth: int = 2,
                     bounded: bool = True) -> TabularAE:
    return TabularAE(input_shape, latent_dim=latent_dim, width=width, depth=depth, bounded=bounded)


def build_tabular_vae(input_shape, latent_dim: int = 8, width: int = 64, depth: int = 2,
                      bounded: bool = True) -> TabularVAE:
    return TabularVAE(input_shape, latent_dim=latent_dim, width=width, depth=depth, bounded=bounded)



def build_tabular_ensemble(input_shape, latent_dim: int = 8, width: int = 64, depth: int = 1,
                           members: int = 4, bounded: bool = True) -> TabularEnsemble:
    return TabularEnsemble(input_shape, latent_dim=latent_dim, width=width, depth=depth, members=members,
                           bounded=bounded)
