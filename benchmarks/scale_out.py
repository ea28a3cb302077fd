"""Batch scoring on a local Dask cluster: rows per second with 1 and 2 worker processes and
peak memory per worker, for a large table and a long series generated on the fly inside
the workers (nothing is read from or kept on disk but the Parquet scores, deleted after).

    python benchmarks/scale_out.py                      # 2M and 20M rows, 10M steps
    python benchmarks/scale_out.py --quick              # small sizes, to try it out

Uses reconad's ``TabularDetector``/``SeriesDetector`` when present, else stand-ins with
the same contract (``_scale_standins.py``: small dense autoencoders).
"""

from __future__ import annotations

import argparse
import importlib
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _common import machine, markdown_table, write_results

import dask.dataframe as dd
from distributed import Client, LocalCluster

from reconad.scale import dask_scoring
from reconad.scale import frames as frame_scoring

TABLE_PART, SERIES_PART, FEATURES, SERIES_FEATURES = 500_000, 250_000, 16, 2


def table_part(i: int) -> pd.DataFrame:
    rng = np.random.default_rng(i)
    x = rng.standard_normal((TABLE_PART, FEATURES), dtype=np.float32)
    frame = pd.DataFrame(x, columns=[f"f{j}" for j in range(FEATURES)])
    frame.insert(0, "row", np.arange(i * TABLE_PART, (i + 1) * TABLE_PART, dtype=np.int64))
    return frame


def series_part(i: int) -> pd.DataFrame:
    rng = np.random.default_rng(10_000 + i)
    t = np.arange(i * SERIES_PART, (i + 1) * SERIES_PART, dtype=np.int64)
    x = np.sin(t[:, None] / np.array([50.0, 170.0])) + 0.1 * rng.standard_normal((SERIES_PART, SERIES_FEATURES))
    frame = pd.DataFrame(x.astype(np.float32), columns=[f"f{j}" for j in range(SERIES_FEATURES)])
    frame.insert(0, "t", t)
    frame.insert(0, "machine", np.int32(0))
    return frame


