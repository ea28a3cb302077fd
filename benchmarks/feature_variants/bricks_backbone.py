"""feature_knn with the default settings and each EfficientNet-Lite backbone on the synthetic
bricks of tests/test_features.py (24 training images; 8 clean and 8 scratched test images):
image and pixel ROC-AUC.

    python bricks_backbone.py [efficientnet_lite0,efficientnet_lite1,efficientnet_lite2]
"""
import sys

from bricks import aucs, train

from reconad import ImageDetector

backbones = (sys.argv[1] if len(sys.argv) > 1 else "efficientnet_lite0,efficientnet_lite1,efficientnet_lite2").split(",")
print("| backbone | image / pixel ROC-AUC |\n|---|---|")
for backbone in backbones:
    det = ImageDetector(model="feature_knn", image_size=144, backbone=backbone, verbose=0,
                        model_kwargs={"batch_vectors": 256}).fit(train)
    print(f"| {backbone} | {aucs(det)} |", flush=True)
