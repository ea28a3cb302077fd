"""Magnetic tile (DifferNet's split): the feature models on a frozen EfficientNet-Lite0.

Trains ``feature_knn``, ``feature_ae`` and ``feature_vae`` on the 761 defect-free training
images and scores the 583 test images (191 defect-free, 392 defective): image ROC-AUC,
pixel ROC-AUC (every pixel of every test image against the masks ``X.png``, 255 =
defect), fit time (feature extraction of the training images + fitting the head) and
scoring time per image, and the time of ``anomaly_map`` for one 640x480 image.

The backbone's features of all images are extracted once and shared by the heads.

    python benchmarks/magnetic_tile_features.py [--image-size 256] [--models feature_knn,feature_ae]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from _common import (machine, magnetic_tile_split, markdown_table, pixel_auc_by_group,
                     pixel_auc_by_group_tables, write_results)

from reconad import ImageDetector
from reconad.detectors import features as fd

SETTINGS = {
    "feature_knn": {},
    "feature_ae": {"epochs": 5},
    "feature_vae": {"epochs": 5},
}


def pixel_auc(maps: list[np.ndarray], masks: list[np.ndarray]) -> float:
    scores = np.concatenate([m.ravel() for m in maps]).astype(np.float32)
    truth = np.concatenate([k.ravel() for k in masks])
    return float(roc_auc_score(truth, scores))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image-size", type=int, default=fd.DEFAULT_IMAGE_SIZE, help="short side in pixels")
    ap.add_argument("--models", default=",".join(SETTINGS))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    split = magnetic_tile_split()
    train = [str(p) for p in split["train"]]
    test = [str(p) for p in split["test"]]
    y = np.array(split["test_labels"])
    masks = [np.asarray(Image.open(p).convert("L")) > 127 for p in split["test_masks"]]
    types = np.array(split["test_types"])

    extracted: dict = {}  # features shared by the models that extract the same ones

    def features_for(det):
        opts = fd.options(det)
        key = (opts["stages"], opts["pool"], opts["grid"], opts["contrast"], det.model == "feature_rd")
        if key not in extracted:
            fd.load_pyramid(det)
            t = time.perf_counter()
            train_feats, _ = fd.extract_features(det, train)
            t_train = time.perf_counter() - t
            t = time.perf_counter()
            test_feats, sizes = fd.extract_features(det, test)
            t_test = time.perf_counter() - t
            extracted[key] = (det.pyramid_, train_feats, test_feats, sizes, t_train, t_test)
            print(f"{det.model}: features of {' + '.join(opts['stages'])}: training images {t_train:.0f} s, "
                  f"test images {t_test:.0f} s", flush=True)
        return extracted[key]

    big = np.asarray(Image.open(test[-1]).convert("L").resize((640, 480), Image.BILINEAR))
    rows, results = [], {}
    for name in args.models.split(","):
        det = ImageDetector(model=name, image_size=args.image_size, verbose=0, **SETTINGS[name])
        det.pyramid_, train_feats, test_feats, sizes, t_train_extract, t_test_extract = features_for(det)
        fd.load_pyramid(det)
        t = time.perf_counter()
        fd.fit_features(det, train_feats)
        t_head = time.perf_counter() - t
        t = time.perf_counter()
        maps = fd.score_maps(det, test_feats)
        t_score_head = time.perf_counter() - t
        scores = fd.image_scores(det, maps)
        image_auc = float(roc_auc_score(y, scores))
        full = fd.anomaly_maps_from_features(det, test_feats, sizes)
        px_auc = pixel_auc(full, masks)
        by_group = pixel_auc_by_group(full, masks, types)
        per_type = {k: float(roc_auc_score(y[(types == k) | (types == "MT_Free")],
                                           scores[(types == k) | (types == "MT_Free")]))
                    for k in sorted(set(types) - {"MT_Free"})}
        by_score = {}
        for method, k in (("max", 1), ("topk", 10), ("topk", 30)):
            kw = {**(det.model_kwargs or {}), "image_score": method, "topk": k}
            by_score[f"{method}{k if method == 'topk' else ''}"] = float(roc_auc_score(
                y, fd.image_scores(det.set_params(model_kwargs=kw), maps)))
        det.set_params(model_kwargs=None)
        det.anomaly_map(big[None])
        times, cpu = [], []
        for _ in range(3):
            t, c = time.perf_counter(), time.process_time()
            det.anomaly_map(big[None])
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        fit_s = t_train_extract + t_head
        score_ms = 1000 * (t_test_extract + t_score_head) / len(test)
        results[name] = {"image_auc": image_auc, "pixel_auc": px_auc, "image_auc_by_type": per_type,
                         "fit_s": fit_s, "fit_head_s": t_head, "score_ms_per_image": score_ms,
                         "anomaly_map_640x480_s": float(np.median(times)),
                         "anomaly_map_640x480_cpu_s": float(np.median(cpu)),
                         "image_auc_by_image_score": by_score, "pixel_auc_by_group": by_group,
                         "settings": SETTINGS[name],
                         "options": fd.options(det)}
        rows.append([name, image_auc, px_auc, f"{fit_s:.0f}", f"{score_ms:.0f}",
                     f"{np.median(times):.2f} ({np.median(cpu):.2f})"])
        print(markdown_table(["model", "image ROC-AUC", "pixel ROC-AUC", "fit s", "score ms/image",
                              "640x480 map s"], rows[-1:]), by_score, flush=True)

    header = ["model", "image ROC-AUC", "pixel ROC-AUC", "fit (761 images) s", "scoring ms/image",
              "anomaly map 640×480: wall s (CPU s)"]
    table = markdown_table(header, rows)
    type_rows = [[n] + [r["image_auc_by_type"][k] for k in sorted(r["image_auc_by_type"])] for n, r in results.items()]
    type_table = markdown_table(["model"] + sorted(set(types) - {"MT_Free"}), type_rows)
    opts = fd.options(base)
    md = f"""# Magnetic tile: feature models on a frozen EfficientNet-Lite0

