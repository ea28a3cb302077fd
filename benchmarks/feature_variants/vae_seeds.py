"""The test maps saved by ``vae_exp.py --save FILE`` (several seeds): image and pixel ROC-AUC of
each, of their mean, and of M + w D (the KL term D per location, each over its median).

    python vae_seeds.py /tmp/features/vaemaps_s0.pt /tmp/features/vaemaps_s1.pt
"""
import os, sys, torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import image_aucs, pixel_auc, split_info
y, types, masks = split_info()
files = sys.argv[1:]
ms = [torch.load(f)["M"] for f in files]
for f, m in zip(files, ms):
    r = image_aucs(m, y); print(f, r["max"], r["top10"], r["top30"])
# average of the maps, each over its median over all test locations (scales alike)
avg = [sum(m[i] for m in ms) / len(ms) for i in range(len(ms[0]))]
r = image_aucs(avg, y); print("mean", r["max"], r["top10"], r["top30"], "px", round(pixel_auc(avg, masks), 4))
# M plus w times D, each over its median over the test locations of the defect-free... (use all test locations' median: a scale only)
for f in files:
    d = torch.load(f)
    if "D" not in d: continue
    M, D = d["M"], d["D"]
    mM = torch.cat([m.flatten() for m in M]).median(); mD = torch.cat([m.flatten() for m in D]).median()
    r = image_aucs(D, y); print(f, "D alone", r["top10"], "px", round(pixel_auc(D, masks), 4))
    for w in (0.25, 0.5, 1.0):
        s = [m / mM + w * dd / mD for m, dd in zip(M, D)]
        r = image_aucs(s, y); print(f, "M+%.2fD" % w, r["max"], r["top10"], r["top30"], "px", round(pixel_auc(s, masks), 4))
