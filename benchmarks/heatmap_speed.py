"""Time of one anomaly map of a 640x480 image from 96x96 patches (the paper's set-up).

Rows: the paper VAE (N_c = 16, N_z = 10) at stride 4 (13,289 patches) and stride 8, and
the PCA + GMM, each with 1 and 2 threads, best of --repeats. The reference rows score the
same grid with the training network as it is (NCHW, batch norm as a layer, batches of 512),
which is how reconad scored grids before the fast inference copy; they show the speed-up.
The weights come from a one-epoch fit on random images: only the time matters here.

    python benchmarks/heatmap_speed.py
"""

import argparse
import os

import numpy as np
import torch

from _common import best_time, machine, markdown_table, write_results

from reconad import ImageDetector
from reconad.scoring import patches

MODELS = {
    "paper_vae N_c=16 N_z=10": dict(model="paper_vae", width=16, latent_dim=10, epochs=1),
    "gmm N_z=5 N_h=32": dict(model="gmm", latent_dim=5, model_kwargs={"pca_components": 32}),
}


def reference_map(det, image: np.ndarray, stride: int) -> np.ndarray:
    """The grid scored by the training network in batches of 512, NCHW."""
    fn = det._strategy().score_fn(det, det._score_name(None))
    det.model_.eval()
    with torch.no_grad():
        grid = patches.grid_scores(image[None].astype(np.float32) / 255, 96, stride,
                                   lambda b: fn(b, det.model_(b)), batch_size=512)
    return patches.scores_to_map(grid, 96, stride, *image.shape)


def best_of(fn, repeats: int) -> float:
    fn()  # warm-up
    return best_time(fn, repeats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", default="1,2")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    train = (rng.random((4, 128, 128)) * 255).astype(np.uint8)
    image = (rng.random((480, 640)) * 255).astype(np.uint8)
    rows, data = [], {"machine": machine(), "load_average_at_start": os.getloadavg()[0], "rows": []}
    for name, kw in MODELS.items():
        det = ImageDetector(patch_size=96, patches_per_image=16, verbose=0, random_state=0, **kw).fit(train)
        for stride in (4, 8):
            n = int(np.prod(patches.grid_shape(480, 640, 96, stride)))
            for threads in (int(t) for t in args.threads.split(",")):
                torch.set_num_threads(threads)
                fast = best_of(lambda: det.anomaly_map(image[None], stride=stride), args.repeats)
                ref = best_of(lambda: reference_map(det, image, stride), args.repeats)
                row = {"model": name, "stride": stride, "patches": n, "threads": threads,
                       "seconds": fast, "reference_seconds": ref}
                data["rows"].append(row)
                rows.append([name, stride, n, threads, f"{fast:.2f}", f"{ref:.2f}", f"{ref / fast:.2f}x"])
                print(" | ".join(str(v) for v in rows[-1]), flush=True)
    data["load_average_at_end"] = os.getloadavg()[0]
    md = "\n".join([
        "# Anomaly map of one 640x480 image from 96x96 patches",
        "",
        "Command: `python benchmarks/heatmap_speed.py`",
        f"Machine: {data['machine']}; load average {data['load_average_at_start']:.1f} at the start, "
        f"{data['load_average_at_end']:.1f} at the end; best of {args.repeats}.",
        "",
        markdown_table(["model", "stride", "patches", "threads", "map (s)",
                        "training network, batches of 512 (s)", "speed-up"], rows),
        "",
        "The map scores every 96x96 patch of the grid with a copy of the network made for",
        "inference (`reconad.models.inference.fast_inference_copy`: batch norm folded into the",
        "convolutions, the decoder's output layer as a sub-pixel convolution, channels-last",
        "weights and inputs) one grid row at a time (137 patches at stride 4), and spreads the",
        "patch scores over the pixels with two matrix products.",
    ])
    write_results("heatmap_speed", md + "\n", data)


if __name__ == "__main__":
    main()
