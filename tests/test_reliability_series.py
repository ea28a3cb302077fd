"""A hostile stream: a reading at float's maximum, a monitor killed and restarted, a file
truncated or rotated under it."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from reconad import SeriesDetector
from reconad.cli import app
from reconad.ops.monitor import Monitor, Tail, watch

runner = CliRunner()
SENSORS = ["a", "b", "c"]


def make_frame(n, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    values = np.c_[np.sin(t / 8), np.cos(t / 13), 0.5 * np.sin(t / 5)] + 0.05 * rng.standard_normal((n, 3))
    frame = pd.DataFrame(values, columns=SENSORS)
    frame.insert(0, "time", pd.date_range("2024-01-01", periods=n, freq="s").strftime("%Y-%m-%d %H:%M:%S"))
    return frame


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("series") / "m"
    SeriesDetector(window=8, width=8, epochs=2, batch_size=64, verbose=0, random_state=0).fit(
        make_frame(200)[SENSORS]).save(path)
    return path


def test_float_max_reading_scores_as_anomaly_and_later_rows_stay_finite(model, tmp_path):
    frame = make_frame(120, seed=1)
    frame.loc[50, "b"] = 3.4e38
    csv = tmp_path / "huge.csv"
    frame.to_csv(csv, index=False)
    res = runner.invoke(app, ["score", "--model", str(model), str(csv)])
    assert res.exit_code == 0, res.output
    out = pd.read_csv(pd.io.common.StringIO(res.stdout))
    assert np.isfinite(out["score"]).all()
    assert out.loc[50, "label"] == 1
    assert out.loc[100:, "score"].max() < 1e3            # rows after it are scored as before
    clean = make_frame(120, seed=1)
    clean.to_csv(tmp_path / "clean.csv", index=False)
    ref = pd.read_csv(pd.io.common.StringIO(runner.invoke(app, ["score", "--model", str(model),
                                                                str(tmp_path / "clean.csv")]).stdout))
    np.testing.assert_allclose(out.loc[70:, "score"], ref.loc[70:, "score"], rtol=1e-4)


def test_monitor_keeps_going_after_float_max_reading(model, tmp_path):
    frame = make_frame(120, seed=1)
    frame.loc[50, "b"] = 3.4e38
    csv = tmp_path / "stream.csv"
    frame.to_csv(csv, index=False)
    res = runner.invoke(app, ["monitor", "--model", str(model), "--input", str(csv), "--no-follow",
                              "--out", str(tmp_path / "alerts.jsonl")])
    assert res.exit_code == 0, res.output
    alerts = [json.loads(x) for x in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert any(a["row"] == 50 for a in alerts)
    assert all(np.isfinite(a["score"]) for a in alerts)


def test_monitor_checkpoint_resumes_after_kill_without_repeats(model, tmp_path):
    """Killed with SIGKILL at random moments while the file grows and rotates: every row is
    scored once (the same alerts as one uninterrupted run) and every alert is written once."""
    rng = np.random.default_rng(3)
    frame = make_frame(900, seed=2)
    frame.loc[rng.choice(np.arange(100, 900), 12, replace=False), "a"] += 8.0   # spikes: alerts
    lines = frame.to_csv(index=False).splitlines()
    header, rows = lines[0], lines[1:]
    ref = Monitor(__import__("reconad").load(model), series="x")
    expected = {(a["timestamp"]) for a in ref.push_lines([header, *rows])}
    assert len(expected) >= 5

    stream, alerts, ckpt = tmp_path / "s.csv", tmp_path / "alerts.jsonl", tmp_path / "ckpt.json"
    stream.write_text(header + "\n" + "\n".join(rows[:300]) + "\n")
    cmd = [sys.executable, "-m", "reconad.cli", "monitor", "--model", str(model), "--input", str(stream),
           "--out", str(alerts), "--checkpoint", str(ckpt), "--idle-timeout", "1.5", "--log", str(tmp_path / "log")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    written = 300
    rotated = False
    for k in range(6):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 60                 # killed while it runs, not while it starts
        while time.monotonic() < deadline and (not (tmp_path / "log").exists()
                                               or (tmp_path / "log").read_text().count(" monitoring ") <= k):
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.0))
        if written < len(rows):
            more = rows[written:written + 150]
            if not rotated and written >= 450:          # rotate: move away, start a new file with a header
                os.rename(stream, tmp_path / "s.csv.1")
                stream.write_text(header + "\n" + "\n".join(more) + "\n")
                rotated = True
                written += len(more)
                continue
            with open(stream, "a") as fh:
                fh.write("\n".join(more) + "\n")
            written += len(more)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    got = [json.loads(x) for x in alerts.read_text().splitlines()]
    ids = [a["alert_id"] for a in got]
    assert len(ids) == len(set(ids))                         # each alert once
    assert {a["timestamp"] for a in got} == expected         # each row scored once, none lost
    state = json.loads(ckpt.read_text())
    assert state["monitor"]["counters"]["n_rows"] == len(rows)


def test_tail_notices_truncation_and_rotation(tmp_path):
    path = tmp_path / "f.csv"
    path.write_text("h\n1\n2\n")
    tail = Tail(str(path), poll=0.01)
    it = tail.lines(follow=True, idle_timeout=0.3)
    assert next(it) == (["h", "1", "2"], False)
    path.write_text("h\n")                       # truncated in place
    assert next(it) == (["h"], True)
    os.rename(path, tmp_path / "f.csv.1")
    path.write_text("h\n7\n")                    # rotated
    assert next(it) == (["h", "7"], True)
    assert tail.offset == 4


def test_alert_ids_are_stable(model):
    det = __import__("reconad").load(model)
    frame = make_frame(120, seed=1)
    frame.loc[60, "a"] += 9
    lines = frame.to_csv(index=False).splitlines()
    a1 = Monitor(det, series="line-1").push_lines(lines)
    a2 = Monitor(det, series="line-1").push_lines(lines)
    a3 = Monitor(det, series="line-2").push_lines(lines)
    assert a1 and [a["alert_id"] for a in a1] == [a["alert_id"] for a in a2]
    assert not {a["alert_id"] for a in a1} & {a["alert_id"] for a in a3}


def test_monitor_refuses_bad_encoding_and_a_configuration_as_output(model, tmp_path):
    csv = tmp_path / "s.csv"
    make_frame(50).to_csv(csv, index=False)
    res = runner.invoke(app, ["monitor", "--model", str(model), "--input", str(csv), "--no-follow",
                              "--encoding", "bogus"])
    assert res.exit_code != 0 and "unknown text encoding" in str(res.exception)
    cfg = tmp_path / "alerts.json"
    cfg.write_text(json.dumps({"channels": [{"type": "log", "path": "x.log"}]}, indent=2))
    res = runner.invoke(app, ["monitor", "--model", str(model), "--input", str(csv), "--no-follow",
                              "--alerts", str(cfg)])
    assert res.exit_code != 0 and "not a JSON-lines file of alerts" in str(res.exception)
    assert json.loads(cfg.read_text())["channels"]                 # untouched


def test_threshold_rule_help_example_is_accepted(model, tmp_path):
    csv = tmp_path / "s.csv"
    make_frame(400).to_csv(csv, index=False)
    res = runner.invoke(app, ["monitor", "--help"])
    assert '"risk": 1e-3' in res.output.replace("\n", " ").replace("  ", " ") or "risk" in res.output
    res = runner.invoke(app, ["monitor", "--model", str(model), "--input", str(csv), "--no-follow",
                              "--threshold-rule", '{"method": "pot", "risk": 1e-3}'])
    assert res.exit_code == 0, res.output
