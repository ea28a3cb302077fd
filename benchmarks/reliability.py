"""Two reliability checks with numbers: an image bomb against the scoring service, and the
monitor killed with SIGKILL at random moments while its input grows and rotates.

1. A 12000 x 12000 PNG (about 140 KB) is posted to a service (in a fresh process) that
   serves a 28 x 28 model: the time to the refusal, and how far the process's peak memory
   rises above its level just before.
2. ``reconad monitor --checkpoint`` follows a CSV file; 20 times it is killed (SIGKILL)
   after a random 0.5..3 s while rows are appended, and the file is rotated twice (moved
   to ``.1``/``.2``, a new one started). Each kill comes while the monitor runs (after its
   log says it started), at a random moment as rows arrive. At the end, the alerts written (by id) are
   compared with those of one uninterrupted pass over all rows.

    OMP_NUM_THREADS=1 python benchmarks/reliability.py
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import zlib
import struct
from pathlib import Path

import numpy as np
import pandas as pd

from _common import ROOT, machine, markdown_table, write_results

from reconad import ImageDetector, SeriesDetector, load
from reconad.data.samples import load_mnist_01
from reconad.ops.monitor import Monitor

KILLS = 20


def bomb_png(size: int) -> bytes:
    comp = zlib.compressobj(9)
    row = b"\x00" * (size + 1)
    data = b"".join(comp.compress(row) for _ in range(size)) + comp.flush()

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", data) + chunk(b"IEND", b""))


SERVICE_PROBE = r"""
import json, resource, sys, time
from fastapi.testclient import TestClient
from reconad import load
from reconad.serve import create_app
client = TestClient(create_app(load(sys.argv[1]), engine="python"), raise_server_exceptions=False)
blob = open(sys.argv[2], "rb").read()
client.post("/score", content=open(sys.argv[3], "rb").read(), headers={"content-type": "image/png"})  # warm
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
r = client.post("/score", content=blob, headers={"content-type": "image/png"})
dt = time.perf_counter() - t0
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"status": r.status_code, "detail": r.json()["detail"], "seconds": dt,
                  "peak_rise_mb": (after - before) / 1024}))
"""


def service_bomb(tmp: Path) -> dict:
    data = load_mnist_01()
    model = tmp / "img_model"
    ImageDetector(model="conv_ae", width=8, latent_dim=16, epochs=1, verbose=0).fit(
        data["train_ones"][:200]).save(model)
    blob = bomb_png(12000)
    (tmp / "bomb.png").write_bytes(blob)
    from PIL import Image
    Image.fromarray(data["test_ones"][0]).save(tmp / "ok.png")
    out = subprocess.run([sys.executable, "-c", SERVICE_PROBE, str(model), str(tmp / "bomb.png"), str(tmp / "ok.png")],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["file_kb"] = len(blob) / 1024
    return result


def frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    f = pd.DataFrame(np.c_[np.sin(t / 8), np.cos(t / 13), 0.5 * np.sin(t / 5)] + 0.05 * rng.standard_normal((n, 3)),
                     columns=["a", "b", "c"])
    f.insert(0, "time", pd.date_range("2024-01-01", periods=n, freq="s").strftime("%Y-%m-%d %H:%M:%S"))
    return f


def started(log: Path, n: int, timeout: float = 60.0) -> None:
    """Wait until the monitor's log shows its ``n``-th start."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and log.read_text(encoding="utf-8").count(" monitoring ") >= n:
            return
        time.sleep(0.05)


