import json

import numpy as np
import pandas as pd
import pytest

from reconad import SeriesDetector, load
from reconad.evaluation import metrics
from reconad.scoring import windows
from reconad.data.csv import read_csv
from reconad.ops.monitor import Monitor

SENSORS = ["圧力", "温度", "電流"]  # pressure, temperature, current


def make_frame(n=400, seed=0, start="2024-01-01"):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    values = np.c_[np.sin(t / 8), np.cos(t / 13), 0.5 * np.sin(t / 5)] + 0.05 * rng.standard_normal((n, 3))
    frame = pd.DataFrame(values, columns=SENSORS)
    frame.insert(0, "日時", pd.date_range(start, periods=n, freq="s"))
    return frame


@pytest.fixture(scope="module")
def frame():
    return make_frame()


@pytest.fixture(scope="module")
def det(frame):
    # every sensor of this frame is smooth; its level faults are faults, not operating points
    return SeriesDetector(window=16, width=8, epochs=3, batch_size=64, verbose=0, slow_sensors=None,
                          random_state=0).fit(frame.iloc[:300])


# --- windows ------------------------------------------------------------------------------

@pytest.mark.parametrize("length, window, stride", [(50, 7, 1), (53, 7, 3), (20, 5, 2), (12, 12, 1)])
@pytest.mark.parametrize("how", windows.COMBINE)
def test_window_scores_line_up_with_time_steps(length, window, stride, how):
    n = windows.n_windows(length, window, stride)
    v = np.random.default_rng(1).random(n)
    out = windows.to_steps(v, length, window, stride, how)
    assert out.shape == (length,)
    for t in range(length):
        cover = [j for j in range(n) if j * stride <= t <= j * stride + window - 1]
        ended = [j for j in range(n) if j * stride + window - 1 <= t]
        if how == "last":
            expected = v[ended[-1]] if ended else 0.0
        elif not cover:
            expected = v[-1]
        else:
            expected = v[cover].mean() if how == "mean" else v[cover].max()
        assert out[t] == pytest.approx(expected)


def test_make_windows_shape_and_content():
    x = np.arange(30, dtype=float).reshape(10, 3)
    w = windows.make_windows(x, 4, 2)
    assert w.shape == (4, 4, 3)
    np.testing.assert_array_equal(w[1], x[2:6])


def test_decision_function_one_score_per_step(det, frame):
    for how in windows.COMBINE:
        assert det.decision_function(frame, combine=how).shape == (len(frame),)
    contrib = det.sensor_scores(frame)
    assert list(contrib.columns) == SENSORS and len(contrib) == len(frame)
    # the default sensor_reduce="max": a step's score is its largest sensor contribution
    np.testing.assert_allclose(contrib.max(axis=1).to_numpy(), det.decision_function(frame), rtol=1e-5)


def test_sensor_reduce_max_takes_the_worst_sensor(frame, tmp_path):
    d = SeriesDetector(window=16, width=8, epochs=2, batch_size=64, sensor_reduce="max", verbose=0,
                       random_state=0).fit(frame.iloc[:300])
    per = d.window_scores(frame, per_sensor=True)
    np.testing.assert_allclose(d.window_scores(frame), per.max(1), rtol=1e-6)
    np.testing.assert_allclose(d.decision_function(frame, combine="last")[15:], per.max(1), rtol=1e-6)
    d.save(tmp_path / "m")
    again = load(tmp_path / "m")
    assert again.sensor_reduce == "max" and again.threshold_ == d.threshold_
    np.testing.assert_allclose(again.decision_function(frame), d.decision_function(frame), rtol=1e-6)
    mon = Monitor(d)
    mon.push(frame[SENSORS].to_numpy())
    np.testing.assert_allclose(mon.last_scores[15:], per.max(1), rtol=1e-5)
    with pytest.raises(ValueError, match="sensor_reduce"):
        SeriesDetector(sensor_reduce="mean", verbose=0).fit(frame.iloc[:300])


def test_causal_score_uses_no_future_rows(det, frame):
    base = det.decision_function(frame, combine="last")
    changed = frame.copy()
    changed.iloc[250:, 1:] += 5.0  # change the future from row 250 on
    after = det.decision_function(changed, combine="last")
    np.testing.assert_allclose(after[:250], base[:250], rtol=1e-6)
    assert np.all(after[250 + det.window:] > base[250 + det.window:])
    mean_after = det.decision_function(changed, combine="mean")
    assert not np.allclose(mean_after[240:250], det.decision_function(frame, combine="mean")[240:250])


