"""Can the greedy coreset skip vectors that a new centre cannot get closer to? Two exact
prunings against the plain loop of ``greedy_coreset``, on the magnetic tiles' real pool
(s16 + s32 vectors of the training tiles from ``cache.py 256``, 100,000 drawn, projected to
32 dimensions as the default does):

* blocks: the pool cut into 256 blocks (nearest of 256 pivots); a block is updated only
  where the triangle inequality allows a vector in it to get closer to the new centre;
* centres: each vector remembers its nearest centre; only vectors whose centre lies within
  twice the current cover radius of the new centre are looked at.

Both pick the same vectors as the plain loop (up to float rounding in ties). Prints the
seconds, the share of vectors each looks at per step and whether the picks are identical.

    python benchmarks/feature_variants/coreset_pruning.py [centres, default 3000]
"""
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src"))
from reconad.models.memory_bank import greedy_coreset  # noqa: E402

torch.set_num_threads(1)
CACHE = os.environ.get("FEATURE_CACHE", "/tmp/features")


def real_pool(size: int = 100000) -> torch.Tensor:
    d = np.load(os.path.join(CACHE, "mt256_train.npz"))
    vecs = []
    for i in range(int(d["n"])):
        a = torch.from_numpy(d[f"s16_{i}"].astype(np.float32))
        b = torch.from_numpy(d[f"s32_{i}"].astype(np.float32))
        b = torch.nn.functional.interpolate(b[None], size=a.shape[1:], mode="nearest")[0]
        vecs.append(torch.cat([a, b]).flatten(1).T)
    x = torch.cat(vecs)
    return x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:size]].contiguous()


def projected(features: torch.Tensor, dim: int = 32, seed: int = 0) -> tuple[torch.Tensor, int]:
    """As ``greedy_coreset``: the same projection and first vector for the same seed."""
    gen = torch.Generator().manual_seed(seed)
    proj = torch.randn(features.shape[1], dim, generator=gen) / dim ** 0.5
    x = (features.float() @ proj).contiguous()
    return x, int(torch.randint(len(x), (1,), generator=gen))


def by_blocks(features: torch.Tensor, n: int, blocks: int = 256) -> tuple[torch.Tensor, float]:
    x, first = projected(features)
    m = len(x)
    pivots = x[torch.randperm(m, generator=torch.Generator().manual_seed(1))[:blocks]]
    label = torch.cdist(x, pivots).argmin(1)
    order = torch.argsort(label, stable=True)
    x, label = x[order].contiguous(), label[order]
    counts = torch.bincount(label, minlength=blocks)
    starts = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)]).tolist()
    centre = torch.stack([x[starts[b]:starts[b + 1]].mean(0) if counts[b] else pivots[b] for b in range(blocks)])
    radius = torch.tensor([float((x[starts[b]:starts[b + 1]] - centre[b]).norm(dim=1).max()) if counts[b] else 0.0
                           for b in range(blocks)])
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(m)
    norms = x.square().sum(1)
    dist = torch.full((m,), float("inf"))
    block_max = torch.where(counts > 0, torch.tensor(float("inf")), torch.tensor(-1.0))
    chosen, looked, idx = torch.empty(n, dtype=torch.long), 0, int(inverse[first])
    for i in range(n):
        chosen[i] = order[idx]
        c = x[idx]
        bound = ((centre - c).norm(dim=1) - radius).clamp_min(0).square()
        for b in (bound < block_max).nonzero().flatten().tolist():
            s, t = starts[b], starts[b + 1]
            seg = dist[s:t]
            torch.minimum(seg, torch.mv(x[s:t], c).mul_(-2).add_(norms[s:t]).add_(norms[idx]), out=seg)
            block_max[b] = seg.max()
            looked += t - s
        best = int(block_max.argmax())
        idx = starts[best] + int(dist[starts[best]:starts[best + 1]].argmax())
    return chosen, looked / n / m


def by_centres(features: torch.Tensor, n: int) -> tuple[torch.Tensor, float]:
    x, idx = projected(features)
    m, dim = x.shape
    norms = x.square().sum(1)
    centres, cover = torch.empty(n, dim), torch.zeros(n)
    dist, nearest = torch.full((m,), float("inf")), torch.zeros(m, dtype=torch.long)
    chosen, looked = torch.empty(n, dtype=torch.long), 0
    for i in range(n):
        chosen[i] = idx
        c = x[idx]
        centres[i] = c
        rows = (torch.arange(m) if i == 0 else
                ((centres[:i] - c).norm(dim=1) < 2 * cover[:i])[nearest].nonzero().squeeze(1))
        d = norms[rows] - 2 * (x[rows] @ c) + norms[idx]
        closer = d < dist[rows]
        dist[rows[closer]], nearest[rows[closer]] = d[closer], i
        if closer.any():
            cover[i] = d[closer].clamp_min(0).max().sqrt()
        looked += len(rows)
        idx = int(dist.argmax())
    return chosen, looked / n / m


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    pool = real_pool()
    t = time.perf_counter()
    plain = greedy_coreset(pool, n, projection_dim=32)
    print(f"| variant | seconds for {n} centres | share of vectors looked at per step | same picks |")
    print("|---|---|---|---|")
    print(f"| plain loop (the default) | {time.perf_counter() - t:.1f} | 1 | yes |")
    for name, fn in (("blocks", by_blocks), ("centres", by_centres)):
        t = time.perf_counter()
        picks, share = fn(pool, n)
        print(f"| {name} | {time.perf_counter() - t:.1f} | {share:.2f} | {'yes' if torch.equal(picks, plain) else 'no'} |")
