"""Alert delivery against a receiver that does not speak HTTP, and a receiver that stays down."""

import json
import logging
import socket
import threading

import pytest

from reconad.ops.alerts import AlertDispatcher, load_config


def not_http_server():
    """A TCP server that answers every connection with a line that is not HTTP."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(32)

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            try:
                conn.recv(65536)
                conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
            finally:
                conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return srv


def test_non_http_answer_neither_raises_nor_starves_the_log_channel(tmp_path, caplog):
    srv = not_http_server()
    url = f"http://127.0.0.1:{srv.getsockname()[1]}/hook"
    cfg = {"outbox": str(tmp_path / "ob"), "retry_initial_seconds": 0.01, "retry_max_seconds": 0.05,
           "channels": [{"type": "webhook", "url": url, "group_seconds": 0, "min_interval_seconds": 0},
                        {"type": "log", "path": str(tmp_path / "a.jsonl")}]}
    d = AlertDispatcher(cfg, background=False)
    with caplog.at_level(logging.WARNING, logger="reconad.ops.alerts"):
        for i in range(17):
            d.submit({"score": float(i), "threshold": 1.0})
            d.poll()
        assert not d.flush(timeout=0.2)
    srv.close()
    assert len((tmp_path / "a.jsonl").read_text().splitlines()) == 17      # all delivered to the log
    st = {s["channel"]: s for s in d.status()}
    assert st["webhook"]["pending"] == 17 and "did not answer in HTTP" in st["webhook"]["last_error"]
    assert st["log"]["pending"] == 0
    assert any("delivery" in r.getMessage() and "failed" in r.getMessage() for r in caplog.records)


def test_outbox_is_bounded_with_a_policy(tmp_path, caplog):
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()                                                       # nothing listens there
    for policy, kept in (("drop_oldest", range(150, 200)), ("drop_new", range(0, 50))):
        cfg = {"outbox": str(tmp_path / policy), "outbox_limit": 50, "outbox_full": policy,
               "channels": [{"type": "webhook", "url": f"http://127.0.0.1:{port}/"}]}
        d = AlertDispatcher(cfg, background=False)
        with caplog.at_level(logging.WARNING, logger="reconad.ops.alerts"):
            for i in range(200):
                d.submit({"score": float(i), "n": i})
        files = sorted((tmp_path / policy / "webhook").glob("*.json"))
        assert len(files) == 50
        assert sorted(json.loads(f.read_text())["n"] for f in files) == list(kept)
        assert d.status()[0]["dropped"] == 150
        assert any("outbox full" in r.getMessage() for r in caplog.records)


def test_damaged_or_deeply_nested_configuration_gives_a_message(tmp_path):
    broken, deep = tmp_path / "broken.json", tmp_path / "deep.json"
    broken.write_text('{"channels": [', encoding="utf-8")
    deep.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    with pytest.raises(ValueError, match="not valid JSON .*alert configuration is damaged"):
        load_config(broken)
    with pytest.raises(ValueError, match="nested too deeply .*alert configuration is damaged"):
        load_config(deep)
