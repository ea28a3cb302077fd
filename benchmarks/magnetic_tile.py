"""Magnetic tile surface defects on DifferNet's split (761 defect-free training images;
191 defect-free and 392 defective test images): image ROC-AUC, pixel ROC-AUC and AUPRO
for an autoencoder, a Gaussian VAE (one fitted model, three scores) and PCA + GMM (one
fitted model, two scores); heatmap examples, the latent space, and the time of one
640x480 heatmap at stride 4.

    python benchmarks/magnetic_tile.py [--quick]

Preprocessing, the same for every model (no labels involved): images wider than tall are
transposed to portrait, so the tile texture runs one way; each image is standardised
(mean 0.5, 0.15 per standard deviation, clipped to 0..1), which removes the large
brightness differences between normal tiles; then it is resized (bilinear) to a square:
32x32 for the whole-image models, 192x192 for the whole-image models whose per-pixel maps
(smoothed, sigma 32 pixels) are resized back to each tile's own size and orientation and
compared with its original mask, 64x64 for the patch models, whose maps are compared with
the masks resized (nearest) to 64x64.
All models are trained from scratch.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from _common import (
    ROOT,
    machine,
    magnetic_tile_split,
    markdown_table,
    pixel_auc_by_group,
    pixel_auc_by_group_tables,
    write_results,
)
from PIL import Image
from scipy.ndimage import gaussian_filter
from sklearn.metrics import roc_auc_score

from reconad import ImageDetector
from reconad.evaluation import plots
from reconad.evaluation.metrics import localization_metrics

WHOLE = 32   # side of the whole-image models' input
PATCHED = 64  # side of the images the patch models see
SEED = 0

# name -> detector settings, score terms to report
WHOLE_MODELS = {
    "AE": (dict(model="conv_ae", latent_dim=16, width=16, depth=3, epochs=30, batch_size=32), ["mse"]),
    "VAE": (dict(model="conv_vae", latent_dim=16, width=16, depth=3, epochs=30, batch_size=32, beta=1.0),
            ["elbo", "unregularized", "recon_kl"]),
    "GMM": (dict(model="gmm", latent_dim=5, model_kwargs={"pca_components": 64}), ["nll", "unregularized"]),
}
MAPPED = 192  # side of the whole-image models whose per-pixel maps are scored against the masks
MAP_SIGMA = MAPPED / 6  # Gaussian smoothing of their maps, in pixels at MAPPED (a sweep is below)
MAPPED_MODELS = {
    "AE": (dict(model="conv_ae", latent_dim=16, width=16, depth=5, epochs=30, batch_size=32), ["mse"]),
    "VAE": (dict(model="conv_vae", latent_dim=16, width=16, depth=5, epochs=30, batch_size=32, beta=1.0),
            ["elbo", "unregularized", "recon_kl"]),
}
SIGMA_SWEEP = (0, 8, 16, 24, 32, 48)
PATCH = dict(patch_size=16, stride=4, patches_per_image=32)
PATCH_MODELS = {
    "AE": (dict(model="conv_ae", latent_dim=16, width=16, depth=2, epochs=5, batch_size=64, **PATCH), ["mse"]),
    "VAE": (dict(model="conv_vae", latent_dim=16, width=16, depth=2, epochs=5, batch_size=64, beta=1.0, **PATCH),
            ["elbo", "unregularized", "recon_kl"]),
    "GMM": (dict(model="gmm", latent_dim=5, model_kwargs={"pca_components": 32}, **PATCH), ["nll", "unregularized"]),
}
SCORE_LABEL = {"mse": "MSE", "elbo": "full ELBO (D+A+M)", "unregularized": "unregularized (M)",
               "recon_kl": "recon + beta*KL (beta=1)", "nll": "NLL"}


def load(path, side: int, mask: bool = False) -> np.ndarray:
    with Image.open(path) as im:
        im = im.convert("L")
        if im.size[0] > im.size[1]:
            im = im.transpose(Image.Transpose.TRANSPOSE)
        im = im.resize((side, side), Image.NEAREST if mask else Image.BILINEAR)
        a = np.asarray(im)
    if mask:
        return a > 127
    a = a.astype(np.float32) / 255.0
    return np.clip(0.5 + (a - a.mean()) / (a.std() + 1e-6) * 0.15, 0.0, 1.0).astype(np.float32)


def native_mask(path) -> np.ndarray:
    """The mask at the tile's own size and orientation."""
    with Image.open(path) as im:
        return np.asarray(im.convert("L")) > 127


