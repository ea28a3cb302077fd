"""Per-location feature VAE scored by M plus the distance of the location's code to the nearest
training code (the detector's ``score="code"``): the bank is a greedy coreset of 10,000 of the
training codes, and each term is divided by its median over 10,000 training vectors outside the
pool (and, not kept, M as a distance: the square root of M over its median plus the code
distance over its). Trains the head (latent 64, 20 epochs on 100,000 cached s16+s32 vectors) or loads it.

    python vae_code.py [--width 512] [--latent 64] [--model /tmp/features/vae_s0_model.pt] [--stages s8,s16,s32 --grid s16]
                       [--bank 10000] [--neighbours 1] [--bank-scale none|local] [--train-coreset N [--train-mix]]
"""
import os, sys, argparse
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import *
from reconad.models.memory_bank import NearestNeighbours, greedy_coreset
from reconad.scoring.features import unregularised_score
ap = argparse.ArgumentParser(); ap.add_argument("--epochs", type=int, default=20)
ap.add_argument("--width", type=int, default=512); ap.add_argument("--latent", type=int, default=64); ap.add_argument("--model", default=None)
ap.add_argument("--stages", default="s16,s32"); ap.add_argument("--bank", type=int, default=10000); ap.add_argument("--neighbours", type=int, default=1, help="mean distance to this many nearest bank codes")
ap.add_argument("--bank-scale", default="none", choices=["none", "local"], help="'local': each code's distance over its nearest bank code's spacing, as feature_knn's bank_scale"); ap.add_argument("--grid", default=None, help="stage whose grid the others are put on (default: the finest)")
ap.add_argument("--train-coreset", type=int, default=0, help="train the head on a greedy coreset of this many of the pool's vectors (epochs scaled to the same number of updates)")
ap.add_argument("--train-mix", action="store_true", help="with --train-coreset: train on the pool and the coreset together (coreset vectors seen twice)")
a = ap.parse_args()
stages = tuple(a.stages.split(","))
feat = (lambda m: pyr_grid(m, stages, a.grid)) if a.grid else (lambda m: pyramid(m, stages))
tag = "" if stages == ("s16", "s32") else "_" + "_".join(stages) + (f"_grid{a.grid}" if a.grid else "")
tag += "" if a.latent == 64 else f"_latent{a.latent}"
path = a.model or ("/tmp/features/vae_s0_model.pt" if a.width == 512 and not tag else f"/tmp/features/vae_w{a.width}{tag}_model.pt")
vec = torch.cat([feat(m).flatten(1).T for m in load("train")])
g = torch.Generator().manual_seed(0)
order = torch.randperm(len(vec), generator=g)
pool, held = vec[order[:100000]].contiguous(), vec[order[100000:110000]].contiguous()
mean, std = pool.mean(0), pool.std(0).clamp_min(1e-6)
X, H = [((v - mean) / std)[:, :, None, None] for v in (pool, held)]
if a.train_coreset:
    keep = greedy_coreset(X[:, :, 0, 0].contiguous(), a.train_coreset, projection_dim=64)
    T = torch.cat([X, X[keep]]) if a.train_mix else X[keep]
    path = path.replace("_model.pt", f"_tc{a.train_coreset}{'mix' if a.train_mix else ''}_model.pt")
    model = feature_vae(T, a.width, path, g, round(a.epochs * len(X) / len(T)), latent=a.latent)
else:
    model = feature_vae(X, a.width, path, g, a.epochs, latent=a.latent)
def terms(z):
    with torch.no_grad():
        mu, lv, mz, _ = model(z)
    return unregularised_score(z, mu, lv), mz
_, codes = terms(X)
codes = codes.flatten(1).contiguous()
bank = (codes if a.bank >= len(codes) else codes[greedy_coreset(codes, a.bank, projection_dim=32)]).contiguous()
index = NearestNeighbours(bank)
weight = None
if a.bank_scale == "local":
    spacing = index.spacing()
    weight = spacing.median() / spacing
def code_distance(q):
    d, idx = index.search(q, a.neighbours)
    return d.mean(1) if weight is None else d[:, 0] * weight[idx[:, 0]]
mh, zh = terms(H)
scale_m, scale_d = float(mh.median()), float(code_distance(zh.flatten(1).contiguous()).median())
y, types, masks = split_info()
Ms, Ds = [], []
for m in load("test"):
    f = feat(m); c, h, w = f.shape
    M, mz = terms(((f.flatten(1).T - mean) / std).T.reshape(1, c, h, w))
    Ms.append(M[0] / scale_m)
    Ds.append(code_distance(mz[0].flatten(1).T.contiguous()).reshape(h, w) / scale_d)
for name, maps in [("M", Ms), ("code distance", Ds), ("M + code distance", [p + q for p, q in zip(Ms, Ds)]),
                   ("sqrt(M) + code distance", [p.sqrt() + q for p, q in zip(Ms, Ds)])]:
    r = image_aucs(maps, y)
    print(f"width {a.width}, latent {a.latent}, bank {a.bank} {a.bank_scale}, {a.neighbours} neighbours, {name}: image {r['max']} / {r['top10']} / {r['top30']} (max / top-10 / top-30), "
          f"pixel {pixel_auc(maps, masks):.4f}", flush=True)
