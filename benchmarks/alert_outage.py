"""Alerts through a one-minute receiver outage, in real time, on loopback.

A local webhook receiver takes alerts; one alert is submitted per second for 100 s; the
receiver is down from second 20 to second 80. The dispatcher runs as in production (a
background thread, grouping 2 s, at most one message per 5 s, back-off 1 s doubling up
to 16 s). Counted: alerts submitted, alerts received (distinct), messages, the longest
wait of an alert.

    python benchmarks/alert_outage.py
"""

from __future__ import annotations

import json
import socket
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from _common import machine, markdown_table, write_results

from reconad.ops.alerts import AlertDispatcher

SECONDS, DOWN_AT, UP_AT = 100, 20, 80


class Receiver:
    def __init__(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.received: list[tuple[float, dict]] = []
        self.messages = 0
        self.server = None

    def start(self):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.messages += 1
                outer.received += [(time.time(), a) for a in body["alerts"]]
                self.send_response(200)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def main() -> None:
    r = Receiver()
    r.start()
    log: list[str] = []
    cfg = {"outbox": tempfile.mkdtemp() + "/outbox", "group_seconds": 2, "min_interval_seconds": 5,
           "retry_initial_seconds": 1, "retry_max_seconds": 16, "poll_seconds": 0.2,
           "channels": [{"type": "webhook", "url": f"http://127.0.0.1:{r.port}/hook", "timeout_seconds": 2}]}
    d = AlertDispatcher(cfg, log=lambda line: log.append(f"{time.strftime('%H:%M:%S')} {line}"))
    sent: dict[str, float] = {}
    for i in range(SECONDS):
        if i == DOWN_AT:
            r.stop()
        if i == UP_AT:
            r.start()
        a = d.submit({"timestamp": f"second {i}", "score": float(i), "threshold": 1.0})
        sent[a["alert_id"]] = time.time()
        time.sleep(1)
    empty = d.close(timeout=30)
    ids = [a["alert_id"] for _, a in r.received]
    waits = [t - sent[a["alert_id"]] for t, a in r.received]
    retries = sum("delivery of" in line for line in log)
    result = {"machine": machine(), "submitted": len(sent), "received": len(ids), "distinct": len(set(ids)),
              "lost": len(set(sent) - set(ids)), "messages": r.messages, "failed_tries": retries,
              "outage_seconds": UP_AT - DOWN_AT, "longest_wait_seconds": max(waits), "outbox_empty": empty,
              "log": log}
    r.stop()
    table = markdown_table(["submitted", "received (distinct)", "lost", "messages", "failed tries",
                            "longest wait of an alert", "outbox empty at the end"],
                           [[len(sent), f"{len(ids)} ({len(set(ids))})", result["lost"], r.messages, retries,
                             f"{max(waits):.0f} s", empty]])
    print(table)
    md = ("# Alerts through a receiver outage\n\n"
          f"One alert per second for {SECONDS} s to a local webhook receiver that is down from second "
          f"{DOWN_AT} to second {UP_AT} ({UP_AT - DOWN_AT} s). The dispatcher groups for 2 s, sends at most one "
          "message per 5 s, and retries with back-off 1, 2, 4, 8, 16, 16, ... s.\n\n"
          f"Command: `python benchmarks/alert_outage.py`  \nMachine: {result['machine']}.\n\n" + table +
          "\n\nThe test suite checks the same with a simulated clock in a fraction of a second "
          "(`tests/test_alerts.py::test_no_alert_lost_when_receiver_down_for_a_minute`).\n\n"
          "Dispatcher log:\n\n```text\n" + "\n".join(log) + "\n```\n")
    write_results("alert_outage", md, result)


if __name__ == "__main__":
    main()
