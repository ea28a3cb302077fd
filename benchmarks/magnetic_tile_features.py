"""Magnetic tile (DifferNet's split): the feature models on a frozen EfficientNet-Lite0.

Trains ``feature_knn``, ``feature_ae`` and ``feature_vae`` on the 761 defect-free training
images and scores the 583 test images (191 defect-free, 392 defective): image ROC-AUC,
pixel ROC-AUC (every pixel of every test image against the masks ``X.png``, 255 =
defect), fit time (feature extraction of the training images + fitting the head) and
scoring time per image, and the time of ``anomaly_map`` for one 640x480 image.
With ``--backbone NAME`` the detectors use that backbone and the results go to
``docs/magnetic_tile_features_NAME.md`` (and ``.json``, and heatmaps named alike).

The backbone's features of all images are extracted once and shared by the heads.

    python benchmarks/magnetic_tile_features.py [--image-size 256] [--models feature_knn,feature_ae] [--backbone efficientnet_lite1] [--seed 1]
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
from reconad.evaluation import plots

# Image scores compared on the same location maps: name -> model_kwargs.
IMAGE_SCORES = {"max": {"image_score": "max"}, "top-10 mean": {"image_score": "topk", "topk": 10},
                "top-30 mean": {"image_score": "topk", "topk": 30},
                "top-1 % mean": {"image_score": "top_share", "top_share": 0.01},
                "top-5 % mean": {"image_score": "top_share", "top_share": 0.05}}
# Text after this line in the existing docs/magnetic_tile_features.md is kept when the file is rewritten.
NOTES_MARKER = "<!-- notes: kept when the benchmark rewrites this file -->"

SETTINGS = {
    "feature_knn": {},
    "feature_rd": {"epochs": 10},
    "feature_ae": {"epochs": 5},
    "feature_vae": {"epochs": 20},
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
    ap.add_argument("--backbone", default=None,
                    help="a named backbone or weights file (default: the detectors' own); results go to "
                         "docs/magnetic_tile_features_<backbone>.md")
    ap.add_argument("--seed", type=int, default=0,
                    help="the detectors' random_state (coreset, pool, head); other than 0, results go to "
                         "docs/magnetic_tile_features[_<backbone>]_seed<N>.md")
    args = ap.parse_args()
    out_name = ("magnetic_tile_features" + (f"_{Path(args.backbone).stem}" if args.backbone else "")
                + (f"_seed{args.seed}" if args.seed else ""))
    backbone = {"backbone": args.backbone} if args.backbone else {}
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
            t, c = time.perf_counter(), time.process_time()
            train_feats, _ = fd.extract_features(det, train)
            t_train, c_train = time.perf_counter() - t, time.process_time() - c
            t = time.perf_counter()
            test_feats, sizes = fd.extract_features(det, test)
            t_test = time.perf_counter() - t
            extracted[key] = (det.pyramid_, train_feats, test_feats, sizes, t_train, t_test, c_train)
            print(f"{det.model}: features of {' + '.join(opts['stages'])}: training images {t_train:.0f} s, "
                  f"test images {t_test:.0f} s", flush=True)
        return extracted[key]

    big = np.asarray(Image.open(test[-1]).convert("L").resize((640, 480), Image.BILINEAR))
    rows, results, heatmaps = [], {}, {}
    # heatmap pictures: two defect-free tiles and the first tile of each defect type
    pick = [int(i) for i in np.flatnonzero(types == "MT_Free")[:2]]
    pick += [int(np.flatnonzero(types == t)[0]) for t in sorted(set(types) - {"MT_Free"})]
    pick_images = [np.asarray(Image.open(test[i]).convert("L"), dtype=np.float32) / 255 for i in pick]
    for name in args.models.split(","):
        det = ImageDetector(model=name, image_size=args.image_size, verbose=0, random_state=args.seed, **backbone,
                            **SETTINGS[name])
        det.pyramid_, train_feats, test_feats, sizes, t_train_extract, t_test_extract, c_train = features_for(det)
        fd.load_pyramid(det)
        t, c = time.perf_counter(), time.process_time()
        fd.fit_features(det, train_feats)
        t_head, c_head = time.perf_counter() - t, time.process_time() - c
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
        for label, kw in IMAGE_SCORES.items():
            by_score[label] = float(roc_auc_score(
                y, fd.image_scores(det.set_params(model_kwargs={**(det.model_kwargs or {}), **kw}), maps)))
        det.set_params(model_kwargs=None)
        heatmaps[name] = ([full[i] for i in pick], [float(scores[i]) for i in pick])
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
                         "fit_s": fit_s, "fit_head_s": t_head, "fit_cpu_s": c_train + c_head,
                         "score_ms_per_image": score_ms,
                         "anomaly_map_640x480_s": float(np.median(times)),
                         "anomaly_map_640x480_cpu_s": float(np.median(cpu)),
                         "image_auc_by_image_score": by_score, "pixel_auc_by_group": by_group,
                         "settings": SETTINGS[name],
                         "options": fd.options(det)}
        rows.append([name, image_auc, px_auc, f"{fit_s:.0f} ({c_train + c_head:.0f})", f"{score_ms:.0f}",
                     f"{np.median(times):.2f} ({np.median(cpu):.2f})"])
        print(markdown_table(["model", "image ROC-AUC", "pixel ROC-AUC", "fit s", "score ms/image",
                              "640x480 map s"], rows[-1:]), by_score, flush=True)

    docs = Path(__file__).resolve().parents[1] / "docs"
    pictures = []
    for name, (maps_, scores_) in heatmaps.items():
        file = f"{out_name.replace('features', 'features_heatmaps', 1)}_{name}.png"
        plots.heatmap_overlays(pick_images, maps_, docs / file, masks=[masks[i] for i in pick], scores=scores_,
                               labels=list(y[pick]), cols=len(pick))
        pictures.append(f"`{name}`:\n\n![{name} heatmaps]({file})")
    header = ["model", "image ROC-AUC", "pixel ROC-AUC", "fit (761 images): wall s (CPU s)", "scoring ms/image",
              "anomaly map 640×480: wall s (CPU s)"]
    table = markdown_table(header, rows)
    type_rows = [[n] + [r["image_auc_by_type"][k] for k in sorted(r["image_auc_by_type"])] for n, r in results.items()]
    type_table = markdown_table(["model"] + sorted(set(types) - {"MT_Free"}), type_rows)
    knn = ImageDetector(model="feature_knn")
    rd = ImageDetector(model="feature_rd")
    ko, ro = fd.options(knn), fd.options(rd)
    ao, vo = fd.options(ImageDetector(model="feature_ae")), fd.options(ImageDetector(model="feature_vae"))
    score_rows = [[n] + [r["image_auc_by_image_score"][k] for k in IMAGE_SCORES] for n, r in results.items()]
    md = f"""# Magnetic tile: feature models on a frozen {Path(args.backbone).stem if args.backbone else "EfficientNet-Lite0"}

