"""Alert channels against a local HTTP receiver and a local SMTP server, on loopback only."""

import json
import socket
import threading
import time
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from reconad.ops.alerts import AlertDispatcher, load_config, parse_config, summary

aiosmtpd_controller = pytest.importorskip("aiosmtpd.controller", reason="aiosmtpd is in the 'test' extra")


class FakeClock:
    def __init__(self, t=1_000_000.0):
        self.t = t

    def __call__(self):
        return self.t

    def advance(self, s):
        self.t += s


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    """A webhook receiver on 127.0.0.1 that can be stopped and started again on the same port."""

    def __init__(self, port=None):
        self.port = port or free_port()
        self.bodies = []
        self.server = None

    def start(self):
        bodies = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers["Content-Length"])
                bodies.append(json.loads(self.rfile.read(n)))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.server = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/hook"

    def alert_ids(self):
        return [a["alert_id"] for b in self.bodies for a in b["alerts"]]


class Mailbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    if r.server is not None:
        r.stop()


def config(tmp_path, channels, **kw):
    base = {"outbox": str(tmp_path / "outbox"), "group_seconds": 10, "min_interval_seconds": 60,
            "retry_initial_seconds": 1, "retry_max_seconds": 8, "channels": channels}
    return {**base, **kw}


def alert(i, **kw):
    return {"timestamp": f"2024-05-01T10:00:{i:02d}", "score": 1.0 + i, "threshold": 1.5,
            "top_sensors": ["Pressure", "Current"], "model_version": "v1", **kw}


def test_burst_is_grouped_and_rate_limited(tmp_path, receiver):
    clock = FakeClock()
    d = AlertDispatcher(config(tmp_path, [{"type": "webhook", "url": receiver.url}]), background=False, clock=clock)
    for i in range(5):
        d.submit(alert(i))
        clock.advance(1)
        d.poll()
    assert receiver.bodies == []                     # the burst is still gathering
    clock.advance(6)
    assert d.poll() == 5
    assert len(receiver.bodies) == 1 and receiver.bodies[0]["count"] == 5
    body = receiver.bodies[0]
    assert body["source"] == "reconad" and "5 anomaly alerts" in body["text"] and "Pressure" in body["text"]
    # the fault goes on: more alerts, but no new message before min_interval_seconds
    for i in range(5, 20):
        d.submit(alert(i))
        clock.advance(2)
        d.poll()
    assert len(receiver.bodies) == 1
    clock.advance(40)
    d.poll()
    assert len(receiver.bodies) == 2 and receiver.bodies[1]["count"] == 15
    assert d.pending() == {"webhook": 0}


