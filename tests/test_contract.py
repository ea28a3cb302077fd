"""The contract every model of the catalogue keeps, on tiny data: a new model gets all of
this by being in the catalogue (and, if it needs small sizes to be fast, a line in
catalogue_cases.SIZES).

fit returns self; scores and labels have the right shape and values; save and load give
identical scores; clone and get_params round-trip; tune runs one trial; export matches
the detector where the model exports (a clear ExportError where not); the service
answers a request; Dask scoring equals in-process scoring. Nothing here is skipped: the
packages it needs (optuna, dask, fastapi) are part of the test environment."""

import dask.bag as db
import dask.dataframe as dd
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from sklearn.base import clone

from catalogue_cases import case_id, cases, data, detector
from conftest import write_pngs
from reconad import load
from reconad.evaluation import tuning
from reconad.export import ExportError, export, load_torchscript
from reconad.models import catalogue
from reconad.scale import dask_scoring
from reconad.serve import create_app

CASES = cases()


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """Each case fitted once and saved: ``{case: (detector, folder, normal, test)}``."""
    done = {}

    def get(entry):
        key = case_id(entry)
        if key not in done:
            normal, test = data(entry.kind)
            det = detector(entry)
            result = det.fit(normal)
            folder = tmp_path_factory.mktemp(key) / "model"
            det.save(folder)
            done[key] = (det, result, folder, normal, test)
        return done[key]

    return get


def test_every_model_is_in_the_suite():
    assert {(e.kind, e.name) for e in CASES} == {(e.kind, e.name) for e in catalogue.entries()}
    for kind in catalogue.KINDS:
        assert catalogue.names(kind), kind
    with pytest.raises(ValueError, match="choose one of conv_ae, lstm_ae"):
        catalogue.entry("series", "feature_ae")


@pytest.mark.parametrize("entry", CASES, ids=case_id)
def test_fit_scores_and_labels(fitted, entry):
    det, result, _, normal, test = fitted(entry)
    assert result is det
    assert det.kind == entry.kind
    scores = det.decision_function(test)
    assert scores.shape == (len(test),) and scores.dtype == np.float64
    assert np.isfinite(scores).all()
    labels = det.predict(test)
    assert labels.shape == scores.shape and set(np.unique(labels)) <= {0, 1}
    np.testing.assert_array_equal(labels, (scores > det.threshold_).astype(int))
    assert np.isfinite(det.threshold_) and np.isfinite(det.decision_scores_).all()


@pytest.mark.parametrize("entry", CASES, ids=case_id)
def test_save_load_identical_scores(fitted, entry):
    det, _, folder, _, test = fitted(entry)
    back = load(folder)
    assert type(back) is type(det) and back.get_params() == det.get_params()
    np.testing.assert_array_equal(back.decision_function(test), det.decision_function(test))
    assert back.threshold_ == det.threshold_


@pytest.mark.parametrize("entry", CASES, ids=case_id)
def test_clone_and_get_params_round_trip(entry):
    det = detector(entry)
    params = det.get_params()
    twin = clone(det)
    assert twin.get_params() == params and twin is not det
    assert type(det)(**params).get_params() == params
    assert det.set_params(**params).get_params() == params


@pytest.mark.parametrize("entry", CASES, ids=case_id)
def test_tune_runs_one_trial(entry):
    normal, _ = data(entry.kind)
    det = detector(entry)
    assert set(tuning.search_space(det)) == set(entry.search_space.distributions)
    result = tuning.tune(det, normal, n_trials=1, timeout=None)
    assert [t["state"] for t in result["trials"]] == ["COMPLETE"]
    assert set(result["best_params"]) == set(entry.search_space.distributions)
    tuning.configure(det, result["best_params"])  # the best parameters make a detector


def _export_input(entry, test):
    if entry.kind == "image":
        return torch.from_numpy(np.asarray(test, dtype=np.float32))
    return torch.from_numpy(np.array(test, dtype=np.float32 if entry.kind == "series" else np.float64))


@pytest.mark.parametrize("entry", CASES, ids=case_id)
def test_export_matches_or_says_why_not(fitted, entry, tmp_path):
    det, _, _, _, test = fitted(entry)
    if not entry.exportable:
        with pytest.raises(ExportError, match=f"model '{entry.name}' cannot be exported"):
            export(det, tmp_path / "m.pt", "torchscript")
        return
    module, meta = load_torchscript(export(det, tmp_path / "m.pt", "torchscript"))
    x = _export_input(entry, test)
    with torch.no_grad():
        score, label = [t.numpy() for t in module(x)][:2]
    want = det.decision_function(x.numpy())
    np.testing.assert_allclose(score, want, rtol=1e-4, atol=1e-6)
    assert meta["model"] == entry.name


def _request_body(entry, test):
    if entry.kind == "image":
        return {"instances": np.asarray(test).tolist()}
    return {"instances": test.to_dict(orient="records")}


@pytest.mark.parametrize("entry", CASES, ids=case_id)
def test_service_answers(fitted, entry):
    det, _, _, _, test = fitted(entry)
    client = TestClient(create_app(det, engine="python"), raise_server_exceptions=False)
    r = client.post("/score", json=_request_body(entry, test))
    assert r.status_code == 200, r.text
    body = r.json()
    want = det.decision_function(test)
    assert body["n"] == len(want) and len(body["labels"]) == len(want)
    np.testing.assert_allclose(body["scores"], want, rtol=1e-5)
    assert body["threshold"] == det.threshold_
    info = client.get("/model").json()
    assert info["model"]["name"] == entry.name and info["model"]["scores"] == list(entry.scores)


@pytest.mark.parametrize("entry", CASES, ids=case_id)
def test_dask_scores_equal_in_process(fitted, entry, tmp_path):
    det, _, folder, _, test = fitted(entry)
    if entry.kind == "image":
        pixels = (np.asarray(test) * 255).round().astype(np.uint8)
        paths = sorted(str(p) for p in write_pngs(tmp_path / "images", pixels))
        bag = db.from_sequence(paths, npartitions=2)
        got = dask_scoring.score_dask(folder, bag)
        want = det.decision_function(paths)  # an image's score does not depend on its partition
    else:
        got = dask_scoring.score_dask(folder, dd.from_pandas(test, npartitions=2, sort=False))
        want = det.decision_function(test)
    got = got.compute(scheduler="synchronous")
    np.testing.assert_allclose(got["score"].to_numpy(dtype=np.float64), want, rtol=1e-6, equal_nan=True)
