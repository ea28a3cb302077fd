import os, sys
import sys, argparse; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import *
"""Per-location feature VAE (Gaussian decoder) on the cached s16+s32 vectors, scored by M."""
from reconad.models.feature_heads import FeatureVAE
from reconad.scoring.features import unregularised_score, gaussian_nll, kl_standard_normal
ap = argparse.ArgumentParser(); ap.add_argument("--epochs", type=int, default=20); ap.add_argument("--latent", type=int, default=32)
ap.add_argument("--width", type=int, default=256); ap.add_argument("--beta", type=float, default=1.0); ap.add_argument("--lr", type=float, default=1e-3)
ap.add_argument("--n", type=int, default=100000); ap.add_argument("--tag", default="vae")
ap.add_argument("--seed", type=int, default=0); ap.add_argument("--save", default=None, help="file to save the test maps to (torch.save)")
ap.add_argument("--stages", default="s16,s32"); ap.add_argument("--grid", default=None, help="stage whose grid the others are put on (default: the finest)")
a = ap.parse_args()
stages = tuple(a.stages.split(","))
feat = (lambda m: pyr_grid(m, stages, a.grid)) if a.grid else (lambda m: pyramid(m, stages))
tr = [feat(m) for m in load("train")]
vec = torch.cat([f.flatten(1).T for f in tr])
g = torch.Generator().manual_seed(0)
pool = vec[torch.randperm(len(vec), generator=g)[:a.n]].contiguous()
mean, std = pool.mean(0), pool.std(0).clamp_min(1e-6)
X = ((pool - mean) / std)[:, :, None, None]
torch.manual_seed(a.seed)
model = FeatureVAE(X.shape[1], a.latent, a.width)
opt = torch.optim.Adam(model.parameters(), lr=a.lr)
B = 1024
for ep in range(a.epochs):
    t = time.perf_counter(); model.train(); perm = torch.randperm(len(X), generator=g); tot = 0
    for b in range(0, len(X) - B + 1, B):
        x = X[perm[b:b + B]]
        mu, lv, mz, lz = model(x)
        loss = (gaussian_nll(x, mu, lv) + a.beta * kl_standard_normal(mz, lz)).mean() / x.shape[1]
        opt.zero_grad(); loss.backward(); opt.step(); tot += float(loss.detach())
    if ep % 5 == 4 or ep == a.epochs - 1: print(ep, round(tot / (len(X) // B), 4), f"{time.perf_counter() - t:.1f}s", flush=True)
model.eval()
y, types, masks = split_info()
maps = {"M": [], "nll": [], "mse": [], "D": []}
with torch.no_grad():
    for m in load("test"):
        f = feat(m); c, h, w = f.shape
        z = ((f.flatten(1).T - mean) / std).T.reshape(1, c, h, w)
        mu, lv, mz, lz = model(z)
        maps["D"].append(kl_standard_normal(mz, lz)[0])
        maps["M"].append(unregularised_score(z, mu, lv)[0]); maps["nll"].append(gaussian_nll(z, mu, lv)[0])
        maps["mse"].append((z - mu).square().sum(1)[0])
if a.save:
    torch.save(maps, a.save)
for k, ms in maps.items():
    r = image_aucs(ms, y)
    print(a.tag, k, r["max"], r["top10"], r["top30"], "px", round(pixel_auc(ms, masks), 4), flush=True)