def test_no_alert_lost_when_receiver_down_for_a_minute(tmp_path, receiver):
    clock = FakeClock()
    lines = []
    cfg = config(tmp_path, [{"type": "webhook", "url": receiver.url, "format": "generic", "timeout_seconds": 1},
                            {"type": "log", "path": str(tmp_path / "alerts.jsonl")}], min_interval_seconds=0)
    d = AlertDispatcher(cfg, background=False, clock=clock, log=lines.append)
    submitted = [d.submit(alert(0))["alert_id"]]
    clock.advance(11)
    d.poll()
    assert receiver.alert_ids() == submitted
    receiver.stop()                                  # the receiver goes down for a minute
    for step in range(60):
        if step % 5 == 0:
            submitted.append(d.submit(alert(step % 60))["alert_id"])
        clock.advance(1)
        d.poll()
    assert d.pending()["webhook"] == 12              # all kept on disk
    assert d.pending()["log"] == 0                   # the local log is not held up by the webhook
    assert any("retry" in line for line in lines)
    delays = [float(line.split(" in ")[-1].split()[0]) for line in lines if "retry" in line]
    assert delays[:4] == [1, 2, 4, 8] and max(delays) == 8    # exponential back-off, capped
    receiver.start()                                 # ... and comes back
    for _ in range(10):
        clock.advance(1)
        d.poll()
    assert d.pending() == {"webhook": 0, "log": 0}
    assert sorted(receiver.alert_ids()) == sorted(submitted)   # every alert arrived once
    assert len(receiver.bodies) == 2                           # the backlog went out in one message
    logged = [json.loads(x)["alert_id"] for x in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert logged == submitted
    assert any("receiver back" in line for line in lines)


def test_outbox_survives_a_restart(tmp_path):
    port = free_port()
    cfg = config(tmp_path, [{"type": "webhook", "url": f"http://127.0.0.1:{port}/hook", "timeout_seconds": 0.5}],
                 group_seconds=0, min_interval_seconds=0)
    d = AlertDispatcher(cfg, background=False)
    ids = [d.submit(alert(i))["alert_id"] for i in range(3)]
    assert d.close(timeout=0) is False               # nobody listening: the alerts stay on disk
    r = Receiver(port).start()
    try:
        d2 = AlertDispatcher(cfg, background=False)  # a new process, the same outbox
        assert d2.pending() == {"webhook": 3}
        assert d2.flush(timeout=2)
        assert sorted(r.alert_ids()) == sorted(ids)
    finally:
        r.stop()


def test_background_delivery_with_outage(tmp_path):
    """Real time: the worker thread retries with back-off while the receiver is away."""
    r = Receiver().start()
    cfg = config(tmp_path, [{"type": "webhook", "url": r.url, "timeout_seconds": 0.5}],
                 group_seconds=0.05, min_interval_seconds=0, retry_initial_seconds=0.05, retry_max_seconds=0.2,
                 poll_seconds=0.02)
    d = AlertDispatcher(cfg)
    try:
        ids = [d.submit(alert(1))["alert_id"]]
        deadline = time.time() + 5
        while (not r.bodies or d.pending()["webhook"]) and time.time() < deadline:
            time.sleep(0.02)                         # delivered and acknowledged, not only received
        assert r.alert_ids() == ids and d.pending()["webhook"] == 0
        r.stop()
        for i in range(2, 6):
            ids.append(d.submit(alert(i))["alert_id"])
        deadline = time.time() + 10
        while d.status()[0]["failures"] < 2 and time.time() < deadline:
            time.sleep(0.02)
        assert d.pending()["webhook"] == 4 and d.status()[0]["failures"] >= 2
        r.start()
        assert d.flush(timeout=5)
        assert sorted(r.alert_ids()) == sorted(ids)
    finally:
        d.close(timeout=0)
        if r.server is not None:
            r.stop()


def test_email_over_local_smtp_with_outage(tmp_path):
    port = free_port()
    box = Mailbox()
    cfg = config(tmp_path, [{"type": "email", "host": "127.0.0.1", "port": port, "sender": "reconad@line.local",
                             "to": ["maintenance@line.local"], "timeout_seconds": 1}])
    clock = FakeClock()
    d = AlertDispatcher(cfg, background=False, clock=clock)
    ids = [d.submit(alert(i))["alert_id"] for i in range(3)]
    clock.advance(11)
    d.poll()                                         # no SMTP server yet: kept, retried later
    assert d.pending() == {"email": 3}
    server = aiosmtpd_controller.Controller(box, hostname="127.0.0.1", port=port)
    server.start()
    try:
        clock.advance(2)
        d.poll()
        assert d.pending() == {"email": 0}
        assert len(box.messages) == 1
        msg = box.messages[0]
        assert "3 anomaly alerts" in msg["Subject"] and msg["To"] == "maintenance@line.local"
        body = msg.get_payload(decode=True).decode()
        assert all(i in body for i in ids)
        server.stop()                                # down again midway
        d.submit(alert(9, kind="drift", features=["Temperature"]))
        clock.advance(100)
        d.poll()
        assert d.pending() == {"email": 1}
        server = aiosmtpd_controller.Controller(box, hostname="127.0.0.1", port=port)
        server.start()
        clock.advance(10)
        d.poll()
        assert d.pending() == {"email": 0} and len(box.messages) == 2
        assert "drift warning" in box.messages[1]["Subject"]
    finally:
        server.stop()


def test_config_file_and_errors(tmp_path):
    f = tmp_path / "alerts.json"
    url = f"http://127.0.0.1:{free_port()}/h"                 # nobody listens there
    f.write_text(json.dumps({"outbox": "ob", "channels": [{"type": "log", "path": "a.jsonl"},
                                                          {"type": "webhook", "url": url, "format": "slack"}]}))
    cfg = load_config(f)
    assert cfg["outbox"] == tmp_path / "ob"
    assert [c["name"] for c in cfg["channels"]] == ["log", "webhook"]
    assert cfg["channels"][0]["group_seconds"] == 0 and cfg["channels"][1]["group_seconds"] == 30
    d = AlertDispatcher(f, background=False)
    d.submit({"score": 2.0})
    assert d.flush() is False and d.pending() == {"log": 0, "webhook": 1}
    assert (tmp_path / "a.jsonl").read_text().count("\n") == 1
    with pytest.raises(ValueError, match="unknown channel type 'pager'"):
        parse_config({"channels": [{"type": "pager"}]})
    with pytest.raises(ValueError, match="http"):
        parse_config({"channels": [{"type": "webhook", "url": "ftp://x"}]})
    with pytest.raises(ValueError, match="'to'"):
        parse_config({"channels": [{"type": "email", "host": "h", "sender": "s", "to": []}]})
    with pytest.raises(ValueError, match="unknown alert configuration keys: chanels"):
        parse_config({"chanels": []})
    with pytest.raises(ValueError, match="group_seconds"):
        parse_config({"group_seconds": -1, "channels": [{"type": "log"}]})
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.json")
    with pytest.raises(TypeError):
        d.submit("not a dict")
    with pytest.raises(ValueError, match="JSON"):
        d.submit({"score": float("nan")})


def test_slack_format(tmp_path, receiver):
    d = AlertDispatcher(config(tmp_path, [{"type": "webhook", "url": receiver.url, "format": "slack"}]),
                        background=False, defaults={"model_version": "v0007"})
    a = alert(1)
    del a["model_version"]
    assert d.submit(a)["model_version"] == "v0007"
    assert d.flush()
    assert list(receiver.bodies[0]) == ["text"] and "1 anomaly alert at" in receiver.bodies[0]["text"]
    assert "(model v0007)" in receiver.bodies[0]["text"]


def test_summary_text():
    text = summary([alert(1), alert(3)])
    assert text.startswith("reconad: 2 anomaly alerts from 2024-05-01T10:00:01 to 2024-05-01T10:00:03 (model v1)")
    assert "highest score 4 (threshold 1.5)" in text


def test_cli_alerts_test_status_flush(tmp_path, receiver):
    from typer.testing import CliRunner

    from reconad.cli import app

    cfg = tmp_path / "alerts.json"
    cfg.write_text(json.dumps({"outbox": "outbox", "retry_initial_seconds": 0.05,
                               "channels": [{"type": "webhook", "url": receiver.url, "timeout_seconds": 1}]}))
    runner = CliRunner()
    r = runner.invoke(app, ["alerts", "test", "--config", str(cfg), "--message", "hello line 3"])
    assert r.exit_code == 0, r.output
    assert "webhook: delivered" in r.output and receiver.bodies[0]["alerts"][0]["message"] == "hello line 3"
    receiver.stop()
    r = runner.invoke(app, ["alerts", "test", "--config", str(cfg), "--timeout", "0.2"])
    assert r.exit_code == 1 and "1 waiting" in r.output
    assert "webhook: 1 waiting" in runner.invoke(app, ["alerts", "status", "--config", str(cfg)]).output
    receiver.start()
    r = runner.invoke(app, ["alerts", "flush", "--config", str(cfg), "--timeout", "5"])
    assert r.exit_code == 0 and "outbox empty" in r.output and len(receiver.bodies) == 2
