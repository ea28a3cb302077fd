"""Defects planted on defect-free magnetic tiles, at several sizes, contrasts and resolutions.

A check of the feature models' defaults on imagery they were not chosen on: spots and
scratches drawn onto defect-free test tiles (small and large, faint and strong), the
detector fitted on defect-free training tiles, everything at the tiles' own resolution
and at half and twice of it (the defects are drawn first, then the image is rescaled, so
a scratch of one pixel becomes half a pixel wide at half the resolution).

Per condition (kind x size x contrast): image ROC-AUC of the planted tiles against the
same tiles without the defect, and pixel ROC-AUC of the planted pixels against every
clean pixel of both. Configurations (``--configs``) give the rows of the ablation: each is
a model and its ``model_kwargs``.

    python benchmarks/planted_defects.py [--train 300] [--test 60] [--scales 0.5,1,2] [--backbone efficientnet_lite1]

With ``--backbone NAME`` every configuration uses that backbone and the results go to
``docs/planted_defects_NAME.md`` (and ``.json``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from sklearn.metrics import roc_auc_score

from _common import machine, magnetic_tile_split, markdown_table, write_results

from reconad import ImageDetector
from reconad.detectors import features as fd

KINDS = ("spot", "scratch")
SIZES = ("small", "large")
# Defect contrast in units of the tile's own grey-level standard deviation.
CONTRASTS = {"faint": 1.0, "strong": 2.5}
# spot: radius as a fraction of the short side; scratch: (width in pixels, length as a fraction)
SPOT_RADIUS = {"small": 0.02, "large": 0.06}
SCRATCH = {"small": (1, 0.15), "large": (3, 0.4)}

# The rows of the ablation: name -> (model, model_kwargs, other ImageDetector settings).
# feature_vae's rows before the last one keep the stages they were measured with (s16 + s32,
# feature_vae's default then), so that their pages are reproduced as they were.
S16_S32 = {"stages": ("s16", "s32"), "grid": None}
CONFIGS = {
    "feature_knn": ("feature_knn", {}, {}),
    "feature_knn, without s8 (s16 + s32 on the s16 grid), bank_scale none": (
        "feature_knn", {"stages": ("s16", "s32"), "grid": None, "bank_scale": "none"}, {}),
    "feature_rd": ("feature_rd", {}, {"epochs": 6}),
    "feature_knn, bank_scale local": ("feature_knn", {"bank_scale": "local"}, {}),
    "feature_knn, without s8, bank_scale local": ("feature_knn", {"stages": ("s16", "s32"), "grid": None,
                                                                  "bank_scale": "local"}, {}),
    "feature_vae, 20 epochs, score M": ("feature_vae", S16_S32, {"epochs": 20, "score": "unregularised"}),
    "feature_vae, 20 epochs, score M, the earlier head (256 / 32)": (
        "feature_vae", S16_S32, {"epochs": 20, "latent_dim": 32, "width": 256, "score": "unregularised"}),
    "feature_knn, bank_scale none": ("feature_knn", {"bank_scale": "none"}, {}),
    "feature_vae, 20 epochs, score code (M + distance to the nearest training code)": (
        "feature_vae", S16_S32, {"epochs": 20, "score": "code"}),
    "feature_vae, 20 epochs, score code, head of width 1024": ("feature_vae", S16_S32, {"epochs": 20, "width": 1024,
                                                                                        "score": "code"}),
    "feature_vae, 20 epochs, score code, s8 + s16 + s32 on the s16 grid": (
        "feature_vae", {"stages": ("s8", "s16", "s32"), "grid": "s16"}, {"epochs": 20, "score": "code"}),
    "feature_knn, on the s8 grid, top-40 mean (the top-10's area)": ("feature_knn", {"grid": "s8", "topk": 40}, {}),
    "feature_knn, on the s8 grid, top-10 mean": ("feature_knn", {"grid": "s8"}, {}),
}
# Configurations run at every resolution (the others only at ``--ablation-scale``).
DEFAULT_ROWS = ("feature_knn", "feature_rd")
# Image scores compared on the same maps: name -> model_kwargs.
IMAGE_SCORES = {"max": {"image_score": "max"}, "top-10 mean": {"image_score": "topk", "topk": 10},
                "top-1 % mean": {"image_score": "top_share", "top_share": 0.01},
                "top-5 % mean": {"image_score": "top_share", "top_share": 0.05}}
# Smoothing of the anomaly maps compared on the same maps (sigma in pixels at the resized scale).
SIGMAS = (0.0, 2.0, 4.0, 8.0)


def plant(image: np.ndarray, kind: str, size: str, contrast: float,
          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``image`` (H, W) uint8 with one defect drawn on it, and the defect's mask."""
    h, w = image.shape
    short = min(h, w)
    mask_im = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(mask_im)
    if kind == "spot":
        r = max(1.0, SPOT_RADIUS[size] * short)
        cy, cx = rng.uniform(r + 2, h - r - 2), rng.uniform(r + 2, w - r - 2)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    else:
        width, frac = SCRATCH[size]
        length = frac * short
        angle = rng.uniform(0, np.pi)
        dy, dx = np.sin(angle) * length / 2, np.cos(angle) * length / 2
        cy = rng.uniform(abs(dy) + 2, h - abs(dy) - 2)
        cx = rng.uniform(abs(dx) + 2, w - abs(dx) - 2)
        draw.line([cx - dx, cy - dy, cx + dx, cy + dy], fill=255, width=width)
    mask = np.asarray(mask_im) > 127
    sign = 1 if rng.random() < 0.5 else -1
    out = image.astype(np.float32) + sign * contrast * float(image.std()) * mask
    return np.clip(out, 0, 255).astype(np.uint8), mask


