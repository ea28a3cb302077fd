import os, sys
import time, torch, numpy as np, faiss, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src"))
from reconad.models.memory_bank import greedy_coreset, nearest_distance
torch.set_num_threads(1); faiss.omp_set_num_threads(1)
x = torch.randn(100000, 432)
for pool, dim, n in [(100000, 128, 1000), (100000, 64, 1000), (50000, 64, 1000), (100000, 32, 1000)]:
    t = time.perf_counter(); greedy_coreset(x[:pool], n, projection_dim=dim); dt = time.perf_counter() - t
    print(pool, dim, f"{dt:.2f}s per {n} -> {dt*10:.0f}s for 10000", flush=True)
bank = x[:10000].contiguous(); q = torch.randn(2000, 432)
t = time.perf_counter(); d1 = nearest_distance(q, bank); print("cdist", time.perf_counter() - t)
idx = faiss.IndexFlatL2(432); idx.add(bank.numpy())
t = time.perf_counter(); D, I = idx.search(q.numpy(), 1); print("faiss flat", time.perf_counter() - t, float((D[:,0]**.5 - d1.numpy()).__abs__().max()))
h = faiss.IndexHNSWFlat(432, 32); t = time.perf_counter(); h.add(bank.numpy()); print("hnsw build", time.perf_counter() - t)
h.hnsw.efSearch = 64
t = time.perf_counter(); D2, _ = h.search(q.numpy(), 1); print("hnsw search", time.perf_counter() - t, float(np.mean(np.isclose(D2[:,0], D[:,0]))))
