"""ONNX Runtime against the Python detector, per model family, 28x28 images on the CPU.

For each family: fit on 2,000 MNIST 1s (1 epoch; speed does not depend on training),
export to ONNX (uint8 input), then time (a) scoring the 10,000 MNIST test images in
batches of 256 (best of 3) and (b) one image per call (median of 200 calls), with
``ImageDetector.decision_function`` and with an ONNX Runtime session on the exported
file (which also computes labels and maps). Both run on the same number of threads
(``--threads``, default 1: a fair match that stays steady on a shared CPU); results go to
``docs/export_speed.md`` (1 thread) or ``docs/export_speed_<n>threads.md``.

    python benchmarks/export_speed.py [--threads 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from _common import data_dir, machine, markdown_table, write_results

from reconad import ImageDetector
from reconad.export import export

FAMILIES = ("conv_ae", "dense_ae", "tutorial_cae")


def _best(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _median_call(fn, calls: int = 200) -> float:
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    threads = parser.parse_args().threads
    torch.set_num_threads(threads)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    mnist = np.load(data_dir() / "mnist" / "mnist.npz")
    x_train, y_train, x_test = mnist["x_train"], mnist["y_train"], mnist["x_test"]
    rows, data = [], {"machine": machine(), "threads": threads, "families": {}}
    for name in FAMILIES:
        det = ImageDetector(model=name, epochs=1, device="cpu", verbose=0).fit(x_train[y_train == 1][:2000])
        with tempfile.TemporaryDirectory() as tmp:
            path = export(det, Path(tmp) / "model.onnx")
            sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

        def onnx_scores(x=x_test):
            return np.concatenate([sess.run(["score"], {"input": x[i:i + 256]})[0] for i in range(0, len(x), 256)])

        ref = det.decision_function(x_test)
        assert np.allclose(onnx_scores(), ref, rtol=1e-5, atol=0), "parity"
        py_batch = _best(lambda: det.decision_function(x_test))
        ort_batch = _best(onnx_scores)
        one = x_test[:1]
        det.decision_function(one)
        py_one = _median_call(lambda: det.decision_function(one))
        ort_one = _median_call(lambda: sess.run(None, {"input": one}))
        entry = {"python_images_per_second": len(x_test) / py_batch, "onnx_images_per_second": len(x_test) / ort_batch,
                 "batch_speedup": py_batch / ort_batch, "python_one_image_ms": py_one * 1000,
                 "onnx_one_image_ms": ort_one * 1000, "one_image_speedup": py_one / ort_one}
        data["families"][name] = entry
        rows.append([name, f"{entry['python_images_per_second']:,.0f}", f"{entry['onnx_images_per_second']:,.0f}",
                     f"{entry['batch_speedup']:.2f}×", f"{entry['python_one_image_ms']:.2f}",
                     f"{entry['onnx_one_image_ms']:.2f}", f"{entry['one_image_speedup']:.2f}×"])
        print(name, entry, flush=True)
    with open("/proc/loadavg") as fh:
        load = fh.read().split()[0]
    data["load_average"] = float(load)
    table = markdown_table(["model", "Python images/s", "ONNX Runtime images/s", "ratio (batches)",
                            "Python ms / 1 image", "ONNX Runtime ms / 1 image", "ratio (1 image)"], rows)
    print("\n" + table)
    md = (f"# ONNX Runtime against the Python detector, 28×28 images, CPU, {threads} thread(s)\n\n"
          "Scores of the 10,000 MNIST test images in batches of 256 (best of 3), and one image per call "
          "(median of 200 calls); the ONNX graph takes the raw uint8 images and also returns labels and "
          f"anomaly maps. {threads} thread(s) each (torch and ONNX Runtime). Ratio = Python time / ONNX Runtime time "
          "(above 1: ONNX Runtime is faster). Scores agree to a relative 1e-5 (checked in the run).\n\n"
          f"Command: `python benchmarks/export_speed.py --threads {threads}`  \nMachine: {machine()}; load average {load} at "
          "the end of the run (the CPU is shared, so times are noisy).\n\n" + table + "\n")
    write_results("export_speed" if threads == 1 else f"export_speed_{threads}threads", md, data)


if __name__ == "__main__":
    main()
