import json
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("optuna")

from reconad import ImageDetector, TabularDetector  # noqa: E402
from reconad.evaluation import tuning  # noqa: E402
from conftest import DATA_DIR  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _rows(n, seed, shift=0.0):
    rng = np.random.RandomState(seed)
    a = rng.normal(0, 1, n)
    return np.c_[a, a * 2 + shift + rng.normal(0, 0.1, n), rng.normal(0, 1, n)]


def test_tuner_respects_budget_and_returns_valid_configuration(tmp_path):
    det = TabularDetector(epochs=3, verbose=0)
    start = time.perf_counter()
    res = tuning.tune(det, _rows(300, 0), timeout=3.0, out=tmp_path / "study.json", seed=0)
    elapsed = time.perf_counter() - start
    longest = max(t["duration_s"] or 0 for t in res["trials"])
    assert elapsed < 3.0 + longest + 2.0  # stops starting trials at the budget
    space = tuning.search_space(det)
    assert set(res["best_params"]) == set(space)
    for name, value in res["best_params"].items():
        dist = space[name]
        if dist[0] == "categorical":
            assert value in dist[1]
        else:
            assert dist[1] <= value <= dist[2]
    assert res["direction"] == "minimize" and np.isfinite(res["best_value"])
    saved = json.loads((tmp_path / "study.json").read_text())
    assert saved["best_params"] == res["best_params"] and len(saved["trials"]) >= 1
    best = tuning.configure(det, res["best_params"])
    assert best.get_params()["latent_dim"] == res["best_params"]["latent_dim"]
    best.fit(_rows(100, 1)).decision_function(_rows(5, 2))


def test_labelled_objective_and_trial_limit():
    X_val = np.r_[_rows(50, 3), _rows(50, 4, shift=3.0)]
    y_val = np.r_[np.zeros(50), np.ones(50)]
    res = tuning.tune(TabularDetector(model="vae", epochs=2, verbose=0), _rows(200, 0),
                      X_val, y_val, n_trials=2, timeout=60)
    assert len(res["trials"]) == 2 and res["direction"] == "maximize"
    assert 0.5 < res["best_value"] <= 1.0
    assert "beta" in res["best_params"]


def test_image_models_declare_spaces_and_bad_settings():
    assert "depth" in tuning.search_space(ImageDetector(model="conv_ae"))
    assert set(tuning.search_space(ImageDetector(model="tutorial_cae"))) == {"latent_dim", "lr", "batch_size"}
    cfg = tuning.configure(ImageDetector(model="fanogan"), {"latent_dim": 16, "search_steps": 5})
    assert cfg.latent_dim == 16 and cfg.model_kwargs == {"search_steps": 5}
    with pytest.raises(ValueError, match="timeout must be positive"):
        tuning.tune(TabularDetector(), _rows(20, 0), timeout=0)
    with pytest.raises(ValueError, match="y_val needs X_val"):
        tuning.tune(TabularDetector(), _rows(20, 0), y_val=np.zeros(3))


