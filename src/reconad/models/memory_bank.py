"""A memory bank of normal feature vectors: greedy coreset subsampling and
nearest-neighbour distances (as in PatchCore).

The nearest-neighbour search is an exact flat index of faiss (``faiss-cpu``, part of the
``features`` extra) when it is installed, else chunked ``torch.cdist``; both give the same
distances (up to float rounding), faiss about 1.5 times as fast on a CPU.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import numpy as np
import torch

# Steps between two calls of ``greedy_coreset``'s ``on_progress``.
PROGRESS_STEPS = 250
# Dimension the coreset's distances are measured in (a random projection). The greedy
# loop reads every pooled vector once per chosen vector, so its time grows with this
# dimension: choosing 10000 of 100000 vectors took 20-33 s at 64 dimensions and 11 s at 32
# (two threads). 32 dimensions cost 0.003 image and 0.010 pixel ROC-AUC on the magnetic
# tiles (docs/magnetic_tile_features.md), so 64 stays the default and ``coreset_dim=32`` is
# the faster choice.
PROJECTION_DIM = 64

# Bank rows whose distances give a row's spacing (``NearestNeighbours.spacing``), and the
# floor of a spacing as a share of the median one.
SPACING_NEIGHBOURS = 3
SPACING_FLOOR = 0.05

HAS_FAISS = importlib.util.find_spec("faiss") is not None


def greedy_coreset(features: torch.Tensor, n: int, projection_dim: int = PROJECTION_DIM,
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
    # kept as (dims, M) and read through its transpose: the matrix-vector product then runs
    # along contiguous columns, about 4 times as fast on a CPU as over rows of 64 dimensions
    columns = x.T.contiguous()
    x = columns.T
    norms = x.square().sum(1)
    chosen = torch.empty(n, dtype=torch.long)
    idx = int(torch.randint(m, (1,), generator=gen))
    dist = torch.full((m,), float("inf"), device=x.device)
    step = torch.empty_like(dist)
    for i in range(n):
        chosen[i] = idx
        # squared distance to the newest centre: |x|^2 - 2 x.c + |c|^2 (one matrix-vector product)
        torch.addmv(norms, x, columns[:, idx].contiguous(), alpha=-2, out=step)
        step.add_(norms[idx])
        torch.minimum(dist, step, out=dist)
        idx = int(dist.argmax())
        if on_progress is not None and ((i + 1) % PROGRESS_STEPS == 0 or i + 1 == n):
            on_progress((i + 1) % PROGRESS_STEPS or PROGRESS_STEPS)
    return chosen


class NearestNeighbours:
    """Exact Euclidean nearest-neighbour distances to the rows of ``bank (K, C)``."""

    def __init__(self, bank: torch.Tensor):
        self.bank = bank.float().contiguous()
        self._index = None
        if HAS_FAISS and self.bank.device.type == "cpu":
            import faiss

            self._index = faiss.IndexFlatL2(self.bank.shape[1])
            self._index.add(np.ascontiguousarray(self.bank.numpy()))

    def distance(self, query: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        """Distance of each row of ``query (L, C)`` to its nearest row of the bank."""
        return self.search(query, 1, chunk)[0][:, 0]

    def search(self, query: torch.Tensor, k: int = 1, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
        """Distances ``(L, k)`` of each row of ``query (L, C)`` to its ``k`` nearest rows of the
        bank, nearest first, and those rows' indices ``(L, k)``."""
        if self._index is not None and query.device.type == "cpu":
            import faiss

            faiss.omp_set_num_threads(torch.get_num_threads())
            q = np.ascontiguousarray(query.detach().float().numpy())
            d, i = self._index.search(q, k)
            return torch.from_numpy(d).clamp_min_(0).sqrt_(), torch.from_numpy(i)
        bank = self.bank.to(query.device)
        ds, ids = [], []
        for start in range(0, len(query), chunk):
            d, i = torch.cdist(query[start:start + chunk].float(), bank).topk(k, dim=1, largest=False)
            ds.append(d)
            ids.append(i)
        if not ds:
            return query.new_zeros(0, k), torch.zeros(0, k, dtype=torch.long, device=query.device)
        return torch.cat(ds), torch.cat(ids)

    def spacing(self, k: int = SPACING_NEIGHBOURS) -> torch.Tensor:
        """Mean distance of each bank row to its ``k`` nearest other rows: how far apart the
        normal vectors lie around it (a few rows may be exact duplicates; their spacing is
        floored at ``SPACING_FLOOR`` times the median)."""
        d, _ = self.search(self.bank, min(k + 1, len(self.bank)))
        spacing = d[:, 1:].mean(1) if d.shape[1] > 1 else torch.ones(len(self.bank))
        return spacing.clamp_min(float(spacing.median()) * SPACING_FLOOR)


def nearest_distance(query: torch.Tensor, bank: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """Euclidean distance of each row of ``query (L, C)`` to its nearest row of ``bank (K, C)``
    (chunked ``torch.cdist``; :class:`NearestNeighbours` is the faster, faiss-backed way)."""
    out = []
    for start in range(0, len(query), chunk):
        out.append(torch.cdist(query[start:start + chunk], bank).min(1).values)
    return torch.cat(out) if out else query.new_zeros(0)