def rescale(image: np.ndarray, scale: float, resample=Image.BILINEAR) -> np.ndarray:
    if scale == 1:
        return image
    h, w = image.shape
    size = (max(8, round(w * scale)), max(8, round(h * scale)))
    return np.asarray(Image.fromarray(image).resize(size, resample))


# Surfaces other than the tiles: scikit-image's bundled 512 x 512 grey textures, cut into
# crops of TEXTURE_CROP pixels; training crops from the upper TEXTURE_SPLIT rows, test
# crops from the rows below (no pixel in both).
TEXTURES = ("brick", "grass", "gravel")
TEXTURE_CROP, TEXTURE_SPLIT = 192, 320


def texture_crops(name: str, n_train: int, n_test: int, rng: np.random.Generator) -> tuple[list, list]:
    from skimage import data

    image = np.asarray(getattr(data, name)())
    if image.ndim == 3:
        image = np.asarray(Image.fromarray(image).convert("L"))
    c = TEXTURE_CROP

    def crops(top: np.ndarray, n: int) -> list[np.ndarray]:
        ys = rng.integers(0, top.shape[0] - c + 1, n)
        xs = rng.integers(0, top.shape[1] - c + 1, n)
        return [np.ascontiguousarray(top[y:y + c, x:x + c]) for y, x in zip(ys, xs)]

    return crops(image[:TEXTURE_SPLIT], n_train), crops(image[TEXTURE_SPLIT:], n_test)


def build_sets(n_train: int, n_test: int, seed: int = 0, surface: str = "tiles") -> tuple[list, list, list, list]:
    """Training images, test images (clean then planted), their masks and condition names:
    magnetic tiles (``surface="tiles"``) or crops of a bundled texture (``TEXTURES``)."""
    rng = np.random.default_rng(seed)
    if surface == "tiles":
        split = magnetic_tile_split()
        train = [np.asarray(Image.open(p).convert("L")) for p in split["train"][:n_train]]
        free = [p for p, t in zip(split["test"], split["test_types"]) if t == "MT_Free"][:n_test]
        clean = [np.asarray(Image.open(p).convert("L")) for p in free]
    else:
        train, clean = texture_crops(surface, n_train, n_test, rng)
    images = list(clean)
    masks = [np.zeros(c.shape, bool) for c in clean]
    conditions = ["clean"] * len(clean)
    for kind in KINDS:
        for size in SIZES:
            for cname, c in CONTRASTS.items():
                for im in clean:
                    planted, mask = plant(im, kind, size, c, rng)
                    images.append(planted)
                    masks.append(mask)
                    conditions.append(f"{kind}, {size}, {cname}")
    return train, images, masks, conditions


def evaluate(maps: list[np.ndarray] | None, scores: np.ndarray, masks: list[np.ndarray],
             conditions: list[str], every: int = 2) -> dict:
    cond = np.array(conditions)
    clean = cond == "clean"
    out = {}
    for name in dict.fromkeys(conditions):
        if name == "clean":
            continue
        pick = cond == name
        y = np.r_[np.zeros(clean.sum()), np.ones(pick.sum())]
        image_auc = float(roc_auc_score(y, np.r_[scores[clean], scores[pick]]))
        if maps is None:
            out[name] = {"image_auc": image_auc}
            continue
        idx = np.flatnonzero(clean | pick)
        s = np.concatenate([maps[i][::every, ::every].ravel() for i in idx])
        t = np.concatenate([masks[i][::every, ::every].ravel() for i in idx])
        out[name] = {"image_auc": image_auc, "pixel_auc": float(roc_auc_score(t, s)) if t.any() else float("nan")}
    return out