def test_tune_command(tmp_path):
    from typer.testing import CliRunner

    from reconad.cli import app

    import pandas as pd

    rows = pd.DataFrame(_rows(200, 0), columns=["a", "b", "c"])
    rows.to_csv(tmp_path / "normal.csv", index=False)
    val = pd.DataFrame(np.r_[_rows(40, 1), _rows(40, 2, shift=3.0)], columns=["a", "b", "c"])
    val["label"] = [0] * 40 + [1] * 40
    val.to_csv(tmp_path / "val.csv", index=False)
    out = tmp_path / "best.json"
    res = CliRunner().invoke(app, ["tune", "--table", str(tmp_path / "normal.csv"), "--val",
                                   str(tmp_path / "val.csv"), "--trials", "2", "--epochs", "2",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    saved = json.loads(out.read_text())
    assert saved["objective"] == "validation roc_auc" and len(saved["trials"]) == 2
    res = CliRunner().invoke(app, ["tune", "--out", str(out)])
    assert res.exit_code != 0


SKAB = DATA_DIR / "skab"


def _series_files(tmp_path):
    """A normal series and a labelled one (``anomaly`` column) as CSV files with a time
    column: the first rows of SKAB's anomaly-free and valve1 runs when the data is here,
    else a synthetic pair of sensors whose relation breaks in the labelled rows."""
    import pandas as pd

    if (SKAB / "anomaly-free" / "anomaly-free.csv").exists():
        normal = pd.read_csv(SKAB / "anomaly-free" / "anomaly-free.csv", sep=";").iloc[:400]
        labelled = pd.read_csv(SKAB / "valve1" / "0.csv", sep=";").iloc[:700]
        assert labelled["anomaly"].nunique() == 2
    else:
        def frame(n, seed, start):
            rng = np.random.RandomState(seed)
            t = np.arange(n)
            return pd.DataFrame({"datetime": pd.date_range(start, periods=n, freq="s"),
                                 "a": np.sin(t / 8) + rng.normal(0, 0.05, n),
                                 "b": np.cos(t / 8) + rng.normal(0, 0.05, n)})

        normal, labelled = frame(400, 0, "2024-01-01"), frame(300, 1, "2024-01-02")
        labelled["anomaly"] = 0
        labelled.loc[200:, "anomaly"] = 1
        labelled.loc[200:, "b"] += 1.5
    normal.to_csv(tmp_path / "normal.csv", index=False)
    labelled.to_csv(tmp_path / "labelled.csv", index=False)
    return tmp_path / "normal.csv", tmp_path / "labelled.csv"


def test_tune_command_series(tmp_path):
    from typer.testing import CliRunner

    from reconad.cli import app
    from reconad.models.catalogue import entry

    normal, labelled = _series_files(tmp_path)
    out = tmp_path / "best.json"
    common = ["tune", "--normal", str(normal), "--window", "20", "--stride", "5", "--trials", "1",
              "--epochs", "1", "--out", str(out)]
    res = CliRunner().invoke(app, common + ["--val", str(labelled), "--label-column", "anomaly"])
    assert res.exit_code == 0, res.output
    assert "kind auto: series (--window was given)" in res.output
    saved = json.loads(out.read_text())
    series_space = set(entry("series", "conv_ae").search_space.distributions)
    assert saved["detector"] == "SeriesDetector" and saved["objective"] == "validation roc_auc"
    assert set(saved["best_params"]) == series_space and {"width", "depth"} <= series_space
    assert saved["detector_params"]["window"] == 20 and saved["detector_params"]["stride"] == 5
    assert 0.0 <= saved["best_value"] <= 1.0
    # without labels: the last rows of the series are held out, in order
    res = CliRunner().invoke(app, common + ["--model", "dense_ae", "--columns", _first_two(normal)])
    assert res.exit_code == 0, res.output
    saved = json.loads(out.read_text())
    assert saved["direction"] == "minimize" and saved["detector_params"]["model"] == "dense_ae"
    assert set(saved["best_params"]) == set(entry("series", "dense_ae").search_space.distributions)
    assert saved["detector_params"]["columns"] == _first_two(normal).split(",")
    res = CliRunner().invoke(app, common + ["--val-normal", str(tmp_path)])
    assert res.exit_code != 0 and "--val-normal applies to image models" in str(res.exception)


def _first_two(path) -> str:
    header = path.read_text().splitlines()[0]
    return ",".join(header.split(";" if ";" in header else ",")[1:3])


def test_series_holdout_keeps_time_order():
    import pandas as pd

    from reconad import SeriesDetector

    series = pd.DataFrame({"a": np.arange(100.0)}, index=pd.date_range("2024-01-01", periods=100, freq="s"))
    fit, val = tuning._series_holdout(SeriesDetector(window=10), series, 0.2)
    assert fit["a"].tolist() == list(range(80)) and val["a"].tolist() == list(range(80, 100))
    fit, val = tuning._series_holdout(SeriesDetector(window=10), [series.iloc[:50], series.iloc[50:]], 0.2)
    assert len(fit) == 2 and fit[1]["a"].tolist() == list(range(50, 90)) and len(val) == 10
    with pytest.raises(ValueError, match="too few rows"):
        tuning._series_holdout(SeriesDetector(window=60), series, 0.2)
