"""Tables from the command line, as in the blog tutorial this project grew from: a Shift-JIS
CSV of part measurements with a Japanese text column and missing values -> train -> score
-> evaluate -> report; then export, serve, drift and retrain on the same table model, and
what ``--kind auto`` decides."""

import csv
import io
import json
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from reconad.cli import app
from reconad.cli.kinds import guess_kind

runner = CliRunner()
# the default training (about 300 weight updates of small networks) takes a few seconds here
TRAIN_OPTS = ["--quiet", "--seed", "0"]


def parts(n: int, seed: int) -> pd.DataFrame:
    """Parts from three lines: the length depends on the line, the weight on the length."""
    rng = np.random.default_rng(seed)
    line = rng.choice(["第1ライン", "第2ライン", "第3ライン"], n)
    length = np.select([line == "第1ライン", line == "第2ライン"], [50.0, 60.0], 70.0) + rng.normal(0, 0.5, n)
    return pd.DataFrame({"ライン": line, "長さ": length,
                         "重さ": 0.2 * length + rng.normal(0, 0.1, n),
                         "温度": rng.normal(25, 1, n)})


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("tables")
    train = parts(600, 0)
    train.loc[[5, 50, 300], "重さ"] = np.nan        # blank cells, as spreadsheets have them
    train.loc[[7, 70], "温度"] = np.nan
    train.to_csv(root / "normal.csv", index=False, encoding="shift_jis")
    test = parts(200, 1)
    test["異常"] = 0
    bad = np.arange(0, 200, 10)                       # 20 anomalous parts
    test.loc[bad[:10], "重さ"] += 3.0                  # too heavy for their length
    test.loc[bad[10:], "長さ"] += 8.0                  # too long for their line
    test.loc[3, "温度"] = np.nan
    test.loc[bad, "異常"] = 1
    test.to_csv(root / "labelled.csv", index=False, encoding="shift_jis")
    test.drop(columns="異常").to_csv(root / "new.csv", index=False, encoding="shift_jis")
    return root


@pytest.fixture(scope="module")
def model(files):
    out = invoke("train", "--kind", "table", "--encoding", "shift_jis", "--normal", files / "normal.csv",
                 "--out", files / "model", *TRAIN_OPTS)
    assert "table ensemble" in out and "ライン one-hot" in out and "5 missing values imputed" in out
    return files / "model"