def test_scaling_fitted_on_training_rows_only(frame):
    train = frame.iloc[:300]
    d = SeriesDetector(window=16, width=8, epochs=1, verbose=0).fit(train)
    np.testing.assert_allclose(d.center_, train[SENSORS].mean().to_numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(d.scale_, train[SENSORS].std(ddof=0).to_numpy(), rtol=1e-5)
    shifted = frame.copy()
    shifted[SENSORS] += 100.0
    d.decision_function(shifted)
    np.testing.assert_allclose(d.center_, train[SENSORS].mean().to_numpy(), rtol=1e-5, atol=1e-6)
    m = SeriesDetector(window=16, width=8, epochs=1, scaler="minmax", verbose=0).fit(train)
    np.testing.assert_allclose(m.center_, train[SENSORS].min().to_numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model", ["lstm_ae", "lstm_vae", "dense_ae", "conv_ae"])
def test_every_series_model_fits_and_scores(model, frame):
    d = SeriesDetector(model=model, window=8, width=8, latent_dim=4, epochs=1, verbose=0).fit(frame.iloc[:120])
    s = d.decision_function(frame.iloc[120:180])
    assert s.shape == (60,) and np.isfinite(s).all()


def test_fit_on_segments_and_arrays(frame):
    segs = [frame.iloc[:150], frame.iloc[200:350]]
    d = SeriesDetector(window=16, width=8, epochs=1, verbose=0).fit(segs)
    assert d.columns_ == SENSORS
    a = SeriesDetector(window=16, width=8, epochs=1, verbose=0).fit(frame[SENSORS].to_numpy()[:200])
    assert a.decision_function(frame[SENSORS].to_numpy()).shape == (len(frame),)


def test_save_load_same_scores(det, frame, tmp_path):
    det.save(tmp_path / "m")
    again = load(tmp_path / "m")
    np.testing.assert_allclose(again.decision_function(frame), det.decision_function(frame), rtol=1e-6)
    assert again.threshold_ == det.threshold_ and again.columns_ == det.columns_


def test_missing_values_interpolated_and_counted(frame):
    gappy = frame.iloc[:300].copy()
    gappy.iloc[10:13, 1] = np.nan
    gappy.iloc[50, 2] = np.nan
    d = SeriesDetector(window=16, width=8, epochs=1, fill_limit=5, verbose=0).fit(gappy)
    assert d.n_filled_ == 4
    long_gap = frame.iloc[:300].copy()
    long_gap.iloc[10:30, 1] = np.nan
    with pytest.raises(ValueError, match="fill_limit"):
        SeriesDetector(window=16, epochs=1, verbose=0).fit(long_gap)


# --- bad input ----------------------------------------------------------------------------

def test_bad_series_input(det, frame):
    text = frame.copy()
    text["状態"] = "ok"
    with pytest.raises(TypeError, match="non-numeric column"):
        SeriesDetector(window=16, epochs=1, verbose=0).fit(text)
    with pytest.raises(ValueError, match="too few rows"):
        SeriesDetector(window=16, epochs=1, verbose=0).fit(frame.iloc[:10])
    with pytest.raises(ValueError, match="too few rows"):
        det.decision_function(frame.iloc[:5])
    with pytest.raises(ValueError, match="missing column"):
        det.decision_function(frame.drop(columns=["温度"]))
    extra = frame.copy()
    extra["振動"] = 1.0
    with pytest.raises(ValueError, match="columns differ from training"):
        det.decision_function(extra)
    with pytest.raises(ValueError, match="3 sensor columns|trained on 3"):
        det.decision_function(np.zeros((50, 2)))
    with pytest.raises(ValueError, match="unknown model"):
        SeriesDetector(model="nope").fit(frame)
    with pytest.raises(ValueError, match="combine"):
        SeriesDetector(combine="median").fit(frame)


# --- CSV ----------------------------------------------------------------------------------

def test_shift_jis_semicolon_file(tmp_path, frame):
    path = tmp_path / "plant.csv"
    frame.iloc[:50].to_csv(path, sep=";", index=False, encoding="shift_jis")
    got = read_csv(path)  # encoding and delimiter detected
    assert list(got.columns) == SENSORS
    assert isinstance(got.index, pd.DatetimeIndex) and got.index.name == "日時"
    assert got.attrs["encoding"] == "cp932" and got.attrs["delimiter"] == ";"
    np.testing.assert_allclose(got.to_numpy(), frame.iloc[:50][SENSORS].to_numpy())
    assert list(read_csv(path, encoding="shift_jis").columns) == SENSORS
    with pytest.raises(ValueError, match="not valid utf-8"):
        read_csv(path, encoding="utf-8")


@pytest.mark.parametrize("sep", [",", "\t", ";"])
def test_delimiters_detected(tmp_path, frame, sep):
    path = tmp_path / "x.csv"
    frame.iloc[:20].to_csv(path, sep=sep, index=False, encoding="utf-8")
    got = read_csv(path)
    assert got.attrs["delimiter"] == sep and list(got.columns) == SENSORS


# --- monitor ------------------------------------------------------------------------------

def test_monitor_matches_causal_scores_in_any_chunking(det, frame):
    full = det.decision_function(frame, combine="last")
    mon = Monitor(det)
    got = []
    values = frame[SENSORS].to_numpy()
    for chunk in np.split(values, [1, 2, 40, 41, 200, 333]):
        mon.push(chunk)
        got.append(mon.last_scores)
    got = np.concatenate(got)
    assert len(got) == len(frame) and mon.n_rows == len(frame)
    np.testing.assert_allclose(got[det.window - 1:], full[det.window - 1:], rtol=1e-5)
    assert np.isnan(got[:det.window - 1]).all()


def test_monitor_adaptive_threshold_is_causal_and_bounded(det, frame):
    values = frame[SENSORS].to_numpy()
    fixed = Monitor(det)
    fixed.push(values)
    rule = {"method": "rolling_quantile", "q": 0.9, "window": 100, "min_samples": 20}
    start = float(np.percentile(det.decision_scores_, 95))  # a threshold that normal scores reach
    mon = Monitor(det, threshold=start, threshold_rule=rule)
    thresholds = []
    for chunk in np.array_split(values, 20):
        mon.push(chunk)
        thresholds.append(mon.threshold)
    np.testing.assert_allclose(mon.last_scores, fixed.last_scores[-len(mon.last_scores):])  # scores unchanged
    assert len(set(thresholds)) > 1  # the rule moved the threshold
    bounds = (mon.threshold_rule.lower, mon.threshold_rule.upper)
    assert all(bounds[0] <= t <= bounds[1] for t in thresholds)
    # a fault far above the threshold does not raise it
    before = mon.threshold
    mon.push(values[-50:] + 50.0)
    assert mon.threshold <= before * 1.01


def test_monitor_survives_malformed_rows_and_loses_none(det, frame):
    lines = frame.to_csv(sep=";", index=False).splitlines()
    header, rows = lines[0], lines[1:]
    bad = ["garbage", "2024-01-01 00:00:00;1.0;2.0", "2024-01-01 00:00:00;x;1;2", ";;;;;;", ""]
    stream = [header]
    for i, row in enumerate(rows):
        stream.append(row)
        if i % 50 == 7:
            stream.append(bad[(i // 50) % len(bad)])
    mon = Monitor(det, consecutive=2)
    alerts = []
    for start in range(0, len(stream), 37):
        alerts += mon.push_lines(stream[start:start + 37])
    assert mon.n_rows == len(rows)  # every good row was scored or kept as history
    assert mon.n_scored == len(rows) - det.window + 1
    assert mon.n_malformed == sum(1 for i in range(len(rows)) if i % 50 == 7 and bad[(i // 50) % len(bad)])
    # an anomaly raises an alert naming the sensor that moved
    spike = frame.iloc[:60].copy()
    spike[SENSORS[1]] += 8.0
    new = Monitor(det, consecutive=3)
    out = new.push(frame.iloc[:100][SENSORS]) + new.push(spike[SENSORS])
    assert out and out[0]["top_sensors"][0]["sensor"] == SENSORS[1]
    assert {"timestamp", "score", "threshold", "top_sensors"} <= set(out[0])


def test_cli_series_train_score_evaluate_monitor(tmp_path, frame):
    from typer.testing import CliRunner

    from reconad.cli import app

    runner = CliRunner()
    train_csv, test_csv = tmp_path / "train.csv", tmp_path / "test.csv"
    frame.iloc[:300].to_csv(train_csv, sep=";", index=False, encoding="cp932")
    test = frame.iloc[300:].copy()
    test["anomaly"] = 0
    test.iloc[40:70, 1] += 5.0
    test.iloc[40:70, -1] = 1
    test.to_csv(test_csv, index=False)
    res = runner.invoke(app, ["train", "--normal", str(train_csv), "--out", str(tmp_path / "m"), "--window", "16",
                              "--width", "8", "--epochs", "2", "--slow-sensors", "none", "--quiet"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["score", "--model", str(tmp_path / "m"), str(train_csv)])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[0] == "file,time,score,label,model_version" and len(res.output.splitlines()) == 301
    res = runner.invoke(app, ["evaluate", "--model", str(tmp_path / "m"), "--input", str(test_csv),
                              "--out", str(tmp_path / "ev")])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert {"roc_auc", "pr_auc", "vus_pr", "f1", "far", "mar", "f1_point_adjusted"} <= set(m)
    assert (tmp_path / "ev" / "series.png").stat().st_size > 0
    stream = tmp_path / "stream.csv"
    stream.write_text(test.drop(columns=["anomaly"]).to_csv(index=False) + "bad,row\n", encoding="utf-8")
    config = tmp_path / "channels.json"
    config.write_text(json.dumps({"outbox": str(tmp_path / "outbox"),
                                  "channels": [{"type": "log", "path": str(tmp_path / "channel.jsonl")}]}))
    res = runner.invoke(app, ["monitor", "--model", str(tmp_path / "m"), "--input", str(stream), "--no-follow",
                              "--alerts", str(tmp_path / "alerts.jsonl"), "--log", str(tmp_path / "mon.log"),
                              "--consecutive", "3", "--alert-config", str(config)])
    assert res.exit_code == 0, res.output
    alerts = [json.loads(x) for x in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert alerts and alerts[0]["top_sensors"][0]["sensor"] == SENSORS[0]
    version = alerts[0]["model_version"]
    assert isinstance(version, str) and len(version) == 12  # weights checksum outside a registry
    delivered = [json.loads(x) for x in (tmp_path / "channel.jsonl").read_text().splitlines()]
    assert [a["row"] for a in delivered] == [a["row"] for a in alerts]
    assert all(a["model_version"] == version for a in delivered)
    log = (tmp_path / "mon.log").read_text()
    assert "skipped" in log and '"malformed": 1' in log
    # retraining a series model keeps its sensor columns, even when the new file has more
    res = runner.invoke(app, ["retrain", "--model", str(tmp_path / "m"), "--data", str(test_csv),
                              "--out", str(tmp_path / "m2"), "--set", "epochs=1", "--quiet"])
    assert res.exit_code == 0, res.output
    assert load(tmp_path / "m2").columns_ == load(tmp_path / "m").columns_


# --- metrics ------------------------------------------------------------------------------

def _range_ap_loop(y, s, buffer):
    """A literal, loop-by-loop transcription of the range-based PR-AUC definition."""
    n = len(y)
    soft = y.astype(float).copy()
    starts = [i for i in range(n) if y[i] and (i == 0 or not y[i - 1])]
    ends = [i for i in range(n) if y[i] and (i == n - 1 or not y[i + 1])]
    for a, b in zip(starts, ends):
        for d in range(1, buffer // 2 + 1):
            w = np.sqrt(1 - d / buffer)
            if b + d < n:
                soft[b + d] += w
            if a - d >= 0:
                soft[a - d] += w
    soft = np.minimum(soft, 1)
    segs, inside = [], False
    for i in range(n):
        if soft[i] > 0 and not inside:
            segs.append([i, i])
            inside = True
        elif soft[i] > 0:
            segs[-1][1] = i
        else:
            inside = False
    p_new = (y.sum() + soft.sum()) / 2
    ap, prev_rec, prev_prec = 0.0, 0.0, 1.0
    for thr in sorted(set(s), reverse=True):
        pred = s >= thr
        tp = (soft * pred).sum()
        hit = sum(pred[a:b + 1].any() for a, b in segs)
        rec = min(tp / p_new, 1) * hit / len(segs)
        prec = tp / pred.sum()
        ap += (rec - prev_rec) * (prec + prev_prec) / 2
        prev_rec, prev_prec = rec, prec
    return ap


def test_vus_pr_matches_its_definition():
    rng = np.random.default_rng(0)
    y = np.zeros(120, int)
    y[20:30] = 1
    y[70:95] = 1
    s = rng.random(120) + 0.8 * y
    s[5] = s[6]  # a tie
    for b in (0, 1, 4, 9, 20):
        assert metrics.range_pr_auc(y, s, b) == pytest.approx(_range_ap_loop(y, s, b))
    assert metrics.vus_pr(y, s, 6) == pytest.approx(np.mean([_range_ap_loop(y, s, b) for b in range(7)]))
    assert metrics.vus_pr(y, y + 0.0, 0) == pytest.approx(1.0)  # the buffer rewards early/late hits
    assert metrics.vus_pr(y, s, 10) > metrics.vus_pr(y, rng.random(120), 10)


def test_point_adjust_and_binary_counts():
    y = np.array([0, 1, 1, 1, 0, 0, 1, 1, 0])
    p = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(metrics.point_adjust(y, p), [1, 1, 1, 1, 0, 0, 0, 0, 0])
    c = metrics.binary_counts(y, p)
    assert (c["tp"], c["fp"], c["fn"], c["tn"]) == (1, 1, 4, 3)
    assert c["f1"] == pytest.approx(1 / (1 + 2.5)) and c["far"] == pytest.approx(0.25) and c["mar"] == pytest.approx(0.8)


def test_monitor_help_and_bad_input(tmp_path):
    from typer.testing import CliRunner

    from reconad.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["monitor", "--help"])
    assert res.exit_code == 0 and "--consecutive" in res.output
    res = runner.invoke(app, ["monitor", "--model", str(tmp_path / "none"), "--input", "-"])
    assert res.exit_code != 0
