"""feature_knn with bank_scale "none" and "local" on the synthetic bricks of tests/test_features.py,
for banks that keep a share of the 2376 training vectors (1.0: all of them, the default's bank
there): image and pixel ROC-AUC of the scratched bricks against clean ones. Also the stages
s16 + s32 alone with every vector kept.

    python bricks_bank_scale.py [shares, default 1,0.84,0.63,0.5,0.38,0.33,0.25,0.17,0.08]
"""
import sys

from bricks import aucs, train

from reconad import ImageDetector

shares = [float(s) for s in (sys.argv[1] if len(sys.argv) > 1 else "1,0.84,0.63,0.5,0.38,0.33,0.25,0.17,0.08").split(",")]
POOL = 2376  # 24 bricks of 144 x 144 pixels: 9 x 11 s16 locations each
runs = [("s16 + s32, all", {"stages": ("s16", "s32"), "grid": None, "memory_size": POOL})]
runs += [(f"{share:.2f} of the vectors", {"memory_size": max(1, round(share * POOL))}) for share in shares]
print("| bank | plain: image / pixel | local: image / pixel |\n|---|---|---|")
for name, kw in runs:
    cells = []
    for scale in ("none", "local"):
        det = ImageDetector(model="feature_knn", image_size=144, verbose=0,
                            model_kwargs={"batch_vectors": 256, "bank_scale": scale, **kw}).fit(train)
        cells.append(aucs(det))
    print(f"| {name} ({len(det.memory_bank_)}) | {cells[0]} | {cells[1]} |", flush=True)
