"""AnoGAN against f-AnoGAN on one-class MNIST: ROC-AUC and scoring time per image.

Protocol: for each digit, one GAN is trained on (a seeded subset of) that digit's training
images, then f-AnoGAN's encoder; AnoGAN uses the very same generator and discriminator,
so the two differ only in how they find the latent code. Test: a random subset of
the MNIST test set (seeded, the same for both), that digit normal and all others
anomalous. Both score ``(1 - lam) * residual + lam * discrimination`` with lam = 0.1;
AnoGAN finds the latent code by ``--search-steps`` Adam steps per batch of 256 images,
f-AnoGAN by one encoder pass.

    python benchmarks/mnist_gan.py [--digits 0,1,7] [--epochs 15] [--n-train 3000] [--n-test 500]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from _common import data_dir, machine, markdown_table, write_results
from sklearn.metrics import roc_auc_score

from sklearn.base import clone

from reconad import ImageDetector
from reconad.data.images import to_float_array


def anogan_from(fanogan: ImageDetector, calibration) -> ImageDetector:
    """An AnoGAN detector on the generator and discriminator of a fitted f-AnoGAN one
    (latent search instead of the encoder); its threshold from ``calibration`` images."""
    ano = clone(fanogan).set_params(model="anogan")
    ano.input_shape_, ano.device_ = fanogan.input_shape_, fanogan.device_
    ano.history_, ano.best_epoch_ = fanogan.history_, fanogan.best_epoch_
    ano.model_ = ano._build()
    state = {k: v for k, v in fanogan.model_.state_dict().items() if not k.startswith("encoder.")}
    ano.model_.load_state_dict(state)
    ano.model_.to(ano.device_).eval()
    ano._set_threshold_from(ano._strategy().scores(ano, to_float_array(calibration), "gan"))
    return ano


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--digits", default="0,1,7")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--n-train", type=int, default=3000)
    ap.add_argument("--n-test", type=int, default=500)
    ap.add_argument("--search-steps", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    digits = [int(d) for d in args.digits.split(",")]
    mnist = np.load(data_dir() / "mnist" / "mnist.npz")
    x_train, y_train, x_test, y_test = (mnist[k] for k in ("x_train", "y_train", "x_test", "y_test"))
    pick = np.random.RandomState(args.seed).permutation(len(x_test))[:args.n_test]
    x_test, y_test = x_test[pick], y_test[pick]
    settings = dict(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, latent_dim=64, width=256,
                    device="cpu", verbose=0, random_state=args.seed)
    results: dict = {"machine": machine(), "load_average_start": os.getloadavg(), "epochs": args.epochs,
                     "n_test": len(x_test), "search_steps": args.search_steps, "digits": {}}
    for digit in digits:
        row = {}
        normal = x_train[y_train == digit]
        normal = normal[np.random.RandomState(args.seed).permutation(len(normal))[:args.n_train]]
        t0 = time.perf_counter()
        fan = ImageDetector(model="fanogan", model_kwargs={"search_steps": args.search_steps},
                            **settings).fit(normal)
        fit_s = time.perf_counter() - t0
        ano = anogan_from(fan, normal[:256])
        for kind, det in (("anogan", ano), ("fanogan", fan)):
            t1 = time.perf_counter()
            scores = det.decision_function(x_test)
            t2 = time.perf_counter()
            row[kind] = {"roc_auc": float(roc_auc_score((y_test != digit).astype(int), scores)),
                         "fit_s": fit_s, "score_ms_per_image": (t2 - t1) / len(x_test) * 1000}
        results["digits"][digit] = row
        print(f"digit {digit}: " + "  ".join(
            f"{k} AUC {v['roc_auc']:.4f} fit {v['fit_s']:.0f}s score {v['score_ms_per_image']:.3f} ms/img"
            for k, v in row.items()), flush=True)
    results["load_average_end"] = os.getloadavg()
    rows = []
    fit_total = sum(results["digits"][d]["fanogan"]["fit_s"] for d in digits)
    for kind in ("anogan", "fanogan"):
        aucs = [results["digits"][d][kind]["roc_auc"] for d in digits]
        ms = np.mean([results["digits"][d][kind]["score_ms_per_image"] for d in digits])
        rows.append([kind, *aucs, float(np.mean(aucs)), f"{ms:.3f}"])
    speedup = float(rows[0][-1]) / float(rows[1][-1])
    results["speedup"] = speedup
    results["auc_gap"] = rows[0][-2] - rows[1][-2]
    table = markdown_table(["detector", *[f"digit {d}" for d in digits], "mean ROC-AUC",
                            "scoring ms / image"], rows)
    print("\n" + table + f"\n\nf-AnoGAN scores {speedup:.0f}x faster; ROC-AUC gap "
          f"(AnoGAN - f-AnoGAN) {results['auc_gap']:+.4f}")
    if args.no_write:
        return
    cmd = (f"python benchmarks/mnist_gan.py --digits {args.digits} --epochs {args.epochs} "
           f"--n-train {args.n_train} --n-test {args.n_test} --search-steps {args.search_steps} "
           f"--batch-size {args.batch_size} --lr {args.lr:g}")
    md = (
        "# AnoGAN and f-AnoGAN on one-class MNIST\n\n"
        "Protocol: for each digit one dense GAN (latent 64, width 256, "
        f"{args.epochs} epochs, batch {args.batch_size}, Adam {args.lr:g}) is trained on {args.n_train} of that digit's "
        "training images (seeded draw), then f-AnoGAN's encoder (izi_f) for as many epochs; "
        "AnoGAN uses the same generator and discriminator, so only the way the latent code is "
        "found differs. Test: "
        f"{len(x_test)} images drawn at random (seed {args.seed}) from the MNIST test set, that "
        "digit normal and all others anomalous. Score: (1 − λ)·residual + λ·feature-matching "
        f"loss on the discriminator, λ = 0.1. AnoGAN searches the latent code with "
        f"{args.search_steps} Adam steps for each batch of 256 images at once, every image from "
        "the same starting code (so its score does not depend on its batch); f-AnoGAN takes "
        "it from its encoder. Scoring time is wall-clock per image over the whole test subset.\n\n"
        f"Command: `{cmd}`  \n"
        f"Machine: {results['machine']}. The CPU was shared with other jobs (load average "
        f"{results['load_average_start'][0]:.1f} at the start, {results['load_average_end'][0]:.1f} "
        "at the end), so times are noisy.\n\n" + table + "\n\n"
        f"f-AnoGAN scores **{speedup:.0f}×** faster than AnoGAN; mean ROC-AUC gap (AnoGAN − "
        f"f-AnoGAN) {results['auc_gap']:+.4f}. Training (GAN and encoder, all digits): "
        f"{fit_total:.0f} s.\n"
    )
    write_results("mnist_gan", md, results)


if __name__ == "__main__":
    main()
