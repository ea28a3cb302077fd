"""ONNX Runtime against the Python detector, every exportable model family, on the CPU.

For each family: fit briefly on real data (speed does not depend on training), export to
ONNX with the family's default input (uint8 images, float32 series, float64 table rows),
check that the scores agree to a relative 1e-5, then time, like for like (raw input in,
scores out, on the same number of threads):

* batch: images: 2,000 MNIST test images in batches of 256; series: one SKAB run of
  ``--series-steps`` rows (8 sensors, window 60); tables: all 3,772 rows of ODDS thyroid;
* one call: one image; a 120-row series (a monitor's buffer); one table row.

The two engines take turns, 9 rounds: each round times one batch pass and the median of
``--calls`` / 9 single calls of each; the table gives the best round of each.

Python: ``decision_function``. ONNX Runtime: ``session.run`` on the exported graph,
asking for the score only, with the session on ``--threads`` intra-op threads,
sequential execution and all graph optimisations. Results go to ``docs/export_speed.md``
(1 thread) or ``docs/export_speed_<n>threads.md``.

    python benchmarks/export_speed.py [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import torch
from _common import best_time, data_dir, machine, markdown_table, write_results

from reconad import ImageDetector, SeriesDetector, TabularDetector
from reconad.export import export

IMAGE_FAMILIES = {  # name: (model, settings, score)
    "conv_ae": ("conv_ae", {}, None),
    "dense_ae": ("dense_ae", {}, None),
    "tutorial_cae": ("tutorial_cae", {}, None),
    "conv_vae (unregularized)": ("conv_vae", {}, None),
    "conv_vae (elbo)": ("conv_vae", {}, "elbo"),
    "dense_vae (unregularized)": ("dense_vae", {}, None),
    "paper_vae (unregularized, depth 3)": ("paper_vae", {"depth": 3}, None),
    "gmm (unregularized)": ("gmm", {}, None),
    "gmm (nll)": ("gmm", {}, "nll"),
    "fanogan": ("fanogan", {}, None),
}
SERIES_FAMILIES = ("conv_ae", "lstm_ae", "lstm_vae", "dense_ae")
TABLE_FAMILIES = ("ae", "vae")


def _median_call(fn, calls: int) -> float:
    fn()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _session(det, threads: int, tmp: str, **kw) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    path = export(det, Path(tmp) / "model.onnx", **kw)
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


args_repeats = 9


def _measure(det, sess, batches: list, one, calls: int, prepare=lambda x: x) -> dict:
    """Times of the detector and the session on ``batches`` (a list of inputs) and ``one``."""
    def onnx_scores():
        return [sess.run(["score"], {"input": prepare(b)})[0] for b in batches]

    ref = np.concatenate([det.decision_function(b) for b in batches])
    got = np.concatenate(onnx_scores())
    diff = np.abs(got - ref)
    # relative 1e-5, with a floor of 1e-6 of the largest score for scores that cross zero
    assert np.all(diff <= 1e-5 * np.abs(ref) + 1e-6 * np.abs(ref).max()), "parity"
    parity = {"max_relative_difference": float(np.max(diff / np.abs(ref))),
              "max_difference_over_max_score": float(diff.max() / np.abs(ref).max())}
    n = sum(len(b) for b in batches)
    one_in = prepare(one)
    # the two engines take turns, so that a change in the machine's load hits both alike
    py_batch, ort_batch, py_one, ort_one = [], [], [], []
    for _ in range(args_repeats):
        py_batch.append(best_time(lambda: [det.decision_function(b) for b in batches], 1))
        ort_batch.append(best_time(onnx_scores, 1))
        py_one.append(_median_call(lambda: det.decision_function(one), calls // args_repeats))
        ort_one.append(_median_call(lambda: sess.run(["score"], {"input": one_in}), calls // args_repeats))
    py_batch, ort_batch, py_one, ort_one = min(py_batch), min(ort_batch), min(py_one), min(ort_one)
    return {**parity, "n": n, "python_per_second": n / py_batch, "onnx_per_second": n / ort_batch,
            "batch_speedup": py_batch / ort_batch, "python_one_ms": py_one * 1000,
            "onnx_one_ms": ort_one * 1000, "one_speedup": py_one / ort_one}


def _skab_run(steps: int) -> np.ndarray:
    folder = data_dir() / "skab"
    frames = [pd.read_csv(p, sep=";") for p in sorted((folder / "valve1").glob("*.csv"), key=lambda p: int(p.stem))]
    cols = [c for c in frames[0].columns if c not in ("datetime", "anomaly", "changepoint")]
    values = np.concatenate([f[cols].to_numpy(np.float64) for f in frames])
    return values[:steps]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--series-steps", type=int, default=5000)
    args = parser.parse_args()
    threads = args.threads
    torch.set_num_threads(threads)
    data = {"machine": machine(), "threads": threads, "families": {}}
    rows = []

    def record(kind: str, name: str, unit: str, entry: dict) -> None:
        data["families"][f"{kind} {name}"] = entry
        rows.append([kind, name, f"{entry['python_per_second']:,.0f}", f"{entry['onnx_per_second']:,.0f}",
                     f"{entry['batch_speedup']:.2f}×", f"{entry['python_one_ms']:.2f}",
                     f"{entry['onnx_one_ms']:.2f}", f"{entry['one_speedup']:.2f}×",
                     f"{entry['max_relative_difference']:.1e}"])
        print(kind, name, unit, {k: round(v, 3) for k, v in entry.items()}, flush=True)

    mnist = np.load(data_dir() / "mnist" / "mnist.npz")
    x_train, y_train, x_test = mnist["x_train"], mnist["y_train"], mnist["x_test"][:2000]
    normal = x_train[y_train == 1][:2000]
    batches = [x_test[i:i + 256] for i in range(0, len(x_test), 256)]
    fitted = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (model, settings, score) in IMAGE_FAMILIES.items():
            key = (model, tuple(settings.items()))
            if key not in fitted:
                fitted[key] = ImageDetector(model=model, epochs=1, device="cpu", verbose=0, **settings).fit(normal)
            det = fitted[key]
            if score is not None:  # the same network with another score and its own threshold
                det = copy.deepcopy(det).set_params(score=score).calibrate(normal[:500])
            record("image", name, "images", _measure(det, _session(det, threads, tmp), batches, x_test[:1],
                                                      args.calls))

        run = _skab_run(args.series_steps)
        normal_rows = pd.read_csv(data_dir() / "skab" / "anomaly-free" / "anomaly-free.csv", sep=";")
        cols = [c for c in normal_rows.columns if c not in ("datetime", "anomaly", "changepoint")]
        normal_rows = normal_rows[cols].to_numpy(np.float64)
        f32 = lambda x: x.astype(np.float32)  # noqa: E731  (the graph's input type)
        for model in SERIES_FAMILIES:
            det = SeriesDetector(model=model, window=60, epochs=1, device="cpu", verbose=0).fit(normal_rows)
            record("series", model, "steps", _measure(det, _session(det, threads, tmp), [run], run[:120],
                                                       args.calls, f32))

        odds = np.load(data_dir() / "odds" / "thyroid.npz")
        x, y = odds["x"].astype(np.float64), odds["y"].ravel()
        for model in TABLE_FAMILIES:
            det = TabularDetector(model=model, epochs=1, device="cpu", verbose=0).fit(x[y == 0])
            record("table", model, "rows", _measure(det, _session(det, threads, tmp), [x], x[:1], args.calls))

    with open("/proc/loadavg") as fh:
        load = fh.read().split()[0]
    data["load_average"] = float(load)
    table = markdown_table(["kind", "model", "Python / s (batch)", "ONNX Runtime / s (batch)", "ratio (batch)",
                            "Python ms / call", "ONNX Runtime ms / call", "ratio (one call)",
                            "largest relative score difference"], rows)
    print("\n" + table)
    md = (f"# ONNX Runtime against the Python detector, every exportable family, CPU, {threads} thread(s)\n\n"
          "Raw input in, scores out, like for like: `decision_function` against `session.run` on the exported "
          "graph (asking for the score only). Batch: 2,000 MNIST test images (uint8, 28×28) in batches of 256; "
          f"one SKAB run of {args.series_steps:,} steps × 8 sensors (float32, window 60, stride 1, mean of "
          "the windows per step); the 3,772 rows of ODDS thyroid (float64), given per second "
          "(images, steps, rows). One call: one image, a 120-step series, one row. The engines take turns "
          f"for {args_repeats} rounds (one batch pass and the median of {args.calls // args_repeats} single "
          "calls each); the best round counts, as the CPU is shared and single rounds vary by ±30 %. Models fitted for 1 epoch with their default sizes (paper_vae with depth 3, "
          f"as 28×28 images allow). {threads} thread(s) each (torch and ONNX Runtime). Ratio = Python time / "
          "ONNX Runtime time (above 1: ONNX Runtime is faster). Scores are checked in the run: within a "
          "relative 1e-5, or 1e-6 of the largest score for scores near zero (the GMM's NLL crosses zero: "
          "there a float32 rounding difference of about 3e-5 is a large relative one); the last column "
          "gives the largest relative difference.\n\n"
          f"Command: `python benchmarks/export_speed.py --threads {threads}`  \nMachine: {machine()}; load "
          f"average {load} at the end of the run (the CPU is shared, so times are noisy).\n\n" + table + "\n")
    write_results("export_speed" if threads == 1 else f"export_speed_{threads}threads", md, data)


if __name__ == "__main__":
    main()