def test_train_score_evaluate_report(files, model, tmp_path):
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    assert config["detector"] == "TabularDetector" and config["params"]["encoding"] == "shift_jis"

    # score: one row per part, the model version on each (the file's encoding is the model's)
    text = invoke("score", "--model", model, files / "labelled.csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 200 and list(rows[0]) == ["file", "row", "score", "label", "model_version"]
    scores = np.array([float(r["score"]) for r in rows])
    y = pd.read_csv(files / "labelled.csv", encoding="shift_jis")["異常"].to_numpy()
    assert np.isfinite(scores).all() and scores[y == 1].min() > np.median(scores[y == 0])
    version = rows[0]["model_version"]
    assert len(version) == 12 and {r["model_version"] for r in rows} == {version}

    # evaluate with labels
    out = invoke("evaluate", "--model", model, "--input", files / "labelled.csv", "--label-column", "異常",
                 "--out", tmp_path / "eval")
    assert "roc_auc" in out
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["n"] == 200 and metrics["n_anomalous"] == 20 and metrics["roc_auc"] > 0.95
    assert metrics["model"] == "ensemble" and metrics["model_version"] == version
    for name in ("scores.png", "roc.png", "loss.png"):
        assert (tmp_path / "eval" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # report: one page with the metrics, the version and the most anomalous rows (Japanese names kept)
    invoke("report", "--model", model, "--data", files / "labelled.csv", "--label-column", "異常",
           "--out", tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    auc = float(re.search(r"<td>ROC-AUC</td><td>([0-9.]+)</td>", page).group(1))
    assert auc == pytest.approx(metrics["roc_auc"], abs=1e-4)
    assert f"model version {version}" in page and "<th>ライン</th>" in page and "ROC curve" in page


def test_command_line_process_on_a_shift_jis_table(files, model, tmp_path):
    """The installed entry point, as a user runs it: no --encoding needed to score."""
    r = subprocess.run([sys.executable, "-m", "reconad.cli", "score", "--model", model, files / "new.csv",
                        "--out", tmp_path / "s.csv"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "200 rows" in r.stdout and (tmp_path / "s.csv").read_text().startswith("file,row,score,label,")


def test_export_serve_drift_retrain(files, model, tmp_path):
    from fastapi.testclient import TestClient

    from reconad.ops.loading import load_model
    from reconad.serve import create_app

    # export: the one-hot text column cannot go into a graph; the numeric columns can
    r = runner.invoke(app, ["export", "--model", str(model), "--out", str(tmp_path / "t.onnx")])
    assert isinstance(r.exception, ValueError) and "categorical columns (ライン)" in str(r.exception)
    invoke("train", "--kind", "table", "--normal", files / "normal.csv", "--drop", "ライン",
           "--out", tmp_path / "numeric", *TRAIN_OPTS)
    out = invoke("export", "--model", tmp_path / "numeric", "--out", tmp_path / "n.onnx")
    assert "table model" in out and (tmp_path / "n.onnx").stat().st_size > 0

    # serve: rows with the Japanese column names, as JSON objects
    det = load_model(model)
    client = TestClient(create_app(det))
    frame = pd.read_csv(files / "new.csv", encoding="shift_jis")
    body = client.post("/score", json={"instances": json.loads(frame.iloc[:5].to_json(orient="records",
                                                                                        force_ascii=False))})
    assert body.status_code == 200, body.text
    np.testing.assert_allclose(body.json()["scores"], det.decision_function(frame.iloc[:5]), rtol=1e-6)
    assert client.get("/model").json()["input"]["kind"] == "table"

    # drift: the model's numeric columns; the later rows' 長さ shifted
    moved = pd.read_csv(files / "normal.csv", encoding="shift_jis")
    moved.loc[300:, "長さ"] += 3.0
    moved.to_csv(tmp_path / "moved.csv", index=False, encoding="shift_jis")
    r = runner.invoke(app, ["drift", "--reference", str(files / "normal.csv"), "--input",
                            str(tmp_path / "moved.csv"), "--model", str(model), "--window", "100"])
    assert r.exit_code == 0, r.output
    signals = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    assert signals and signals[0]["features"][0] == "長さ" and min(s["row"] for s in signals) > 300
    assert {s["model_version"] for s in signals} == {det.model_version_}

    # retrain on new normal rows: same settings and columns, the model's own encoding
    out = invoke("retrain", "--model", model, "--data", files / "new.csv", "--out", tmp_path / "m2",
                 "--set", "epochs=2", "--quiet")
    assert f"retrained from {det.model_version_}" in out
    new = load_model(tmp_path / "m2")
    assert new.kind == "table" and list(new.feature_names_in_) == list(det.feature_names_in_)
    assert new.get_params()["encoding"] == "shift_jis" and new.encoder_.categorical_ == ["ライン"]


def test_kind_auto_says_what_and_why(files, tmp_path):
    kind, why = guess_kind("auto", [files / "normal.csv"], None, window_given=False)
    assert kind == "table" and "no time column" in why
    stamped = pd.DataFrame({"日時": pd.date_range("2024-04-01", periods=50, freq="min").astype(str),
                            "a": np.arange(50.0)})
    stamped.to_csv(tmp_path / "sensors.csv", index=False, encoding="shift_jis")
    kind, why = guess_kind("auto", [tmp_path / "sensors.csv"], None, window_given=False)
    assert kind == "series" and "time column '日時'" in why
    assert guess_kind("auto", [files / "normal.csv"], None, window_given=True) == ("series", "--window was given")
    assert guess_kind("auto", [files], None, window_given=False)[0] == "image"
    out = invoke("train", "--normal", files / "normal.csv", "--out", tmp_path / "auto", "--epochs", "1", "--quiet")
    assert out.startswith("kind auto: table (normal.csv has no time column")


@pytest.mark.parametrize("args, message", [
    (["--kind", "table", "--model", "conv_ae"], "unknown table model 'conv_ae'; the table models are ensemble, ae, vae"),
    (["--kind", "series", "--model", "gmm"], "the series models are conv_ae, lstm_ae, lstm_vae, dense_ae"),
    (["--kind", "table", "--window", "10"], "--window applies to series models, not to table models"),
    (["--kind", "tables"], "unknown --kind 'tables'; choose one of auto, image, series, table"),
])
def test_wrong_model_or_option_for_the_kind(files, tmp_path, args, message):
    r = runner.invoke(app, ["train", "--normal", str(files / "normal.csv"), "--out", str(tmp_path / "m"), *args])
    assert isinstance(r.exception, ValueError) and message in str(r.exception)
    assert not (tmp_path / "m").exists()


def test_train_uses_the_table_detectors_own_defaults(files, tmp_path):
    """Without --epochs, --batch-size or --lr the command line trains the very model that
    ``TabularDetector()`` trains (its batch size, learning rate and number of weight
    updates), not one with settings of the image models."""
    from reconad import TabularDetector, load

    invoke("train", "--kind", "table", "--normal", files / "normal.csv", "--out", tmp_path / "m", *TRAIN_OPTS)
    cli = load(tmp_path / "m")
    assert (cli.epochs, cli.batch_size, cli.lr) == (None, None, None)
    lib = TabularDetector(encoding="shift_jis", random_state=0, verbose=0).fit(files / "normal.csv")
    rows = pd.read_csv(files / "new.csv", encoding="shift_jis")
    np.testing.assert_allclose(cli.decision_function(rows), lib.decision_function(rows), rtol=1e-5)
    invoke("train", "--kind", "table", "--normal", files / "normal.csv", "--out", tmp_path / "given",
           "--epochs", "3", "--batch-size", "32", "--lr", "0.01", *TRAIN_OPTS)
    given = load(tmp_path / "given")
    assert (given.epochs, given.batch_size, given.lr) == (3, 32, 0.01)