DifferNet's split: 761 defect-free training images, 583 test images (191 defect-free,
392 defective). Every image resized to a short side of {args.image_size} pixels (aspect kept), grey
levels of each image standardised (`contrast="{ko['contrast']}"`). The detectors' default settings:

- `feature_knn`: stages {" + ".join(ko["stages"])} (3×3 neighbourhood mean, on the {ko["grid"] or ko["stages"][0]} grid); memory bank of
  {ko["memory_size"]} vectors chosen by greedy coreset from {ko["coreset_pool"]} random training locations;
  score: distance to the nearest vector (exact, faiss; `bank_scale="{ko["bank_scale"]}"`: divided by that bank
  vector's spacing, its mean distance to its 3 nearest bank vectors, over the median spacing, where the
  bank keeps at most {fd.LOCAL_SCALE_SHARE:.0%} of the vectors it is chosen from, as here).
- `feature_ae` / `feature_vae`: 1×1 heads (width / latent {fd.HEAD_DEFAULTS["width"]} / {fd.HEAD_DEFAULTS["latent_dim"]} and
  {fd.VAE_DEFAULTS["width"]} / {fd.VAE_DEFAULTS["latent_dim"]}) on stages {" + ".join(ao["stages"])} and {" + ".join(vo["stages"])} (on the {vo["grid"] or vo["stages"][0]} grid), trained on {fd.OPTIONS["max_vectors"]} random training
  vectors in batches of {fd.OPTIONS["batch_vectors"]}; scores: squared error, and for `feature_vae` the unregularised M
  plus the distance of the location's code to the nearest of {fd.CODE_BANK_SIZE} training codes (greedy coreset),
  each over its median on the held-out vectors (`score="code"`).
- `feature_rd` (reverse distillation): stages {" + ".join(ro["stages"])} as they are (pool {ro["pool"]}), each on its own grid; a
  one-class bottleneck of {fd.RD_DEFAULTS["latent_dim"]} channels on a grid twice as coarse as {ro["stages"][-1]}; the decoder rebuilds
  every stage from it; trained on random crops of {ro["crop"]}×{ro["crop"]} {ro["stages"][-1]} locations; score: `1 - cos` per location,
  averaged over the stages on the {ro["stages"][0]} grid.

Image score = {ko["image_score"]} (k = {ko["topk"]}); anomaly map = location scores resized to the image
(each location on the pixel the backbone centred it on) and smoothed (σ = {ko["smooth_sigma"]:g} pixels at the resized scale). Pixel ROC-AUC over every pixel of
every test image. Fit time = feature extraction of the training images + fitting the head
(in brackets the CPU seconds of the process, summed over its threads); scoring time =
feature extraction + head, per test image. Settings passed: {SETTINGS}.

```
python benchmarks/magnetic_tile_features.py --image-size {args.image_size} --threads {args.threads} --models {args.models}{f" --backbone {args.backbone}" if args.backbone else ""}{f" --seed {args.seed}" if args.seed else ""}
```

Machine: {machine()}. The CPU was shared with other heavy jobs while this ran, so the
wall times are upper bounds and noisy.

{table}

The last column is the median of three calls of `anomaly_map` on one 640×480 image:
wall-clock seconds and, in brackets, the CPU seconds the process used.

Image ROC-AUC by image score (same maps):

{markdown_table(["model"] + list(IMAGE_SCORES), score_rows)}

Image ROC-AUC per defect type (that type against the defect-free test images):

{type_table}

Where the pixel ROC-AUC is lost: the pixel ROC-AUC of each group of defect pixels against
each group of clean pixels (in brackets, the group's share of all defect or all clean
pixels):

{pixel_auc_by_group_tables({n: r["pixel_auc_by_group"] for n, r in results.items()})}

Heatmaps (two defect-free test tiles, then the first tile of each defect type; the mask in white):

{chr(10).join(pictures)}

Published: DifferNet 0.977 image ROC-AUC (ImageNet AlexNet features, normalizing flow);
GANomaly about 0.77 and GeoTrans about 0.76 as reported there. No published pixel figure known.

{NOTES_MARKER}
"""
    old = docs / f"{out_name}.md"
    if old.exists() and NOTES_MARKER in old.read_text():
        md += old.read_text().split(NOTES_MARKER, 1)[1].lstrip("\n")
    print("\n" + table)
    write_results(out_name, md, {"machine": machine(), "image_size": args.image_size,
                                 "backbone": args.backbone, "results": results})


if __name__ == "__main__":
    main()
