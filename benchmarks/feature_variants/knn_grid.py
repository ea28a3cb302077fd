import os, sys
import sys; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import *
from reconad.models.memory_bank import greedy_coreset, NearestNeighbours
from reconad.models.features import FeaturePyramid
train, test = load("train"), load("test")
y, types, masks = split_info()
stages, grid = ("s8", "s16", "s32"), "s16"
tr = [pyr_grid(m, stages, grid) for m in train]
vec = torch.cat([f.flatten(1).T for f in tr])
g = torch.Generator().manual_seed(0)
pool = vec[torch.randperm(len(vec), generator=g)[:100000]]
DIM = int(os.environ.get("CORESET_DIM", "64"))
t1 = time.perf_counter(); keep = greedy_coreset(pool, 10000, projection_dim=DIM); t2 = time.perf_counter()
nn_ = NearestNeighbours(pool[keep].contiguous()); maps = []
for m in test:
    f = pyr_grid(m, stages, grid); c, h, w = f.shape
    maps.append(nn_.distance(f.flatten(1).T).view(h, w))
t3 = time.perf_counter()
print(stages, grid, f"coreset {t2-t1:.0f}s score {1000*(t3-t2)/len(test):.0f}ms/img", image_aucs(maps, y), "px", round(pixel_auc(maps, masks), 4), flush=True)
torch.save(maps, f"/tmp/features/knnmaps_s8_s16_s32_grid16{os.environ.get('FEATURE_SUFFIX', '')}.pt")
# the same bank, distances over the bank's local spacing (bank_scale="local")
spacing = nn_.spacing(); weight = spacing.median() / spacing
maps = []
for m in test:
    f = pyr_grid(m, stages, grid); c, h, w = f.shape
    d, i = nn_.search(f.flatten(1).T)
    maps.append((d[:, 0] * weight[i[:, 0]]).view(h, w))
print(stages, grid, "bank_scale local", image_aucs(maps, y), "px", round(pixel_auc(maps, masks), 4), flush=True)
