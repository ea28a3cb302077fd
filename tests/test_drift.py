import json

import numpy as np
import pandas as pd
import pytest

from conftest import DATA_DIR
from reconad.ops.drift import DriftMonitor, ks, psi

SKAB = DATA_DIR / "skab"


def wandering(n, d, seed):
    """Sensor-like normal data: slow random walks plus noise, rows far from independent."""
    rng = np.random.default_rng(seed)
    slow = np.cumsum(rng.normal(0, 0.02, (n, d)), axis=0)
    return slow - slow.mean(0) + rng.normal(0, 0.1, (n, d))


def test_statistics():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5000, 2)), rng.normal(size=(1000, 2))
    assert np.all(psi(a, b) < 0.05)
    assert psi(a, b + [0, 1])[1] > 0.5
    stat, p = ks(a, b + [0, 1])
    assert stat[0] < 0.1 < 0.3 < stat[1] and p[1] < 1e-6


@pytest.mark.parametrize("method", ["mean_shift", "psi", "ks"])
def test_quiet_on_iid_normal_data_and_names_the_moved_feature(method):
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(3000, 4))
    mon = DriftMonitor(ref, feature_names=list("abcd"), method=method, window=200)
    for i in range(20):
        assert mon.update(rng.normal(size=(50, 4))) is None
    sig = None
    for i in range(8):
        sig = mon.update(rng.normal(size=(50, 4)) + [0, 0, 0, 1.0]) or sig
    assert sig is not None and sig.top_features == ["d"]
    assert list(sig.statistics)[0] == "d" and sig.method == method
    alert = sig.to_alert()
    assert alert["kind"] == "drift" and alert["features"] == ["d"] and "d (" in alert["message"]


def test_mean_shift_takes_slow_wandering_as_normal():
    ref = wandering(6000, 3, 0)
    stream = wandering(6000, 3, 0)                   # the same normal process, replayed
    quiet = DriftMonitor(ref, window=300)
    assert all(quiet.update(stream[i:i + 50]) is None for i in range(0, 6000, 50))
    psi_mon = DriftMonitor(ref, window=300, method="psi")
    fired = [psi_mon.update(stream[i:i + 50]) for i in range(0, 6000, 50)]
    assert sum(s is not None for s in fired) > 10   # PSI mistakes the wandering for drift


def test_scores_are_compared_too_and_patience():
    rng = np.random.default_rng(2)
    ref, ref_scores = rng.normal(size=(2000, 2)), rng.gamma(2.0, 1.0, 2000)
    mon = DriftMonitor(ref, ref_scores, window=100, check_every=50, patience=2, model_version="v0003")
    assert mon.update(rng.normal(size=(100, 2)), rng.gamma(2.0, 1.0, 100)) is None
    assert mon.last_score_statistic_ < 4
    assert mon.update(rng.normal(size=(50, 2)), rng.gamma(2.0, 1.0, 50) + 3) is None   # 1st check over
    sig = mon.update(rng.normal(size=(50, 2)), rng.gamma(2.0, 1.0, 50) + 3)
    assert sig is not None and sig.score_statistic > 4 and sig.top_features == []
    assert sig.model_version == "v0003" and sig.to_alert()["model_version"] == "v0003"


def test_bad_input():
    ref = np.zeros((100, 2))
    with pytest.raises(ValueError, match="unknown drift method"):
        DriftMonitor(ref, method="chi2")
    with pytest.raises(ValueError, match="2 x window"):
        DriftMonitor(ref, window=300)
    mon = DriftMonitor(ref, window=20)
    with pytest.raises(ValueError, match="3 features, the reference has 2"):
        mon.update(np.zeros((5, 3)))
    with pytest.raises(ValueError, match="NaN"):
        mon.update(np.full((5, 2), np.nan))
    with pytest.raises(ValueError, match="no reference scores"):
        mon.update(np.zeros((5, 2)), np.zeros(5))
    with pytest.raises(ValueError, match="feature names"):
        DriftMonitor(ref, feature_names=["a"], window=20)


@pytest.mark.skipif(not (SKAB / "anomaly-free" / "anomaly-free.csv").exists(),
                    reason="SKAB data not found under $RECONAD_DATA/skab")
def test_skab_quiet_on_itself_fires_on_changed_regime():
    free = pd.read_csv(SKAB / "anomaly-free" / "anomaly-free.csv", sep=";", index_col="datetime")
    X = free.to_numpy()
    mon = DriftMonitor(X, feature_names=list(free.columns), window=300)
    assert all(mon.update(X[i:i + 150]) is None for i in range(0, len(X), 150))
    other = pd.read_csv(SKAB / "valve1" / "0.csv", sep=";", index_col="datetime")[free.columns].to_numpy()
    mon = DriftMonitor(X, feature_names=list(free.columns), window=300)
    signals = [mon.update(other[i:i + 150]) for i in range(0, len(other), 150)]
    assert any(s is not None for s in signals)


def test_cli_drift_with_alert_log(tmp_path):
    from typer.testing import CliRunner

    from reconad.cli import app

    rng = np.random.default_rng(5)
    cols = ["Pressure", "Current", "Temperature"]
    ref = pd.DataFrame(rng.normal(size=(1500, 3)), columns=cols)
    ref.insert(0, "datetime", pd.date_range("2024-01-01", periods=1500, freq="s").astype(str))
    new = ref.iloc[:900].copy()
    new.loc[600:, "Current"] += 2.0                  # a recalibrated sensor from row 600 on
    ref.to_csv(tmp_path / "ref.csv", sep=";", index=False)
    new.to_csv(tmp_path / "new.csv", sep=";", index=False)
    cfg = tmp_path / "alerts.json"
    cfg.write_text('{"outbox": "outbox", "channels": [{"type": "log", "path": "drift.jsonl"}]}')
    result = CliRunner().invoke(app, ["drift", "--reference", str(tmp_path / "ref.csv"), "--input",
                                      str(tmp_path / "new.csv"), "--window", "200", "--alerts", str(cfg)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in result.stdout.splitlines() if x.startswith("{")]
    assert lines and all(x["features"] == ["Current"] for x in lines)
    assert min(x["row"] for x in lines) > 600
    logged = (tmp_path / "drift.jsonl").read_text().splitlines()
    assert len(logged) == len(lines) and json.loads(logged[0])["kind"] == "drift"
