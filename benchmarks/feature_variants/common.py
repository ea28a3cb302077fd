import os
import sys, time, numpy as np, torch, torch.nn.functional as F
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from _common import magnetic_tile_split
from PIL import Image
from sklearn.metrics import roc_auc_score
torch.set_num_threads(1)
STAGES = ("s8", "s16", "s32")
def load(part, size=256):
    z = np.load(f"/tmp/features/mt{size}{os.environ.get('FEATURE_SUFFIX', '')}_{part}.npz")
    n = int(z["n"])
    return [{s: torch.from_numpy(z[f"{s}_{i}"].astype(np.float32)) for s in STAGES} for i in range(n)]
def pyramid(maps, stages, pool=3):
    ms = [maps[s][None] for s in stages]
    if pool > 1:
        ms = [F.avg_pool2d(m, pool, 1, pool // 2, count_include_pad=False) for m in ms]
    size = max((m.shape[-2:] for m in ms), key=lambda hw: hw[0] * hw[1])
    ms = [m if m.shape[-2:] == size else F.interpolate(m, size=size, mode="bilinear", align_corners=False) for m in ms]
    return torch.cat(ms, 1)[0]
def pyr_grid(m, stages, grid, pool=3):
    ms = [F.avg_pool2d(m[s][None], pool, 1, pool // 2, count_include_pad=False) for s in stages]
    size = ms[stages.index(grid)].shape[-2:]
    out = [x if x.shape[-2:] == size else (F.adaptive_avg_pool2d(x, size) if x.shape[-2] > size[0] else F.interpolate(x, size=size, mode="bilinear", align_corners=False)) for x in ms]
    return torch.cat(out, 1)[0]
def split_info():
    sp = magnetic_tile_split()
    y = np.array(sp["test_labels"]); types = np.array(sp["test_types"])
    masks = [np.asarray(Image.open(p).convert("L")) > 127 for p in sp["test_masks"]]
    return y, types, masks
def upsample(m, hw, sigma):
    """The location map on the image, each location in the middle of its cell: the placing the
    figures published with these scripts were measured with (the detector now puts each where
    the backbone centred it, docs/magnetic_tile_features.md "Where the map puts each location")."""
    from reconad.detectors.features import smooth_map
    return smooth_map(F.interpolate(m[None, None], size=tuple(hw), mode="bilinear", align_corners=False), sigma)
def pixel_auc(maps, masks, sigma_short=4.0, short=256, every=3):
    s, t = [], []
    for m, k in zip(maps, masks):
        full = upsample(m.float(), k.shape, sigma_short * min(k.shape) / short)
        s.append(full[::every, ::every].ravel()); t.append(k[::every, ::every].ravel())
    return float(roc_auc_score(np.concatenate(t), np.concatenate(s)))
def image_aucs(maps, y):
    """Image ROC-AUC for the maximum, the top-10 and top-30 means and the means of the
    highest 1, 2, 3, 5, 10 and 15 % of each map's locations."""
    fns = {"max": lambda f: f.max(), "top10": lambda f: f.topk(min(10, len(f))).values.mean(),
           "top30": lambda f: f.topk(min(30, len(f))).values.mean()}
    for share in (0.01, 0.02, 0.03, 0.05, 0.10, 0.15):
        fns[f"top{share:.0%}"] = lambda f, share=share: f.topk(max(1, int(round(share * len(f))))).values.mean()
    return {name: round(float(roc_auc_score(y, [float(fn(m.flatten())) for m in maps])), 4)
            for name, fn in fns.items()}
def pool_and_bank(train, stages=("s16", "s32")):
    """The 100000 pooled training vectors (seed 0) and the indices of the 10000 chosen by the
    greedy coreset (distances in ``CORESET_DIM`` projected dimensions, 64 unless set), as
    feature_knn picks them; the bank is cached in /tmp/features."""
    from reconad.models.memory_bank import greedy_coreset
    vec = torch.cat([pyramid(m, stages).flatten(1).T for m in train])
    g = torch.Generator().manual_seed(0)
    pool = vec[torch.randperm(len(vec), generator=g)[:100000]].contiguous()
    dim = int(os.environ.get("CORESET_DIM", "64"))
    path = f"/tmp/features/bank_{'_'.join(stages)}_{dim}.pt"
    if os.path.exists(path):
        return pool, torch.load(path)
    keep = greedy_coreset(pool, 10000, projection_dim=dim)
    torch.save(keep, path)
    return pool, keep
def feature_vae(X, width, path, gen, epochs=20, latent=64, seed=0):
    """The feature VAE head (Gaussian decoder) trained on the standardised 1x1 rows ``X`` for
    ``epochs`` in batches of 1024 (Adam, 1e-3; batch order from the generator ``gen``), or
    loaded from ``path`` if it exists there."""
    from reconad.models.feature_heads import FeatureVAE
    from reconad.scoring.features import gaussian_nll, kl_standard_normal
    torch.manual_seed(seed)
    model = FeatureVAE(X.shape[1], latent, width)
    if os.path.exists(path):
        model.load_state_dict(torch.load(path))
        return model.eval()
    g = gen
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    B = 1024
    for ep in range(epochs):
        model.train(); perm = torch.randperm(len(X), generator=g)
        for b in range(0, len(X) - B + 1, B):
            x = X[perm[b:b + B]]
            mu, lv, mz, lz = model(x)
            loss = (gaussian_nll(x, mu, lv) + kl_standard_normal(mz, lz)).mean() / x.shape[1]
            opt.zero_grad(); loss.backward(); opt.step()
    torch.save(model.state_dict(), path)
    return model.eval()
