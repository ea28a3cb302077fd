"""Live-monitoring speed on the CPU: rows per second and latency per row of
``reconad.ops.monitor.Monitor`` with a conv_ae (window 60) on the 8 SKAB sensors.

    python benchmarks/monitor_throughput.py

The stream is the SKAB experiments' rows, one after the other (37,401 rows), as CSV
text lines. Three ways of arrival: the whole file read as it comes (batches of what is
available, as ``reconad monitor`` does), batches of 100 rows, and one row at a time (each
row scored alone: the latency a single new row sees).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from _common import data_dir, machine, markdown_table, write_results

from reconad import SeriesDetector
from reconad.data.csv import read_csv
from reconad.ops.monitor import Monitor, follow


def main() -> None:
    torch.set_num_threads(1)
    root = data_dir() / "skab"
    normal = read_csv(root / "anomaly-free" / "anomaly-free.csv")
    sensors = [c for c in normal.columns if c not in ("anomaly", "changepoint")]
    det = SeriesDetector(model="conv_ae", window=60, epochs=3, columns=sensors, device="cpu",
                         verbose=0).fit(normal.iloc[:2000])
    frames = [read_csv(p) for folder in ("valve1", "valve2", "other")
              for p in sorted((root / folder).glob("*.csv"))]
    stream = pd.concat(frames)[sensors]
    text = stream.to_csv(sep=";", date_format="%Y-%m-%d %H:%M:%S")
    lines = text.splitlines()
    n = len(lines) - 1
    rows, data = [], {"machine": machine(), "rows": n, "modes": {}}

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "stream.csv"
        path.write_text(text, encoding="utf-8")
        mon = Monitor(det, consecutive=5)
        t0 = time.perf_counter()
        for batch in follow(str(path), follow=False):
            mon.push_lines(batch)
        elapsed = time.perf_counter() - t0
        assert mon.n_rows == n
        data["modes"]["file"] = {"rows_per_second": n / elapsed, "seconds": elapsed}
        rows.append(["whole file, read as it comes", f"{n / elapsed:,.0f}", "–", "–"])

    for size in (100, 1):
        mon = Monitor(det, consecutive=5)
        mon.push_lines(lines[:1])
        body = lines[1:] if size > 1 else lines[1:5001]
        lat, cpu = [], []
        t0 = time.perf_counter()
        for start in range(0, len(body), size):
            s, c = time.perf_counter(), time.thread_time()
            mon.push_lines(body[start:start + size])
            n_rows = min(size, len(body) - start)
            lat.append((time.perf_counter() - s) / n_rows)
            cpu.append((time.thread_time() - c) / n_rows)
        elapsed = time.perf_counter() - t0
        lat_ms, cpu_ms = np.asarray(lat) * 1000, np.asarray(cpu) * 1000
        rps = len(body) / elapsed
        label = f"batches of {size} rows" if size > 1 else "one row at a time (5,000 rows)"
        data["modes"][f"batch_{size}"] = {"rows_per_second": rps, "latency_ms_mean": float(lat_ms.mean()),
                                          "latency_ms_p99": float(np.percentile(lat_ms, 99)),
                                          "cpu_ms_mean": float(cpu_ms.mean()),
                                          "cpu_ms_p99": float(np.percentile(cpu_ms, 99))}
        rows.append([label, f"{rps:,.0f}", f"{lat_ms.mean():.3f} ms (p99 {np.percentile(lat_ms, 99):.3f} ms)",
                     f"{cpu_ms.mean():.3f} ms (p99 {np.percentile(cpu_ms, 99):.3f} ms)"])
        print(rows[-1], flush=True)

    table = markdown_table(["arrival", "rows / s", "time per row (wall clock)", "CPU time per row"], rows)
    print("\n" + table)
    md = ("# Live monitoring speed, CPU\n\n"
          f"`reconad.ops.monitor.Monitor` (what `reconad monitor` runs) with a conv_ae, window 60, 8 sensors, "
          f"on {n:,} SKAB rows as CSV text; parsing, scaling, scoring and the alert rule included.\n\n"
          f"Command: `python benchmarks/monitor_throughput.py`  \nMachine: {data['machine']} (1 torch "
          "thread; the CPU was shared with other jobs, so these are lower bounds).\n\n" + table + "\n\n"
          "For one row at a time, the time per row is the latency from a row's arrival to its score "
          "and alert decision. Rows that arrive together are scored in one forward pass. The CPU time "
          "is what the scoring thread itself used (`time.thread_time`): on a shared, overloaded CPU the "
          "wall-clock time includes the waits for a core, the CPU time does not. The detector has the "
          "library's defaults (slow sensors as operating point, alert rule with hysteresis); a few "
          "windows at a time go through the conv network traced once (`torch.jit`).\n")
    write_results("monitor_throughput", md, data)


if __name__ == "__main__":
    main()
