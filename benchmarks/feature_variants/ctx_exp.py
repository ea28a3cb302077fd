import os, sys
import sys, argparse; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import *
"""Context-conditioned Gaussian in feature space: each location's feature vector is predicted
linearly from the vectors of a ring of neighbours (not itself), the residual is scored by its
Mahalanobis distance (the paper's M with a full covariance)."""
ap = argparse.ArgumentParser(); ap.add_argument("--dim", type=int, default=128); ap.add_argument("--ring", type=int, default=2)
ap.add_argument("--stages", default="s16,s32"); ap.add_argument("--pool", type=int, default=3)
ap.add_argument("--ridge", type=float, default=1e-2); ap.add_argument("--shrink", type=float, default=0.01)
ap.add_argument("--mode", default="ring"); ap.add_argument("--tag", default="ctx")
a = ap.parse_args()
stages = tuple(a.stages.split(","))
train = [pyramid(m, stages, a.pool) for m in load("train")]
test = [pyramid(m, stages, a.pool) for m in load("test")]
y, types, masks = split_info()
t0 = time.perf_counter()
vec = torch.cat([f.flatten(1).T for f in train]).double()
mu = vec.mean(0); g = torch.Generator().manual_seed(0)
sub = vec[torch.randperm(len(vec), generator=g)[:50000]] - mu
U, S, V = torch.linalg.svd(sub, full_matrices=False)
P = V[:a.dim].T  # (C, d)
def reduce(f):
    c, h, w = f.shape
    return ((f.flatten(1).T.double() - mu) @ P).T.reshape(-1, h, w)
r = a.ring
offs = [(dy, dx) for dy in (-r, 0, r) for dx in (-r, 0, r) if (dy, dx) != (0, 0)] if a.mode == "ring" else []
def context(z):
    d, h, w = z.shape
    zp = F.pad(z[None], (r, r, r, r), mode="replicate")[0]
    parts = [zp[:, r + dy:r + dy + h, r + dx:r + dx + w] for dy, dx in offs]
    parts.append(z.mean((1, 2), keepdim=True).expand(d, h, w))  # the image's mean vector
    return torch.cat(parts).flatten(1).T
def pairs(f):
    z = reduce(f)
    return z.flatten(1).T, context(z)
T, C = zip(*[pairs(f) for f in train]); T = torch.cat(T); C = torch.cat(C)
cm = C.mean(0); tm = T.mean(0)
Cc = C - cm; Tc = T - tm
A = Cc.T @ Cc / len(C); A += a.ridge * torch.eye(len(A), dtype=A.dtype) * A.diagonal().mean()
W = torch.linalg.solve(A, Cc.T @ Tc / len(C))
R = Tc - Cc @ W
cov = R.T @ R / len(R)
cov = (1 - a.shrink) * cov + a.shrink * torch.eye(len(cov), dtype=cov.dtype) * cov.diagonal().mean()
prec = torch.linalg.inv(cov)
cov0 = Tc.T @ Tc / len(Tc); cov0 = (1 - a.shrink) * cov0 + a.shrink * torch.eye(len(cov0), dtype=cov0.dtype) * cov0.diagonal().mean()
prec0 = torch.linalg.inv(cov0)
print(f"fit {time.perf_counter() - t0:.1f}s  explained {1 - R.var(0).sum() / Tc.var(0).sum():.3f}", flush=True)
maps, maps0 = [], []
t1 = time.perf_counter()
for f in test:
    c, h, w = f.shape
    tt, cc = pairs(f)
    res = (tt - tm) - (cc - cm) @ W
    maps.append(((res @ prec) * res).sum(1).view(h, w).float().sqrt())
    d0 = tt - tm
    maps0.append(((d0 @ prec0) * d0).sum(1).view(h, w).float().sqrt())
print(f"score {1000 * (time.perf_counter() - t1) / len(test):.0f} ms/img")
print(a.tag, "context", image_aucs(maps, y), "px", round(pixel_auc(maps, masks), 4), flush=True)
print(a.tag, "no context", image_aucs(maps0, y), "px", round(pixel_auc(maps0, masks), 4), flush=True)
torch.save(maps, f"/tmp/features/maps_{a.tag}.pt")
