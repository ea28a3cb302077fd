"""feature_knn with stages s8 + s16 + s32 on the s8 grid (four times the locations of the default
s16 grid), on the cached magnetic tile features: bank of 10,000 chosen by greedy coreset (64
projected dimensions) from 100,000 pooled training vectors, distances over the bank's local spacing
(``bank_scale="local"``, as "auto" gives here), maps placed where the backbone centred each location.
Image ROC-AUC for the top-10 mean and for the mean over the same image area as the s16 grid's top-10
(top-40); pixel ROC-AUC on every third pixel.

    python knn_grid8.py [s8|s16]
"""
import os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import *
from reconad.models.memory_bank import greedy_coreset, NearestNeighbours
from reconad.detectors.features import upsample_map

grid = sys.argv[1] if len(sys.argv) > 1 else "s8"
stride = int(grid[1:])
stages = ("s8", "s16", "s32")
train, test = load("train"), load("test")
y, types, masks = split_info()
vec = torch.cat([pyr_grid(m, stages, grid).flatten(1).T for m in train])
g = torch.Generator().manual_seed(0)
pool = vec[torch.randperm(len(vec), generator=g)[:100000]].contiguous()
del vec
nn_ = NearestNeighbours(pool[greedy_coreset(pool, 10000, projection_dim=64)].contiguous())
weight = nn_.spacing().median() / nn_.spacing()
maps, t = [], time.perf_counter()
for m in test:
    f = pyr_grid(m, stages, grid); c, h, w = f.shape
    d, i = nn_.search(f.flatten(1).T)
    maps.append((d[:, 0] * weight[i[:, 0]]).view(h, w))
print(f"grid {grid}: scoring {1000 * (time.perf_counter() - t) / len(test):.0f} ms/image (head only, one thread)")
area_k = 10 * (16 // stride) ** 2
for k in sorted({10, area_k}):
    auc = roc_auc_score(y, [float(m.flatten().topk(k).values.mean()) for m in maps])
    print(f"grid {grid}: image ROC-AUC, top-{k} mean {auc:.4f}")
s, t_ = [], []
for m, k_ in zip(maps, masks):
    full = upsample_map(m, k_.shape, 4.0 * min(k_.shape) / 256, stride, 256)
    s.append(full[::3, ::3].ravel()); t_.append(k_[::3, ::3].ravel())
print(f"grid {grid}: pixel ROC-AUC {roc_auc_score(np.concatenate(t_), np.concatenate(s)):.4f}", flush=True)
