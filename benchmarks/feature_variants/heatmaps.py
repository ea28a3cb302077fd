import sys; import os; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import *
from reconad.evaluation import plots
sp = magnetic_tile_split(); y = np.array(sp["test_labels"]); types = np.array(sp["test_types"])
pick = [int(i) for i in np.flatnonzero(types == "MT_Free")[:2]]
pick += [int(np.flatnonzero(types == t)[0]) for t in sorted(set(types) - {"MT_Free"})]
imgs = [np.asarray(Image.open(sp["test"][i]).convert("L"), dtype=np.float32) / 255 for i in pick]
masks = [np.asarray(Image.open(sp["test_masks"][i]).convert("L")) > 127 for i in pick]
for tag, f in [("feature_rd", "maps_rd_c.pt"), ("feature_knn", "knnmaps_s16_s32_64.pt")]:
    maps = torch.load(f"/tmp/features/" + f)
    full = [upsample(maps[i].float(), im.shape, 4.0 * min(im.shape) / 256) for i, im in zip(pick, imgs)]
    scores = [float(maps[i].flatten().topk(10).values.mean()) for i in pick]
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs",
                       f"magnetic_tile_features_heatmaps_{tag}.png")
    plots.heatmap_overlays(imgs, full, out, masks=masks, scores=scores, labels=list(y[pick]), cols=len(pick))
print("ok")
