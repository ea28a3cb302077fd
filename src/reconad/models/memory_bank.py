"""A memory bank of normal feature vectors: greedy coreset subsampling and
nearest-neighbour distances (as in PatchCore)."""

from __future__ import annotations

from collections.abc import Callable

import torch

# Steps between two calls of ``greedy_coreset``'s ``on_progress``.
PROGRESS_STEPS = 250


def greedy_coreset(features: torch.Tensor, n: int, projection_dim: int = 128,
                   seed: int | None = 0, on_progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """Indices of ``n`` rows of ``features (M, C)`` chosen by greedy farthest-point
    sampling, distances measured after a random projection to ``projection_dim``.
    ``on_progress(k)`` is called after every ``PROGRESS_STEPS`` rows chosen (and the last ones)."""
    m = len(features)
    if n >= m:
        if on_progress is not None:
            on_progress(m)
        return torch.arange(m)
    gen = torch.Generator().manual_seed(int(seed) if seed is not None else 0)
    x = features.float()
    if x.shape[1] > projection_dim:
        proj = torch.randn(x.shape[1], projection_dim, generator=gen) / projection_dim ** 0.5
        x = x @ proj.to(x.device)
    norms = x.square().sum(1)
    chosen = torch.empty(n, dtype=torch.long)
    idx = int(torch.randint(m, (1,), generator=gen))
    dist = torch.full((m,), float("inf"), device=x.device)
    for i in range(n):
        chosen[i] = idx
        # squared distance to the newest centre: |x|^2 - 2 x.c + |c|^2 (one matrix-vector product)
        dist = torch.minimum(dist, norms - 2 * (x @ x[idx]) + norms[idx])
        idx = int(dist.argmax())
        if on_progress is not None and ((i + 1) % PROGRESS_STEPS == 0 or i + 1 == n):
            on_progress((i + 1) % PROGRESS_STEPS or PROGRESS_STEPS)
    return chosen


def nearest_distance(query: torch.Tensor, bank: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """Euclidean distance of each row of ``query (L, C)`` to its nearest row of ``bank (K, C)``."""
    out = []
    for start in range(0, len(query), chunk):
        out.append(torch.cdist(query[start:start + chunk], bank).min(1).values)
    return torch.cat(out) if out else query.new_zeros(0)
