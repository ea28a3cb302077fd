"""Fit and scoring speed of ``feature_knn`` with its defaults on the magnetic tiles.

Fits on the 761 defect-free training images (feature extraction + greedy coreset), scores
``--score-images`` test images, and times ``anomaly_map`` of one 640x480 image (median of
three); wall-clock and CPU seconds of the process (summed over its threads).

    python benchmarks/feature_speed.py [--threads 1] [--score-images 100]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from PIL import Image

from _common import machine, magnetic_tile_split

from reconad import ImageDetector


def timed(fn):
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--score-images", type=int, default=100)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    split = magnetic_tile_split()
    train = [str(p) for p in split["train"]]
    test = [str(p) for p in split["test"]][:: max(1, len(split["test"]) // args.score_images)][:args.score_images]
    det = ImageDetector(model="feature_knn", verbose=0)
    _, fit_s, fit_cpu = timed(lambda: det.fit(train))
    _, score_s, score_cpu = timed(lambda: det.decision_function(test))
    big = np.asarray(Image.open(test[-1]).convert("L").resize((640, 480), Image.BILINEAR))
    det.anomaly_map(big[None])
    runs = [timed(lambda: det.anomaly_map(big[None]))[1:] for _ in range(3)]
    print(f"machine: {machine()}")
    print(f"fit on {len(train)} images: {fit_s:.1f} s wall, {fit_cpu:.1f} s CPU")
    print(f"scoring {len(test)} images: {1000 * score_s / len(test):.0f} ms/image wall, "
          f"{1000 * score_cpu / len(test):.0f} ms/image CPU")
    print(f"anomaly map 640x480: {np.median([r[0] for r in runs]):.3f} s wall, "
          f"{np.median([r[1] for r in runs]):.3f} s CPU")


if __name__ == "__main__":
    main()