DifferNet's split: 761 defect-free training images, 583 test images (191 defect-free,
392 defective). Images resized to a short side of {args.image_size} pixels (aspect kept), grey
levels of each image standardised (`contrast="{opts['contrast']}"`), features of stages
{" + ".join(opts["stages"])} (3×3 neighbourhood mean, on the {opts["stages"][0]} grid), image score = mean of
the 10 highest locations, anomaly map = location scores resized to the image and smoothed
(σ = {opts["smooth_sigma"]:g} pixels at the resized scale). `feature_knn`: memory bank of
{opts["memory_size"]} vectors chosen by greedy coreset from {opts["coreset_pool"]} random training locations.
These are the detectors' default settings.
Pixel ROC-AUC over every pixel of every test image. Fit time = feature extraction of the
training images + fitting the head; scoring time = feature extraction + head, per test image.

```
python benchmarks/magnetic_tile_features.py --image-size {args.image_size} --threads {args.threads}
```

The features are extracted once and shared by the heads ({t_train_extract:.0f} s for the 761
training images, {t_test_extract:.0f} s for the 583 test images; these times are part of
the fit and scoring times below).

Machine: {machine()}. The CPU was shared with other heavy jobs while this ran, so the
times are upper bounds and noisy.

{table}

The last column is the median of three calls of `anomaly_map` on one 640×480 image:
wall-clock seconds and, in brackets, the CPU seconds the process used (summed over its
{args.threads} threads), which depend less on what else runs on the machine.

Image ROC-AUC by image score (maximum, mean of the 10 or 30 highest locations):

{markdown_table(["model", "max", "top-10 mean", "top-30 mean"],
                [[n, r["image_auc_by_image_score"]["max"], r["image_auc_by_image_score"]["topk10"],
                  r["image_auc_by_image_score"]["topk30"]] for n, r in results.items()])}

Image ROC-AUC per defect type (that type against the defect-free test images):

{type_table}

Where the pixel ROC-AUC is lost: the pixel ROC-AUC of each group of defect pixels against
each group of clean pixels (in brackets, the group's share of all defect or all clean
pixels; the pooled figure above is close to the mean of these, weighted by the shares):

{pixel_auc_by_group_tables({n: r["pixel_auc_by_group"] for n, r in results.items()})}

Published: DifferNet 0.977 image ROC-AUC (ImageNet AlexNet features, normalizing flow);
GANomaly about 0.77 and GeoTrans about 0.76 as reported there. No published pixel figure known.
"""
    print("\n" + table)
    write_results("magnetic_tile_features", md, {"machine": machine(), "image_size": args.image_size,
                                                  "feature_extraction_s": {"train": t_train_extract,
                                                                           "test": t_test_extract},
                                                  "results": results})


if __name__ == "__main__":
    main()