def detectors(folder: Path) -> dict:
    import reconad

    out = {}
    if hasattr(reconad, "TabularDetector"):
        det = reconad.TabularDetector(epochs=1, random_state=0, verbose=0).fit(table_part(0).drop(columns="row").iloc[:20_000])
        out["table"] = ("TabularDetector", det)
    else:
        from _scale_standins import TableAE
        out["table"] = ("stand-in dense AE 16-32-8-32-16", TableAE().fit(table_part(0).drop(columns="row").iloc[:2000]))
    if hasattr(reconad, "SeriesDetector"):
        det = reconad.SeriesDetector(epochs=1, random_state=0, verbose=0).fit(series_part(0)[["f0", "f1"]].iloc[:20_000])
        out["series"] = ("SeriesDetector", det)
    else:
        from _scale_standins import SeriesAE
        out["series"] = ("stand-in window AE (window 60, 2 features, 120-16-8-16-120)",
                         SeriesAE().fit(series_part(0)[["f0", "f1"]].iloc[:2000]))
    paths = {}
    for kind, (name, det) in out.items():
        paths[kind] = (name, det.save(folder / kind), getattr(det, "window", None))
    return paths


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def run(kind: str, model: Path, n_rows: int, workers: int, scratch: Path) -> dict:
    part_rows = TABLE_PART if kind == "table" else SERIES_PART
    n_parts = n_rows // part_rows
    make = table_part if kind == "table" else series_part
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      memory_limit="6GiB") as cluster, Client(cluster) as client:
        client.run(importlib.import_module, "_scale_standins")
        client.run(frame_scoring.load_cached, str(model))  # warm-up: imports and the model, once
        client.run(dask_scoring._set_worker_threads)
        baseline = client.run(rss_mb)
        data = dd.from_map(make, range(n_parts), meta=make(0).iloc[:0])
        out = scratch / f"{kind}-{n_rows}-{workers}"
        t0 = time.perf_counter()
        scores = dask_scoring.score_dask(model, data, id_column="machine" if kind == "series" else None)
        scores.to_parquet(str(out), write_index=False)
        seconds = time.perf_counter() - t0
        peaks = client.run(peak_rss_mb)
    n_out = sum(pd.read_parquet(f, columns=["score"]).shape[0] for f in out.glob("*.parquet"))
    shutil.rmtree(out)
    assert n_out == n_rows, (n_out, n_rows)
    return {"kind": kind, "rows": n_rows, "workers": workers, "partitions": n_parts, "seconds": seconds,
            "rows_per_second": n_rows / seconds, "peak_rss_mb_per_worker": max(peaks.values()),
            "baseline_rss_mb_per_worker": max(baseline.values())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small sizes to try it out")
    ap.add_argument("--series-steps", type=int, default=None,
                    help="length of the long series (default 10,000,000; 2,500,000 with --quick)")
    args = ap.parse_args()
    small, large, steps = (500_000, 1_000_000, 2_500_000) if args.quick else (2_000_000, 20_000_000, 10_000_000)
    steps = args.series_steps or steps
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        models = detectors(scratch / "models")
        plan = [("table", small, 1), ("table", small, 2), ("table", large, 1), ("table", large, 2),
                ("series", steps // 10, 2), ("series", steps, 1), ("series", steps, 2)]
        results = []
        for kind, n, workers in plan:
            r = run(kind, models[kind][1], n, workers, scratch)
            results.append(r)
            print(f"{kind:6s} {n:>11,} rows  {workers} worker(s): {r['rows_per_second']:>12,.0f} rows/s  "
                  f"peak {r['peak_rss_mb_per_worker']:,.0f} MB/worker (after warm-up "
                  f"{r['baseline_rss_mb_per_worker']:,.0f} MB)", flush=True)

    def find(kind, n, w):
        return next(r for r in results if (r["kind"], r["rows"], r["workers"]) == (kind, n, w))

    checks = {
        "table_speedup_2_vs_1": find("table", large, 2)["rows_per_second"] / find("table", large, 1)["rows_per_second"],
        "series_speedup_2_vs_1": find("series", steps, 2)["rows_per_second"] / find("series", steps, 1)["rows_per_second"],
        "table_memory_ratio_large_vs_small_2_workers":
            find("table", large, 2)["peak_rss_mb_per_worker"] / find("table", small, 2)["peak_rss_mb_per_worker"],
        "table_memory_ratio_large_vs_small_1_worker":
            find("table", large, 1)["peak_rss_mb_per_worker"] / find("table", small, 1)["peak_rss_mb_per_worker"],
        "series_memory_ratio_large_vs_small_2_workers":
            find("series", steps, 2)["peak_rss_mb_per_worker"] / find("series", steps // 10, 2)["peak_rss_mb_per_worker"],
    }
    rows = [[r["kind"], f"{r['rows']:,}", r["workers"], r["partitions"], f"{r['seconds']:.1f}",
             f"{r['rows_per_second']:,.0f}", f"{r['peak_rss_mb_per_worker']:,.0f}",
             f"{r['baseline_rss_mb_per_worker']:,.0f}"] for r in results]
    table = markdown_table(["data", "rows", "workers", "partitions", "seconds", "rows / s",
                            "peak MB / worker", "MB / worker after warm-up"], rows)
    summary = markdown_table(["check", "measured", "target"], [
        ["table: 2 workers vs 1 (rows/s)", f"{checks['table_speedup_2_vs_1']:.2f}×", "≥ 1.6×"],
        ["series: 2 workers vs 1 (rows/s)", f"{checks['series_speedup_2_vs_1']:.2f}×", "≥ 1.6×"],
        [f"table peak memory per worker, {large:,} vs {small:,} rows, 2 workers",
         f"{checks['table_memory_ratio_large_vs_small_2_workers']:.2f}", "within 1 ± 0.2"],
        [f"table peak memory per worker, {large:,} vs {small:,} rows, 1 worker",
         f"{checks['table_memory_ratio_large_vs_small_1_worker']:.2f}", "within 1 ± 0.2"],
        [f"series peak memory per worker, {steps:,} vs {steps // 10:,} steps, 2 workers",
         f"{checks['series_memory_ratio_large_vs_small_2_workers']:.2f}", "within 1 ± 0.2"],
    ])
    print("\n" + table + "\n\n" + summary)
    md = ("# Scaling out: batch scoring on a local Dask cluster\n\n"
          "`reconad.scale.dask_scoring.score_dask` over data generated inside the workers "
          f"({TABLE_PART:,} table rows of {FEATURES} float32 features, or {SERIES_PART:,} series steps "
          f"of {SERIES_FEATURES} features, per partition), scores written as Parquet. One thread per "
          "worker process; a fresh cluster per row; the time excludes starting the cluster and "
          "loading the model. Peak memory is each worker process's maximum resident set size.\n\n"
          f"Detectors: table: {models['table'][0]}; series: {models['series'][0]}.\n\n"
          f"Command: `python benchmarks/scale_out.py{' --quick' if args.quick else ''}"
          f"{f' --series-steps {args.series_steps}' if args.series_steps else ''}`  \n"
          f"Machine: {machine()}; load average before {load_before[0]:.1f}, after "
          f"{os.getloadavg()[0]:.1f} (other jobs on the same cores make the 2-worker speed-up "
          "smaller).\n\n" + table + "\n\n" + summary + "\n")
    if args.quick:
        return
    write_results("scale_out", md,
                  {"machine": machine(), "results": results, "checks": checks,
                   "detectors": {k: v[0] for k, v in models.items()}})


if __name__ == "__main__":
    main()