def to_native(maps: np.ndarray, shapes) -> list[np.ndarray]:
    """Square maps of portrait-turned tiles back to each tile's own orientation and size."""
    out = []
    for m, (h, w) in zip(maps, shapes):
        m = m.T if w > h else m  # load() turned landscape tiles to portrait
        out.append(np.asarray(Image.fromarray(m.astype(np.float32)).resize((w, h), Image.BILINEAR)))
    return out


def settings_text(kw: dict) -> str:
    skip = {"model", "beta"}
    parts = [f"{k}={v}" for k, v in kw.items() if k not in skip and k != "model_kwargs"]
    parts += [f"{k}={v}" for k, v in (kw.get("model_kwargs") or {}).items()]
    return ", ".join(parts)


def heatmap_timing(quick: bool) -> dict:
    """Seconds for one 640x480 map at stride 4 (13,289 patches of 96x96); the weights come
    from one short fit on random images since only the time matters here."""
    rng = np.random.default_rng(SEED)
    train = (rng.random((4, 128, 128)) * 255).astype(np.uint8)
    image = (rng.random((1, 480, 640)) * 255).astype(np.uint8)
    out = {}
    for name, kw, stride in (
            ("paper_vae N_c=16, N_z=10, stride 4", dict(model="paper_vae", width=16, latent_dim=10, epochs=1), 4),
            ("paper_vae N_c=16, N_z=10, stride 8", dict(model="paper_vae", width=16, latent_dim=10, epochs=1), 8),
            ("gmm N_z=5, N_h=32, stride 4", dict(model="gmm", latent_dim=5, model_kwargs={"pca_components": 32}), 4)):
        det = ImageDetector(patch_size=96, patches_per_image=16, verbose=0, random_state=SEED, **kw).fit(train)
        det.anomaly_map(image[:, :128, :128], stride=stride)  # warm-up
        t0 = time.perf_counter()
        m = det.anomaly_map(image if not quick else image[:, :240, :320], stride=stride)
        out[name] = {"seconds": time.perf_counter() - t0, "map_shape": list(m.shape[1:])}
        print(f"heatmap {name}: {out[name]['seconds']:.1f} s for {m.shape[1]}x{m.shape[2]}", flush=True)
    # the whole-image route: resize to the model's input, smoothed map, resize back
    det = ImageDetector(**MAPPED_MODELS["VAE"][0] | {"epochs": 1}, verbose=0, random_state=SEED).fit(
        (rng.random((8, MAPPED, MAPPED))).astype(np.float32))
    t0 = time.perf_counter()
    small = np.asarray(Image.fromarray(image[0]).resize((MAPPED, MAPPED), Image.BILINEAR), np.float32) / 255
    m = det.anomaly_map(small[None], sigma=MAP_SIGMA)[0]
    m = np.asarray(Image.fromarray(m.astype(np.float32)).resize((640, 480), Image.BILINEAR))
    name = f"whole-image conv_vae {MAPPED}x{MAPPED}, resized to 640x480"
    out[name] = {"seconds": time.perf_counter() - t0, "map_shape": list(m.shape)}
    print(f"heatmap {name}: {out[name]['seconds']:.3f} s", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a small subset and 2 epochs, to check the script")
    args = ap.parse_args()
    split = magnetic_tile_split()
    train_files, test_files = split["train"], split["test"]
    y = np.asarray(split["test_labels"])
    types = np.asarray(split["test_types"])
    if args.quick:
        train_files, keep = train_files[:120], np.arange(0, len(test_files), 6)
        test_files, y, types = [test_files[i] for i in keep], y[keep], types[keep]
        mask_files = [split["test_masks"][i] for i in keep]
    else:
        mask_files = split["test_masks"]
    t0 = time.perf_counter()
    data = {side: (np.stack([load(p, side) for p in train_files]), np.stack([load(p, side) for p in test_files]))
            for side in (WHOLE, PATCHED, MAPPED)}
    masks = np.stack([load(p, PATCHED, mask=True) for p in mask_files])
    masks_mapped = np.stack([load(p, MAPPED, mask=True) for p in mask_files])
    masks_native = [native_mask(p) for p in mask_files]
    native_shapes = [m.shape for m in masks_native]
    truth_native = np.concatenate([m.ravel() for m in masks_native])
    print(f"loaded {len(train_files)} training and {len(test_files)} test images in "
          f"{time.perf_counter() - t0:.0f} s", flush=True)

    results = {"machine": machine(), "torch_threads": torch.get_num_threads(),
               "load_average_at_start": os.getloadavg()[0], "quick": args.quick, "rows": []}
    fitted = {}
    for mode, table, side in (("whole image", WHOLE_MODELS, WHOLE), ("whole image, maps", MAPPED_MODELS, MAPPED),
                              ("patches", PATCH_MODELS, PATCHED)):
        train, test = data[side]
        for name, (kw, scores) in table.items():
            kw = dict(kw)
            if args.quick and "epochs" in kw:
                kw["epochs"] = 2
            det = ImageDetector(verbose=0, random_state=SEED, **kw)
            t1 = time.perf_counter()
            det.fit(train)
            fit_s = time.perf_counter() - t1
            fitted[(mode, name)] = det
            for score in scores:
                t1 = time.perf_counter()
                s = det.decision_function(test, score=score)
                score_s = time.perf_counter() - t1
                row = {"mode": mode, "model": name, "score": score, "image_roc_auc": float(roc_auc_score(y, s)),
                       "per_type": {t: float(roc_auc_score(np.r_[np.zeros((types == "MT_Free").sum()),
                                                                 np.ones((types == t).sum())],
                                                           np.r_[s[types == "MT_Free"], s[types == t]]))
                                    for t in sorted(set(types)) if t != "MT_Free"},
                       "settings": settings_text(kw), "input": f"{side}x{side}",
                       "fit_seconds": fit_s, "score_seconds": score_s}
                if mode == "patches":
                    t1 = time.perf_counter()
                    maps = det.anomaly_map(test, score=score, stride=PATCH["stride"])
                    row["map_seconds"] = time.perf_counter() - t1
                    row.update(localization_metrics(list(masks), list(maps)))
                elif mode == "whole image, maps":
                    t1 = time.perf_counter()
                    raw = det.anomaly_map(test, score=score)
                    maps = det.anomaly_map(test, score=score, sigma=MAP_SIGMA)
                    row["map_seconds"] = time.perf_counter() - t1
                    native = to_native(maps, native_shapes)
                    row.update(localization_metrics(masks_native, native))
                    row["pixel_auc_by_group"] = pixel_auc_by_group(native, masks_native, types)
                    row["sigma"] = MAP_SIGMA
                    row["pixel_roc_auc_by_sigma"] = {
                        str(sg): float(roc_auc_score(truth_native, np.concatenate([m.ravel() for m in to_native(
                            gaussian_filter(raw, (0, sg, sg)) if sg else raw, native_shapes)])))
                        for sg in SIGMA_SWEEP}
                results["rows"].append(row)
                print(f"{mode:11s} {name:3s} {score:13s} image ROC-AUC {row['image_roc_auc']:.4f}  "
                      + (f"pixel ROC-AUC {row['pixel_roc_auc']:.4f} AUPRO {row['aupro']:.4f}  " if "aupro" in row else "")
                      + f"(fit {fit_s:.0f} s, score {score_s:.1f} s)", flush=True)

    # pictures: heatmaps of the patch VAE (unregularized) and latent space of the whole-image VAE
    docs = ROOT / "docs"
    pick = [int(np.flatnonzero(types == "MT_Free")[0]), int(np.flatnonzero(types == "MT_Free")[1])]
    pick += [int(np.flatnonzero(types == t)[0]) for t in sorted(set(types)) if t != "MT_Free"]
    test64 = data[PATCHED][1][pick]
    for name, score in (("VAE", "unregularized"), ("GMM", "unregularized")):
        det = fitted[("patches", name)]
        maps = det.anomaly_map(test64, score=score, stride=PATCH["stride"])
        plots.heatmap_overlays(list(test64), list(maps), docs / f"magnetic_tile_heatmaps_{name.lower()}.png",
                               masks=list(masks[pick]), scores=det.decision_function(test64, score=score),
                               labels=y[pick], cols=4)
    det = fitted[("whole image, maps", "VAE")]
    test_mapped = data[MAPPED][1][pick]
    maps = det.anomaly_map(test_mapped, score="unregularized", sigma=MAP_SIGMA)
    plots.heatmap_overlays(list(test_mapped), list(maps), docs / f"magnetic_tile_heatmaps_vae{MAPPED}.png",
                           masks=list(masks_mapped[pick]), labels=y[pick], cols=4,
                           scores=det.decision_function(test_mapped, score="unregularized"))
    vae = fitted[("whole image", "VAE")]
    plots.latent_space(vae.encode(data[WHOLE][1]), y, docs / "magnetic_tile_latent.png",
                       title="Magnetic tile: mu_z of the whole-image VAE (2-D PCA)")

    results["heatmap_640x480_stride4"] = heatmap_timing(args.quick)
    results["load_average_at_end"] = os.getloadavg()[0]

    header = ["input", "model", "score", "image ROC-AUC", "pixel ROC-AUC", "AUPRO", "settings",
              "fit (s)", "score test set (s)"]
    rows = [[r["input"] + {"patches": " patches 16, stride 4", "whole image": " whole",
                           "whole image, maps": f" whole, map sigma {MAP_SIGMA:g}"}[r["mode"]],
             r["model"], SCORE_LABEL[r["score"]], r["image_roc_auc"],
             r.get("pixel_roc_auc", "-"), r.get("aupro", "-"), r["settings"],
             f"{r['fit_seconds']:.0f}", f"{r['score_seconds']:.1f}"] for r in results["rows"]]
    type_names = sorted(set(types) - {"MT_Free"})
    type_rows = [[r["input"], r["model"], SCORE_LABEL[r["score"]]] + [r["per_type"][t] for t in type_names]
                 for r in results["rows"]]
    timing = results["heatmap_640x480_stride4"]
    md = "\n".join([
        "# Magnetic tile defects (DifferNet split)",
        "",
        "Command: `OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/magnetic_tile.py`"
        + (" (quick check: `--quick`)" if args.quick else ""),
        "",
        f"Machine: {results['machine']}; load average {results['load_average_at_start']:.1f} at the start and "
        f"{results['load_average_at_end']:.1f} at the end (a load above 1 means other jobs shared the 2 cores; "
        "times vary by 10 to 20 % from run to run on this virtual machine). One thread: on a shared, "
        "overloaded machine this was several times faster than two.",
        "",
        f"{len(train_files)} defect-free training images; {int((y == 0).sum())} defect-free and "
        f"{int(y.sum())} defective test images. Preprocessing (no labels): landscape images transposed to "
        "portrait, per-image standardisation (mean 0.5, 0.15 per standard deviation, clipped), bilinear "
        f"resize to {WHOLE}x{WHOLE} (whole-image models), {MAPPED}x{MAPPED} (whole-image models with pixel "
        f"metrics: maps smoothed with a Gaussian of sigma {MAP_SIGMA:g} pixels, then resized back to each tile's "
        f"own size and orientation and scored against its original mask) or {PATCHED}x{PATCHED} (patch "
        "models; masks resized with nearest-neighbour sampling to 64x64). No pretrained weights. 10 % of the training "
        "images are held out for the threshold and the best epoch.",
        "",
        markdown_table(header, rows),
        "",
        "Image ROC-AUC per defect type (defect-free test images against one type):",
        "",
        markdown_table(["input", "model", "score"] + type_names, type_rows),
        "",
        "Heatmap of one 640x480 image (patch mode, 96x96 patches: 13,289 at stride 4, 3,350 at stride 8): "
        + "; ".join(f"{k}: {v['seconds']:.3g} s" for k, v in timing.items()) + ".",
        "",
        f"Pixel ROC-AUC (at each tile's own size) of the {MAPPED}x{MAPPED} whole-image maps by the Gaussian "
        f"smoothing sigma (pixels at {MAPPED}x{MAPPED}; the table above uses sigma {MAP_SIGMA:g}):",
        "",
        markdown_table(["model", "score"] + [f"sigma {sg}" for sg in SIGMA_SWEEP],
                       [[r["model"], SCORE_LABEL[r["score"]]] + [r["pixel_roc_auc_by_sigma"][str(sg)] for sg in SIGMA_SWEEP]
                        for r in results["rows"] if r["mode"] == "whole image, maps"]),
        "",
        (f"Where the pixel ROC-AUC of the {MAPPED}x{MAPPED} maps (sigma {MAP_SIGMA:g}) is lost: the pixel ROC-AUC of "
         "each group of defect pixels against each group of clean pixels (in brackets, the group's share of all "
         "defect or all clean pixels; the pooled figure is close to the mean of these, weighted by the shares):"),
        "",
        pixel_auc_by_group_tables({f"{r['model']} {SCORE_LABEL[r['score']]}": r["pixel_auc_by_group"]
                                   for r in results["rows"] if "pixel_auc_by_group" in r}),
        "",
        f"![VAE {MAPPED} heatmaps](magnetic_tile_heatmaps_vae{MAPPED}.png)",
        "",
        "![VAE heatmaps](magnetic_tile_heatmaps_vae.png)",
        "",
        "![GMM heatmaps](magnetic_tile_heatmaps_gmm.png)",
        "",
        "![latent space](magnetic_tile_latent.png)",
    ])
    print("\n" + md)
    write_results("magnetic_tile" + ("_quick" if args.quick else ""), md, results)


if __name__ == "__main__":
    main()
