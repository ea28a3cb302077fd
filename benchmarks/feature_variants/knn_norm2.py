import os, sys
import sys; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import *
import faiss
from reconad.models.memory_bank import greedy_coreset
stages = ("s16", "s32")
train, test = load("train"), load("test")
y, types, masks = split_info()
tr = [pyramid(m, stages) for m in train]
vec = torch.cat([f.flatten(1).T for f in tr])
g = torch.Generator().manual_seed(0)
pool = vec[torch.randperm(len(vec), generator=g)[:100000]].contiguous()
keep = torch.load("/tmp/features/bank_s16_s32.pt")
bank = pool[keep].contiguous().numpy()
faiss.omp_set_num_threads(1)
ib = faiss.IndexFlatL2(bank.shape[1]); ib.add(bank)
dbb, _ = ib.search(bank, 11)
dbb = np.sqrt(np.maximum(dbb[:, 1:], 0))
qs = [pyramid(m, stages) for m in test]
D, I = [], []
for f in qs:
    c, h, w = f.shape
    d, i = ib.search(np.ascontiguousarray(f.flatten(1).T.numpy()), 1)
    D.append(np.sqrt(np.maximum(d, 0)).reshape(h, w)); I.append(i.reshape(h, w))
def run(name, wt):
    maps = [torch.from_numpy(d * wt[i]).float() for d, i in zip(D, I)]
    r = image_aucs(maps, y)
    print(name, r["max"], r["top10"], r["top30"], "px", round(pixel_auc(maps, masks), 4), flush=True)
for k in (1, 3, 10):
    sp = dbb[:, :k].mean(1); w = np.median(sp) / np.maximum(sp, 0.05 * np.median(sp))
    run(f"k{k}", w)
    run(f"k{k}_le1", np.minimum(w, 1)); run(f"k{k}_ge1", np.maximum(w, 1)); run(f"k{k}_sqrt", np.sqrt(w))
