"""Load test of the scoring service on loopback: 50 concurrent clients, a fixed number of
requests, each one 28x28 MNIST image uploaded as a PNG file (multipart/form-data).

Trains a conv_ae on 2,000 MNIST 1s (3 epochs), starts ``reconad serve`` in its own
process, then runs: a warm-up; 1 client sending single images one after another (the
latency of one image when the service is idle); 50 concurrent clients. Reports
throughput, p50/p99/max latency and the number of failed requests.

    python benchmarks/serve_load.py [--requests 2000] [--clients 50]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from _common import ROOT, data_dir, machine, markdown_table, write_results

from reconad import ImageDetector


def _png(im: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(im).save(buf, format="PNG")
    return buf.getvalue()


async def _run(url: str, pngs: list[bytes], n_requests: int, clients: int) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    counter = iter(range(n_requests))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        async def worker():
            for i in counter:
                files = {"file": (f"{i}.png", pngs[i % len(pngs)], "image/png")}
                t0 = time.perf_counter()
                try:
                    r = await client.post("/score", files=files)
                    ok = r.status_code == 200 and len(r.json()["scores"]) == 1
                    if not ok:
                        errors.append(f"{r.status_code}: {r.text[:100]}")
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))
                latencies.append(time.perf_counter() - t0)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        wall = time.perf_counter() - start
    lat = np.array(latencies) * 1000
    return {"clients": clients, "requests": n_requests, "errors": len(errors), "first_errors": errors[:3],
            "seconds": wall, "requests_per_second": n_requests / wall,
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
            "max_ms": float(lat.max())}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=50)
    args = parser.parse_args()

    mnist = np.load(data_dir() / "mnist" / "mnist.npz")
    x_train, y_train, x_test = mnist["x_train"], mnist["y_train"], mnist["x_test"]
    det = ImageDetector(model="conv_ae", epochs=3, device="cpu", verbose=0).fit(x_train[y_train == 1][:2000])
    pngs = [_png(im) for im in x_test[:500]]
    with tempfile.TemporaryDirectory() as tmp:
        det.save(Path(tmp) / "model")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen([sys.executable, "-m", "reconad.cli", "serve", "--model", str(Path(tmp) / "model"),
                                 "--port", str(port)], cwd=ROOT, stdout=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):
                try:
                    if httpx.get(url + "/health").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            else:
                sys.exit("the service did not start")
            asyncio.run(_run(url, pngs, 200, 10))  # warm-up
            runs = [asyncio.run(_run(url, pngs, 300, 1)),
                    asyncio.run(_run(url, pngs, args.requests, args.clients))]
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    with open("/proc/loadavg") as fh:
        load = fh.read().split()[0]
    rows = [[r["clients"], r["requests"], r["errors"], f"{r['requests_per_second']:.0f}",
             f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}", f"{r['max_ms']:.1f}"] for r in runs]
    table = markdown_table(["clients", "requests", "errors", "requests / s", "p50 ms", "p99 ms", "max ms"], rows)
    print("\n" + table)
    md = ("# Scoring service under load (loopback)\n\n"
          "`reconad serve` with a conv_ae (28×28, trained on 2,000 MNIST 1s, 3 epochs); every request "
          "uploads one MNIST test image as a PNG file (multipart/form-data) to `POST /score` and gets its "
          "score, label and the threshold back. The clients (httpx, asyncio) run in one process on the same "
          "machine as the service, so they share its CPU. One client: requests one after another; "
          f"{args.clients} clients: each sends its next request as soon as the last one is answered, so "
          f"the service always has {args.clients} requests waiting and a request's latency is about "
          f"{args.clients} / throughput (Little's law); the latency of a single image is the 1-client row. "
          "Scoring runs one request at a time, on the event loop, on one torch thread "
          "(`reconad serve --threads 1`). The long tail under 50 clients (p99, max) is requests that "
          "waited behind others; where it arises (client pool, accept queue, event loop) is not yet "
          "measured.\n\n"
          f"Command: `python benchmarks/serve_load.py --requests {args.requests} --clients {args.clients}`  \n"
          f"Machine: {machine()}; load average {load} at the end of the run (the CPU is shared).\n\n"
          + table + "\n")
    write_results("serve_load", md, {"machine": machine(), "load_average": float(load), "runs": runs})
    if any(r["errors"] for r in runs):
        sys.exit("some requests failed: " + "; ".join(e for r in runs for e in r["first_errors"]))


if __name__ == "__main__":
    main()