def run(model: str, kwargs: dict, params: dict, train: list, test: list, cache: dict):
    """Fit on ``train`` and score ``test``; features shared between configurations that
    extract the same ones (``cache``). Returns the detector, the location maps, the
    test images' sizes and the seconds taken."""
    det = ImageDetector(model=model, verbose=0, model_kwargs=kwargs or None, **params)
    opts = fd.options(det)
    key = (opts["stages"], opts["pool"], opts["grid"], opts["contrast"], model == "feature_rd")
    t = time.perf_counter()
    if key not in cache:
        fd.load_pyramid(det)
        train_feats, _ = fd.extract_features(det, train)
        test_feats, sizes = fd.extract_features(det, test)
        cache[key] = (det.pyramid_, train_feats, test_feats, sizes)
    det.pyramid_, train_feats, test_feats, sizes = cache[key]
    fd.load_pyramid(det)
    fd.fit_features(det, train_feats)
    maps = fd.score_maps(det, test_feats)
    return det, maps, sizes, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=300, help="defect-free training tiles")
    ap.add_argument("--test", type=int, default=60, help="defect-free test tiles to plant defects on")
    ap.add_argument("--scales", default="0.5,1,2", help="resolutions, as factors of the tiles' own")
    ap.add_argument("--configs", default=",".join(str(i) for i in range(len(CONFIGS))),
                    help="indices into the configurations: " + "; ".join(f"{i}: {n}" for i, n in enumerate(CONFIGS)))
    ap.add_argument("--ablation-scale", type=float, default=1.0,
                    help="the resolution at which every configuration runs; the others run the defaults only")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--surface", default="tiles", choices=("tiles",) + TEXTURES,
                    help="magnetic tiles, or crops of one of scikit-image's bundled textures")
    ap.add_argument("--out", default=None,
                    help="name of the results in docs/ (default: planted_defects, or planted_defects_<backbone>)")
    ap.add_argument("--backbone", default=None,
                    help="a named backbone or weights file (default: the detectors' own); results go to "
                         "docs/planted_defects_<backbone>.md")
    args = ap.parse_args()
    out_name = args.out or "planted_defects" + (f"_{Path(args.backbone).stem}" if args.backbone else "")
    backbone = {"backbone": args.backbone} if args.backbone else {}
    torch.set_num_threads(args.threads)
    train0, test0, masks0, conditions = build_sets(args.train, args.test, surface=args.surface)
    names = [list(CONFIGS)[int(i)] for i in args.configs.split(",")]
    results: dict[str, dict] = {}
    for scale in [float(s) for s in args.scales.split(",")]:
        train = [rescale(im, scale) for im in train0]
        test = [rescale(im, scale) for im in test0]
        masks = [rescale(m.astype(np.uint8) * 255, scale, Image.NEAREST) > 127 for m in masks0]
        cache: dict = {}
        for name in names:
            if scale != args.ablation_scale and name not in DEFAULT_ROWS:
                continue
            model, kwargs, params = CONFIGS[name]
            params = {**params, **backbone}
            det, maps, sizes, secs = run(model, kwargs, params, train, test, cache)
            opts = fd.options(det)
            per = evaluate(fd.image_maps(det, maps, sizes, float(opts["smooth_sigma"])), fd.image_scores(det, maps),
                           masks, conditions)
            row = f"{name} @ {scale:g}x"
            results[row] = {"per_condition": per, "seconds": secs, "options": {k: str(v) for k, v in opts.items()},
                            "image_auc": float(np.mean([v["image_auc"] for v in per.values()])),
                            "pixel_auc": float(np.nanmean([v["pixel_auc"] for v in per.values()]))}
            if scale == args.ablation_scale:
                by_score = {}
                for sname, skw in IMAGE_SCORES.items():
                    det.set_params(model_kwargs={**kwargs, **skw})
                    ev = evaluate(None, fd.image_scores(det, maps), masks, conditions)
                    by_score[sname] = float(np.mean([v["image_auc"] for v in ev.values()]))
                det.set_params(model_kwargs=kwargs or None)
                by_sigma = {}
                for sigma in SIGMAS:
                    ev = evaluate(fd.image_maps(det, maps, sizes, sigma), np.zeros(len(maps)), masks, conditions)
                    by_sigma[f"{sigma:g}"] = float(np.nanmean([v["pixel_auc"] for v in ev.values()]))
                results[row].update(image_auc_by_image_score=by_score, pixel_auc_by_sigma=by_sigma)
            print(f"{row}: image {results[row]['image_auc']:.4f} pixel {results[row]['pixel_auc']:.4f} "
                  f"({secs:.0f} s) {results[row].get('image_auc_by_image_score', '')} "
                  f"{results[row].get('pixel_auc_by_sigma', '')}", flush=True)
    conds = [c for c in dict.fromkeys(conditions) if c != "clean"]
    summary = markdown_table(["configuration @ resolution", "mean image ROC-AUC", "mean pixel ROC-AUC", "s"],
                             [[n, r["image_auc"], r["pixel_auc"], f"{r['seconds']:.0f}"] for n, r in results.items()])
    image_table = markdown_table(["configuration @ resolution"] + conds,
                                 [[n] + [r["per_condition"][c]["image_auc"] for c in conds] for n, r in results.items()])
    pixel_table = markdown_table(["configuration @ resolution"] + conds,
                                 [[n] + [r["per_condition"][c]["pixel_auc"] for c in conds] for n, r in results.items()])
    ablated = {n: r for n, r in results.items() if "image_auc_by_image_score" in r}
    score_table = markdown_table(["configuration"] + list(IMAGE_SCORES),
                                 [[n] + list(r["image_auc_by_image_score"].values()) for n, r in ablated.items()])
    sigma_table = markdown_table(["configuration"] + [f"σ = {s:g}" for s in SIGMAS],
                                 [[n] + list(r["pixel_auc_by_sigma"].values()) for n, r in ablated.items()])
    if args.surface == "tiles":
        surface_text = (f"{args.test} defect-free test tiles of the magnetic tile set (one defect per copy); "
                        f"detectors fitted on the first {args.train} defect-free training tiles.")
    else:
        surface_text = (f"{args.test} crops ({TEXTURE_CROP} x {TEXTURE_CROP} pixels) of the lower {512 - TEXTURE_SPLIT} rows of "
                        f"scikit-image's `{args.surface}` texture (one defect per copy); detectors fitted on {args.train} "
                        f"crops of its upper {TEXTURE_SPLIT} rows.")
    title = "magnetic tiles" if args.surface == "tiles" else f"the {args.surface} texture"
    md = f"""# Planted defects on {title}: do the feature models' defaults hold?

Spots (radius {SPOT_RADIUS['small']:.0%} or {SPOT_RADIUS['large']:.0%} of the short side) and straight scratches
({SCRATCH['small'][0]} pixel wide and {SCRATCH['small'][1]:.0%} of the short side long, or {SCRATCH['large'][0]} pixels
and {SCRATCH['large'][1]:.0%}), dark or bright, {CONTRASTS['faint']:g} ("faint") or {CONTRASTS['strong']:g} ("strong") times the
tile's grey-level standard deviation, drawn on {surface_text} Resolutions:
the tiles as they are and rescaled by {args.scales} (training and test tiles alike; the defects are drawn
before rescaling). Image ROC-AUC: the planted copies against the clean tiles; pixel ROC-AUC: defect
pixels against all clean pixels of both (every second pixel).

```
python benchmarks/planted_defects.py --train {args.train} --test {args.test} --scales {args.scales} --configs {args.configs}{f" --backbone {args.backbone}" if args.backbone else ""}{f" --surface {args.surface}" if args.surface != "tiles" else ""}{f" --out {args.out}" if args.out else ""}
```

Backbone: {args.backbone or "the detectors' default (efficientnet_lite0)"}.
Machine: {machine()}; the CPU was shared with other jobs, so the times (fit + scoring) are noisy.

{summary}

Image ROC-AUC per condition:

{image_table}

Pixel ROC-AUC per condition:

{pixel_table}

Ablation at {args.ablation_scale:g}x, on the same maps: mean image ROC-AUC by image score, and mean pixel
ROC-AUC by the smoothing σ of the anomaly map (pixels at the resized scale, short side {fd.DEFAULT_IMAGE_SIZE}):

{score_table}

{sigma_table}
"""
    print("\n" + summary)
    write_results(out_name, md, {"machine": machine(), "args": vars(args), "results": results})


if __name__ == "__main__":
    main()
