import os, sys
import sys; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import *
import faiss
"""feature_knn with distances normalised by the local spread of the normal vectors (the
paper's M = distance / sigma applied to the memory bank)."""
stages = ("s16", "s32")
train, test = load("train"), load("test")
y, types, masks = split_info()
pool, keep = pool_and_bank(train, stages)
bank = pool[keep].contiguous().numpy()
faiss.omp_set_num_threads(2)
ib = faiss.IndexFlatL2(bank.shape[1]); ib.add(bank)
ip = faiss.IndexFlatL2(bank.shape[1]); ip.add(pool.numpy())
# spread of the normal vectors around each bank vector: distances to its nearest pool vectors (itself excluded)
dp, _ = ip.search(bank, 11)
dp = np.sqrt(np.maximum(dp[:, 1:], 0))
dbb, _ = ib.search(bank, 4)
dbb = np.sqrt(np.maximum(dbb[:, 1:], 0))
sig = {"pool5": dp[:, :5].mean(1), "pool10": dp.mean(1), "pool1": dp[:, 0], "bank3": dbb.mean(1)}
K = 10
res = {}
qs = [pyramid(m, stages) for m in test]
D, I = [], []
for f in qs:
    c, h, w = f.shape
    d, i = ib.search(np.ascontiguousarray(f.flatten(1).T.numpy()), K)
    D.append(np.sqrt(np.maximum(d, 0)).reshape(h, w, K)); I.append(i.reshape(h, w, K))
def run(name, fn):
    maps = [torch.from_numpy(fn(d, i)).float() for d, i in zip(D, I)]
    print(name, image_aucs(maps, y), "px", round(pixel_auc(maps, masks), 4), flush=True)
    torch.save(maps, f"/tmp/features/maps_knn_{name}.pt")
run("plain", lambda d, i: d[..., 0])
run("mean3", lambda d, i: d[..., :3].mean(-1))
for nm, s in sig.items():
    s = np.maximum(s, np.median(s) * 0.05)
    run(f"nn_over_{nm}", lambda d, i, s=s: d[..., 0] / s[i[..., 0]])
    run(f"min_ratio_{nm}", lambda d, i, s=s: (d / s[i]).min(-1))
    run(f"half_{nm}", lambda d, i, s=s: (d / np.sqrt(s[i] * np.median(s))).min(-1))
# PatchCore's reweighting: 1 - softmax weight of the nearest among its bank neighbours
nb_d, _ = ib.search(bank, 9)
def patchcore(d, i):
    d1 = d[..., 0]; nd = np.sqrt(np.maximum(nb_d[i[..., 0]][..., 1:], 0))  # distances of the query's nn to its bank neighbours
    dd = np.sqrt(np.maximum(d1[..., None] ** 2, 0))
    # distances from query to those neighbours are approximated by d (first K)
    w = 1 - np.exp(d1 - d1.max()) / np.exp(d[..., :9] - d1.max()[..., None] if False else d[..., :9] - d1.max()).sum(-1)
    return w * d1
run("patchcore_rw", patchcore)
# Weights per bank vector from its spacing to the k nearest bank vectors (median / spacing),
# and the same weight only scaling down (<= 1), only up (>= 1), or its square root.
dbb10, _ = ib.search(bank, 11)
dbb10 = np.sqrt(np.maximum(dbb10[:, 1:], 0))
def run_weight(name, wt):
    maps = [torch.from_numpy(d[..., 0] * wt[i[..., 0]]).float() for d, i in zip(D, I)]
    r = image_aucs(maps, y)
    print(name, r["max"], r["top10"], r["top30"], "px", round(pixel_auc(maps, masks), 4), flush=True)
for k in (1, 3, 10):
    sp = dbb10[:, :k].mean(1); w = np.median(sp) / np.maximum(sp, 0.05 * np.median(sp))
    run_weight(f"k{k}", w)
    run_weight(f"k{k}_le1", np.minimum(w, 1)); run_weight(f"k{k}_ge1", np.maximum(w, 1)); run_weight(f"k{k}_sqrt", np.sqrt(w))
