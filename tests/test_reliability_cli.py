"""Small things a user trips over: options that mean the same everywhere, bad values refused
with a message (never a traceback, never accepted without effect)."""

import io
import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from reconad import ImageDetector, SeriesDetector
from reconad.cli import app

runner = CliRunner()
SENSORS = ["圧力", "温度"]


def frame(n=200, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    f = pd.DataFrame(np.c_[np.sin(t / 8), np.cos(t / 13)] + 0.05 * rng.standard_normal((n, 2)), columns=SENSORS)
    f.insert(0, "日時", pd.date_range("2024-01-01", periods=n, freq="s").strftime("%Y-%m-%d %H:%M:%S"))
    return f


@pytest.fixture(scope="module")
def series_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("sm") / "m"
    det = SeriesDetector(window=8, width=8, epochs=1, verbose=0, random_state=0).fit(frame()[SENSORS])
    det.save(path)
    return det, path


def error_of(args):
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code != 0
    assert isinstance(res.exception, (ValueError, TypeError, FileNotFoundError)), repr(res.exception)
    return str(res.exception)


def test_export_onto_a_folder(series_model, tmp_path):
    (tmp_path / "out").mkdir()
    assert "is a folder" in error_of(["export", "--model", series_model[1], "--out", tmp_path / "out"])


def test_values_without_effect_are_refused(series_model, tmp_path, mnist01):
    with pytest.raises(ValueError, match="latent_dim must be a positive integer"):
        ImageDetector(latent_dim=0, epochs=1, verbose=0).fit(mnist01["train_ones"][:10])
    csv = tmp_path / "s.csv"
    frame().to_csv(csv, index=False)
    assert "not in the data" in error_of(["train", "--normal", csv, "--out", tmp_path / "m", "--drop", "nope",
                                          "--window", "8", "--epochs", "1", "--quiet"])
    assert "top_k" in error_of(["monitor", "--model", series_model[1], "--input", csv, "--no-follow",
                                "--top", "-1"])


def test_serve_port_out_of_range(series_model):
    pytest.importorskip("fastapi")
    from reconad.serve.app import serve

    with pytest.raises(ValueError, match="0..65535"):
        serve(series_model[1], port=99999)


def test_tiny_images_give_a_message_not_a_torch_error():
    with pytest.raises(ValueError, match="too small"):
        ImageDetector(model="conv_ae", epochs=1, verbose=0).fit(np.zeros((4, 1, 1), np.uint8))
    with pytest.raises(ValueError, match="at least 2"):
        ImageDetector(model="conv_ae", epochs=1, verbose=0).fit(np.zeros((2, 8, 8), np.uint8))


def test_drift_reads_shift_jis_and_names_its_alert_option(tmp_path):
    for name, seed in (("ref.csv", 0), ("new.csv", 1)):
        frame(400, seed).to_csv(tmp_path / name, index=False, encoding="cp932")
    res = runner.invoke(app, ["drift", "--reference", str(tmp_path / "ref.csv"), "--input",
                              str(tmp_path / "new.csv"), "--window", "100", "--encoding", "cp932"])
    assert res.exit_code == 0, repr(res.exception)
    res = runner.invoke(app, ["drift", "--help"])
    assert "--alert-config" in res.output


def test_columns_in_another_order(series_model):
    det, _ = series_model
    f = frame(100, 2)
    ref = det.decision_function(f[SENSORS])
    np.testing.assert_allclose(det.decision_function(f[SENSORS[::-1]]), ref, rtol=1e-6)


def test_service_reads_timestamped_shift_jis_csv_and_any_column_order(series_model):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient
    from reconad.serve import create_app

    det, _ = series_model
    f = frame(100, 2)
    client = TestClient(create_app(det), raise_server_exceptions=False)
    body = f[["日時", SENSORS[1], SENSORS[0]]].to_csv(index=False).encode("cp932")
    r = client.post("/score", content=body, headers={"content-type": "text/csv"})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["scores"], det.decision_function(f[SENSORS]), rtol=1e-5)


def test_docs_page_says_what_to_do_offline(series_model):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient
    from reconad.serve import create_app

    client = TestClient(create_app(series_model[0]))
    page = client.get("/docs").text
    assert "swagger-ui" in page and "/openapi.json" in page and "cannot reach" in page