def monitor_kills(tmp: Path) -> dict:
    rng = np.random.default_rng(0)
    model = tmp / "series_model"
    SeriesDetector(window=8, width=8, epochs=2, verbose=0, random_state=0).fit(frame(300, 9)[["a", "b", "c"]]).save(model)
    f = frame(3000, 1)
    f.loc[rng.choice(np.arange(100, 3000), 40, replace=False), "a"] += 8.0
    lines = f.to_csv(index=False).splitlines()
    header, rows = lines[0], lines[1:]
    expected = {a["timestamp"] for a in Monitor(load(model), series="x").push_lines([header, *rows])}
    stream, alerts, ckpt = tmp / "s.csv", tmp / "alerts.jsonl", tmp / "ckpt.json"
    stream.write_text(header + "\n")
    cmd = [sys.executable, "-m", "reconad.cli", "monitor", "--model", str(model), "--input", str(stream),
           "--out", str(alerts), "--checkpoint", str(ckpt), "--idle-timeout", "2", "--log", str(tmp / "monitor.log")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    step = len(rows) // KILLS + 1
    rotate_at = {KILLS // 3, 2 * KILLS // 3}
    written, rotations = 0, 0
    for k in range(KILLS):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        started(tmp / "monitor.log", k + 1)          # killed while it runs, not while it starts
        chunk = rows[written:written + step]
        for part in np.array_split(np.arange(len(chunk)), 4):      # rows arrive while it runs
            time.sleep(rng.uniform(0.2, 1.2))
            if len(part):
                with open(stream, "a") as fh:
                    fh.write("\n".join(chunk[i] for i in part) + "\n")
        written += len(chunk)
        if k in rotate_at:
            rotations += 1
            os.rename(stream, tmp / f"s.csv.{rotations}")
            stream.write_text(header + "\n")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    got = [json.loads(x) for x in alerts.read_text().splitlines()]
    ids = [a["alert_id"] for a in got]
    state = json.loads(ckpt.read_text())["monitor"]["counters"]
    return {"kills": KILLS, "rotations": rotations, "rows": len(rows), "rows_scored": state["n_rows"],
            "alerts_expected": len(expected), "alerts_written": len(got), "distinct_ids": len(set(ids)),
            "missing": len(expected - {a["timestamp"] for a in got}),
            "extra": len({a["timestamp"] for a in got} - expected), "final_exit": res.returncode}


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="reconad-reliability-") as tmp:
        tmp = Path(tmp)
        bomb = service_bomb(tmp)
        kills = monitor_kills(tmp)
    t1 = markdown_table(["file", "declared size", "answer", "time to refusal", "peak memory rise"],
                        [[f"{bomb['file_kb']:.0f} KB PNG", "12000 x 12000", bomb["status"],
                          f"{bomb['seconds'] * 1000:.0f} ms", f"{bomb['peak_rise_mb']:.0f} MB"]])
    t2 = markdown_table(["SIGKILLs", "rotations", "rows", "rows scored", "alerts expected", "alerts written",
                         "distinct ids", "missing", "extra"],
                        [[kills["kills"], kills["rotations"], kills["rows"], kills["rows_scored"],
                          kills["alerts_expected"], kills["alerts_written"], kills["distinct_ids"],
                          kills["missing"], kills["extra"]]])
    print(t1, "\n")
    print(t2)
    md = ("# Reliability checks with numbers\n\n"
          f"Command: `OMP_NUM_THREADS=1 python benchmarks/reliability.py`  \nMachine: {machine()}.\n\n"
          "## An image bomb against the service\n\nA PNG that declares 12000 x 12000 pixels, posted to a "
          "service of a 28 x 28 model (in a fresh process; the rise of its peak memory over the level "
          "before the request, 0 when the refusal needed no more memory than scoring one image):\n\n" + t1 + f"\n\nAnswer: `{bomb['detail']}`\n\n"
          "## The monitor killed at random moments\n\n"
          f"`reconad monitor --checkpoint` followed a growing CSV file of {kills['rows']} rows; it was killed "
          f"with SIGKILL {kills['kills']} times after random moments while rows arrived, and the file was "
          f"rotated {kills['rotations']} times (moved away, a new one started with its header). After a last "
          "run, the alerts in the output file are compared, by time step, with one uninterrupted pass:\n\n"
          + t2 + "\n\nThe same in the test suite, with 6 kills and one rotation: "
          "`tests/test_reliability_series.py::test_monitor_checkpoint_resumes_after_kill_without_repeats`.\n")
    write_results("reliability_checks", md, {"machine": machine(), "image_bomb": bomb, "monitor_kills": kills})


if __name__ == "__main__":
    main()
