"""Per-location feature VAE scored by M, then M over its typical value among the training
vectors whose codes lie nearest (the local normalisation the memory bank gets from its
spacing). Trains the default head (512 / 64, 20 epochs) on the cached s16+s32 vectors."""
import os, sys, argparse
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import *
from reconad.scoring.features import unregularised_score
ap = argparse.ArgumentParser(); ap.add_argument("--epochs", type=int, default=20)
ap.add_argument("--model", default="/tmp/features/vae_s0_model.pt"); ap.add_argument("--width", type=int, default=512)
ap.add_argument("--refs", default="all", help="reference codes: all, random, coreset (10000 of them)")
a = ap.parse_args()
stages = ("s16", "s32")
tr = [pyramid(m, stages) for m in load("train")]
vec = torch.cat([f.flatten(1).T for f in tr])
g = torch.Generator().manual_seed(0)
pool = vec[torch.randperm(len(vec), generator=g)[:100000]].contiguous()
mean, std = pool.mean(0), pool.std(0).clamp_min(1e-6)
X = ((pool - mean) / std)[:, :, None, None]
model = feature_vae(X, a.width, a.model, g, a.epochs)
with torch.no_grad():
    mu, lv, mz, _ = model(X)
    trainM = unregularised_score(X, mu, lv).flatten()
    codes = mz.flatten(1).contiguous()
if a.refs != "all":
    from reconad.models.memory_bank import greedy_coreset
    keep = torch.randperm(len(codes), generator=torch.Generator().manual_seed(1))[:10000] if a.refs == "random" else greedy_coreset(codes, 10000, projection_dim=64)
    codes, trainM = codes[keep].contiguous(), trainM[keep]
print("train M median", float(trainM.median()), "channels/2", X.shape[1] / 2, flush=True)
y, types, masks = split_info()
Ms, Zs = [], []
with torch.no_grad():
    for m in load("test"):
        f = pyramid(m, stages); c, h, w = f.shape
        z = ((f.flatten(1).T - mean) / std).T.reshape(1, c, h, w)
        mu, lv, mz, _ = model(z)
        Ms.append(unregularised_score(z, mu, lv)[0]); Zs.append(mz[0].flatten(1).T.contiguous())
from reconad.models.memory_bank import NearestNeighbours
index = NearestNeighbours(codes)
K = 10
found = [index.search(Z, K) for Z in Zs]
r = image_aucs(Ms, y); print("M", r["max"], r["top10"], r["top30"], "px", round(pixel_auc(Ms, masks), 4), flush=True)
for k in (1, 3, 10):
    maps = [M / trainM[I[:, :k]].mean(1).reshape(M.shape) for M, (_, I) in zip(Ms, found)]
    r = image_aucs(maps, y); print(f"M/typical k={k}", r["max"], r["top10"], r["top30"], "px", round(pixel_auc(maps, masks), 4), flush=True)
    maps = [D[:, :k].mean(1).reshape(M.shape) for M, (D, _) in zip(Ms, found)]
    r = image_aucs(maps, y); print(f"code distance k={k}", r["max"], r["top10"], r["top30"], "px", round(pixel_auc(maps, masks), 4), flush=True)
