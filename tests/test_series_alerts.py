"""Slow sensors as operating point, scores of the newest rows, the margin threshold and the
alert rule with hysteresis (detector, monitor and the rule itself)."""

import numpy as np
import pandas as pd
import pytest

from conftest import DATA_DIR
from reconad import SeriesDetector, load
from reconad.data.series import slow_sensors, smoothness
from reconad.ops.monitor import Monitor
from reconad.scoring import windows
from reconad.thresholds import rules
from reconad.thresholds.episodes import EpisodeState, episodes, starts

COLS = ["vibration", "flow", "temperature"]


def plant(n=700, seed=0):
    """Two fast, noisy sensors and a temperature that drifts slowly."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    vib = np.sin(2.1 * t) + 0.3 * rng.standard_normal(n)
    flow = 0.5 * np.cos(1.7 * t) + 0.3 * rng.standard_normal(n)
    temp = 20 + 0.01 * t + 0.02 * rng.standard_normal(n)
    return pd.DataFrame(np.c_[vib, flow, temp], columns=COLS)


@pytest.fixture(scope="module")
def det():
    return SeriesDetector(window=20, width=8, epochs=4, batch_size=64, verbose=0,
                          random_state=0).fit(plant().iloc[:400])


# --- the alert rule -------------------------------------------------------------------------

def test_episode_starts_and_ends_with_hysteresis():
    s = np.array([0, 5, 5, 5, 2, 5, 2, 0, 0, 0, 5, 0])
    flags, state = episodes(s, high=4, low=1, enter=2, leave=2)
    # starts at the 2nd step in a row above 4; a dip to 2 (above low=1) does not end it;
    # ends at the 2nd step in a row at or below 1; a single step above 4 starts nothing
    assert flags.astype(int).tolist() == [0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0]
    assert starts(flags).tolist() == [2]
    assert state == EpisodeState(on=False, above=0, below=1)
    plain, _ = episodes(s, high=4, low=4)  # no hysteresis: flagged exactly where above
    assert plain.tolist() == (s > 4).tolist()


def test_episodes_in_pieces_equal_episodes_at_once():
    rng = np.random.default_rng(3)
    s = rng.random(500) * 3
    s[rng.random(500) < 0.02] = np.nan
    whole, _ = episodes(s, 2.0, 1.2, enter=3, leave=4)
    got, state = [], None
    for piece in np.split(s, [1, 2, 50, 51, 300, 499]):
        flags, state = episodes(piece, 2.0, 1.2, enter=3, leave=4, state=state)
        got.append(flags)
    np.testing.assert_array_equal(np.concatenate(got), whole)


def test_episodes_reject_bad_rules():
    with pytest.raises(ValueError, match="must not be above"):
        episodes([1.0], high=1, low=2)
    with pytest.raises(ValueError, match="at least 1"):
        episodes([1.0], high=1, low=1, enter=0)


# --- slow sensors and window centering -----------------------------------------------------

def test_smoothness_tells_drift_from_noise():
    x = plant().to_numpy()
    r = smoothness(x)
    assert r[2] < 0.2 and r[0] > 0.5 and r[1] > 0.5
    assert slow_sensors(x).tolist() == [False, False, True]


def test_center_sensors_removes_only_the_masked_levels():
    w = np.random.default_rng(0).random((5, 7, 3)) + 10
    out = windows.center_sensors(w, [False, True, False])
    np.testing.assert_allclose(out[:, :, 1].mean(1), 0, atol=1e-5)
    np.testing.assert_array_equal(out[:, :, [0, 2]], w[:, :, [0, 2]].astype(np.float32))
    np.testing.assert_allclose(windows.center_sensors(out, [False, True, False]), out, atol=1e-6)
    with pytest.raises(ValueError, match="mask"):
        windows.center_sensors(w, [True])


def test_slow_sensor_level_is_operating_point_not_fault(det):
    assert det.slow_sensors_ == ["temperature"]
    test = plant(seed=1).iloc[400:].reset_index(drop=True)
    base = det.decision_function(test)
    warm = test.copy()
    warm["temperature"] += 3.0  # a new operating point: far outside the training rows
    np.testing.assert_allclose(det.decision_function(warm), base, rtol=1e-4, atol=1e-5)
    fault = test.copy()
    fault.loc[150:, "flow"] += 3.0  # a fast sensor leaves its range
    assert det.decision_function(fault)[150 + det.window:].min() > det.threshold_
    # the temperature keeps drifting after the training rows: a detector told that no
    # sensor is slow alarms once it has drifted far enough, the default never
    none = SeriesDetector(window=20, width=8, epochs=4, batch_size=64, verbose=0,
                          slow_sensors=None).fit(plant().iloc[:400])
    assert none.slow_sensors_ == []
    assert none.predict(test)[-80:].all()
    assert det.predict(test).mean() < 0.02
    with pytest.raises(ValueError, match="unknown column"):
        SeriesDetector(window=20, epochs=1, verbose=0, slow_sensors=["pressure"]).fit(plant().iloc[:400])


# --- detector: threshold, causal alerts, persistence, monitor --------------------------------

def test_margin_threshold_from_all_training_windows(det):
    train = plant().iloc[:400]
    expected = rules.margin(det.window_scores(train), 2.0)
    assert det.threshold_method_ == "margin"
    assert det.threshold_ == pytest.approx(expected, rel=1e-5)
    assert rules.margin([1.0, 2.0, 3.0], 2.0, q=1.0) == 6.0


def test_predict_is_causal_and_follows_the_alert_rule(det):
    test = plant(seed=1).iloc[400:].reset_index(drop=True)
    test.loc[150:230, "flow"] += 3.0
    flags = det.predict(test)
    scores = det.decision_function(test, combine="last")
    high, low = det.alert_levels()
    assert low == pytest.approx(0.9 * high)
    np.testing.assert_array_equal(flags, episodes(scores, high, low, det.alert_enter, det.alert_leave)[0])
    assert flags[160:230].all() and not flags[:150].any()
    changed = test.copy()
    changed.loc[260:, COLS] += 5.0  # change the future: flags before it stay
    np.testing.assert_array_equal(det.predict(changed)[:260], flags[:260])


def test_saved_detector_and_monitor_keep_the_rule(det, tmp_path):
    test = plant(seed=1).iloc[400:].reset_index(drop=True)
    test.loc[150:230, "flow"] += 3.0
    again = load(det.save(tmp_path / "m"))
    assert again.slow_sensors_ == det.slow_sensors_
    np.testing.assert_array_equal(again.predict(test), det.predict(test))
    mon = Monitor(again)
    flags, alerts = [], []
    for chunk in np.array_split(test[COLS].to_numpy(), 13):
        alerts += mon.push(chunk)
        flags.append(mon.last_flags)
    np.testing.assert_array_equal(np.concatenate(flags), det.predict(test).astype(bool))
    assert [a["row"] for a in alerts] == starts(det.predict(test)).tolist()
    assert alerts[0]["top_sensors"][0]["sensor"] == "flow"


def test_short_and_long_inputs_follow_the_same_rule():
    rng = np.random.default_rng(7)
    s = rng.random(400) * 3
    s[rng.random(400) < 0.05] = np.nan
    whole, end = episodes(s, 2.0, 1.0, enter=2, leave=3)
    state, got = None, []
    for v in s:  # one step at a time takes the loop
        flags, state = episodes([v], 2.0, 1.0, enter=2, leave=3, state=state)
        got.append(flags[0])
    np.testing.assert_array_equal(got, whole)
    assert state == end


SKAB_FREE = DATA_DIR / "skab" / "anomaly-free" / "anomaly-free.csv"


@pytest.mark.skipif(not SKAB_FREE.exists(), reason="SKAB data not found under $RECONAD_DATA/skab")
@pytest.mark.usefixtures("one_torch_thread")
def test_defaults_alarm_a_step_planted_in_real_anomaly_free_rows():
    """The defaults on real normal rows of the SKAB rig (never used to choose them): quiet on
    the clean rows after training; a step of 6 training sigmas on the pump current is alarmed
    within a few rows, and the alarm ends soon after the step does."""
    from reconad.data.csv import read_csv

    rows = read_csv(SKAB_FREE).iloc[1175:1975]  # 400 training rows, 400 to score
    train, rest = rows.iloc[:400], rows.iloc[400:].copy()
    det = SeriesDetector(window=60, verbose=0, random_state=0).fit(train)
    assert det.predict(rest).sum() == 0
    s, e = 150, 300
    rest.iloc[s:e, rest.columns.get_loc("Current")] += 6 * train["Current"].std(ddof=0)
    flags = det.predict(rest)
    assert np.flatnonzero(flags[s:e])[0] < 15
    assert flags[s:e].mean() > 0.9
    assert flags[:s].sum() == 0 and flags[e + 60 + 10:].sum() == 0
