import os, sys
"""feature_knn (s8 + s16 + s32 on the s16 grid, defaults) with the stages put on the grid in
other ways; distances over the bank's spacing (bank_scale local, as "auto" gives on the tiles),
maps placed where the backbone centred each location, pixel ROC-AUC on every third pixel.
FEATURE_SUFFIX picks the cached features.

    python knn_centred.py MODE        (SEED=1: the pool and coreset of seed 1)

MODE: ``resized`` the default (s32 resized bilinearly, s8 averaged over the cell); ``coarse`` s32
read at the pixel each s16 location is centred on (j/2, bilinear, edge extended), s8 as the
default; ``centred`` s32 and s8 read at that pixel; ``tri`` s8 weighted 1/4, 1/2, 1/4 around it;
``reppool`` the default with each stage's 3x3 mean taken with the edge repeated."""
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import *
from reconad.models.memory_bank import greedy_coreset, NearestNeighbours
from reconad.detectors.features import upsample_map

STRIDES = {"s8": 8, "s16": 16, "s32": 32}

def centred(m, stages, grid, pool=3):
    ms = [F.avg_pool2d(m[s][None], pool, 1, pool // 2, count_include_pad=False) for s in stages]
    h, w = ms[stages.index(grid)].shape[-2:]
    g = STRIDES[grid]
    out = []
    for s, x in zip(stages, ms):
        if s == grid:
            out.append(x); continue
        if STRIDES[s] < g and MODE == "coarse":  # finer stage: the cell average, as the default
            out.append(F.adaptive_avg_pool2d(x, (h, w))); continue
        if STRIDES[s] < g and MODE == "tri":  # finer stage: weights 1/4, 1/2, 1/4 centred on the location
            k = torch.tensor([0.25, 0.5, 0.25])
            x = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), (k[:, None] * k[None, :]).expand(x.shape[1], 1, 3, 3).contiguous(), groups=x.shape[1])
        r = g / STRIDES[s]
        H, W = x.shape[-2:]
        ys = (torch.arange(h) * r).clamp(max=H - 1); xs = (torch.arange(w) * r).clamp(max=W - 1)
        # grid_sample with align_corners=True: -1 <-> location 0, +1 <-> location n-1
        gy = ys / max(H - 1, 1) * 2 - 1; gx = xs / max(W - 1, 1) * 2 - 1
        gr = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], -1)[None]
        out.append(F.grid_sample(x, gr, mode="bilinear", padding_mode="border", align_corners=True))
    return torch.cat(out, 1)[0]

mode = MODE = sys.argv[1] if len(sys.argv) > 1 else "centred"
train, test = load("train"), load("test")
y, types, masks = split_info()
stages, grid = ("s8", "s16", "s32"), "s16"
def rep_pool(m, stages, grid):  # the 3x3 mean with the edge repeated: every location averages 9
    mm = {s: F.avg_pool2d(F.pad(m[s][None], (1, 1, 1, 1), mode="replicate"), 3, 1, 0)[0] for s in stages}
    return pyr_grid(mm, stages, grid, pool=1)
feat = {"resized": lambda m: pyr_grid(m, stages, grid), "reppool": lambda m: rep_pool(m, stages, grid)}.get(
    mode, lambda m: centred(m, stages, grid))
vec = torch.cat([feat(m).flatten(1).T for m in train])
g = torch.Generator().manual_seed(int(os.environ.get("SEED", "0")))
pool = vec[torch.randperm(len(vec), generator=g)[:100000]]
keep = greedy_coreset(pool, 10000, projection_dim=64)
nn_ = NearestNeighbours(pool[keep].contiguous())
spacing = nn_.spacing(); weight = spacing.median() / spacing
maps = []
for m in test:
    f = feat(m); c, h, w = f.shape
    d, i = nn_.search(f.flatten(1).T)
    maps.append((d[:, 0] * weight[i[:, 0]]).view(h, w))
def placed_pixel_auc(maps, masks, every=3):
    from sklearn.metrics import roc_auc_score
    s, t = [], []
    for m, k in zip(maps, masks):
        full = upsample_map(m.float()[None, None], k.shape, 4.0 * min(k.shape) / 256, stride=16, short=256)
        full = np.asarray(full).reshape(k.shape)
        s.append(full[::every, ::every].ravel()); t.append(k[::every, ::every].ravel())
    return float(roc_auc_score(np.concatenate(t), np.concatenate(s)))
torch.save(maps, f"/tmp/features/maps_centred_{mode}_{os.environ.get('SEED', '0')}.pt")
print(mode, os.environ.get("FEATURE_SUFFIX", ""), image_aucs(maps, y), "px placed", round(placed_pixel_auc(maps, masks), 4), flush=True)
