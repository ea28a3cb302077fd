"""feature_vae (20 epochs, default head) on the synthetic bricks of tests/test_features.py
(24 training images; 8 clean and 8 scratched test images), scored by M and by the code score:
image and pixel ROC-AUC of one fit on stages s16 + s32, or with ``s8`` on s8 + s16 + s32 on
the s16 grid (the default).

    python bricks_vae_score.py [s8]
"""
import sys

import sys

from bricks import aucs, train

from reconad import ImageDetector

layout = ({"stages": ("s8", "s16", "s32"), "grid": "s16"} if sys.argv[1:] == ["s8"]
          else {"stages": ("s16", "s32"), "grid": None})
det = ImageDetector(model="feature_vae", image_size=144, verbose=0, epochs=20, model_kwargs=layout).fit(train)
print("| score | image / pixel ROC-AUC |\n|---|---|")
for score in ("unregularised", "code"):
    print(f"| {score} | {aucs(det, score)} |", flush=True)
