"""feature_vae (20 epochs, default head) on the synthetic bricks of tests/test_features.py
(24 training images; 8 clean and 8 scratched test images), scored by M and by the code score:
image and pixel ROC-AUC of one fit.

    python bricks_vae_score.py
"""
import sys

from bricks import aucs, train

from reconad import ImageDetector

det = ImageDetector(model="feature_vae", image_size=144, verbose=0, epochs=20).fit(train)
print("| score | image / pixel ROC-AUC |\n|---|---|")
for score in ("unregularised", "code"):
    print(f"| {score} | {aucs(det, score)} |", flush=True)
