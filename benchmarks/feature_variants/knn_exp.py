import os, sys
import sys; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import *
from reconad.models.memory_bank import greedy_coreset, NearestNeighbours
train, test = load("train"), load("test")
y, types, masks = split_info()
configs = [(("s16", "s32"), 128), (("s16", "s32"), 64), (("s8", "s16", "s32"), 64), (("s8", "s16"), 64)]
if len(sys.argv) > 1: configs = [configs[int(i)] for i in sys.argv[1].split(",")]
for stages, dim in configs:
    t = time.perf_counter()
    tr = [pyramid(m, stages) for m in train]
    vec = torch.cat([f.flatten(1).T for f in tr])
    g = torch.Generator().manual_seed(0)
    pool = vec[torch.randperm(len(vec), generator=g)[:100000]]
    t1 = time.perf_counter()
    keep = greedy_coreset(pool, 10000, projection_dim=dim)
    t2 = time.perf_counter()
    nn_ = NearestNeighbours(pool[keep].contiguous())
    maps = []
    for m in test:
        f = pyramid(m, stages); c, h, w = f.shape
        maps.append(nn_.distance(f.flatten(1).T).view(h, w))
    t3 = time.perf_counter()
    print(stages, dim, f"coreset {t2-t1:.0f}s score {1000*(t3-t2)/len(test):.0f}ms/img", image_aucs(maps, y), "px", round(pixel_auc(maps, masks), 4), flush=True)
    torch.save(maps, f"/tmp/features/knnmaps_{'_'.join(stages)}_{dim}.pt")
