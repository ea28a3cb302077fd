"""Scoring throughput for 28x28 images on the CPU: images per second of
``decision_function`` on the 10,000 MNIST test images (best of 3 runs).

    python benchmarks/throughput.py
"""

from __future__ import annotations

import time

import numpy as np
from _common import data_dir, machine, markdown_table, write_results

from reconad import ImageDetector


def main() -> None:
    mnist = np.load(data_dir() / "mnist" / "mnist.npz")
    x_train, y_train, x_test = mnist["x_train"], mnist["y_train"], mnist["x_test"]
    rows, data = [], {"machine": machine(), "models": {}}
    for name in ("conv_ae", "dense_ae", "tutorial_cae"):
        det = ImageDetector(model=name, epochs=1, device="cpu", verbose=0).fit(x_train[y_train == 1][:2000])
        det.decision_function(x_test[:256])  # warm-up
        best = min(_timed(det, x_test) for _ in range(3))
        ips = len(x_test) / best
        n_params = sum(p.numel() for p in det.model_.parameters())
        data["models"][name] = {"images_per_second": ips, "parameters": n_params}
        rows.append([name, f"{n_params:,}", f"{ips:,.0f}", f"{1000 / ips * 1000:.1f} µs"])
        print(f"{name}: {ips:,.0f} images/s", flush=True)
    table = markdown_table(["model", "parameters", "images / s", "per image"], rows)
    print("\n" + table)
    md = ("# Scoring throughput, 28×28 images, CPU\n\n"
          "`decision_function` on the 10,000 MNIST test images (uint8 in, scores out; batches of "
          "256), best of 3 runs.\n\n"
          f"Command: `python benchmarks/throughput.py`  \nMachine: {data['machine']}.\n\n" + table + "\n")
    write_results("throughput", md, data)


def _timed(det, x) -> float:
    t0 = time.perf_counter()
    det.decision_function(x)
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
