import json

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import write_pngs
from reconad import ImageDetector, load
from reconad.cli import app
from reconad.ops.loading import load_model, resolve
from reconad.ops.registry import ModelRegistry, data_fingerprint, model_version
from reconad.ops.retrain import parse_overrides, retrain

runner = CliRunner()


@pytest.fixture(scope="module")
def setup(tmp_path_factory, mnist01):
    root = tmp_path_factory.mktemp("reg")
    write_pngs(root / "batch1", mnist01["train_ones"][:150])
    write_pngs(root / "batch2", mnist01["train_ones"][150:300])
    write_pngs(root / "probe", mnist01["test_zeros"][:5])
    det = ImageDetector(model="dense_ae", width=32, latent_dim=8, epochs=2, batch_size=32, verbose=0,
                        threshold_method="fpr", threshold_param=0.02, random_state=3)
    det.fit([str(root / "batch1")]).save(root / "model1")
    return root


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def test_fingerprint(setup, tmp_path):
    a = data_fingerprint([setup / "batch1"])
    assert a == data_fingerprint(setup / "batch1") and a.startswith("sha256:")
    assert a != data_fingerprint([setup / "batch2"])
    with pytest.raises(FileNotFoundError):
        data_fingerprint([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no files"):
        data_fingerprint([tmp_path / "empty"])


def test_retrain_keeps_configuration(setup, tmp_path):
    out = tmp_path / "model2"
    result = retrain(setup / "model1", [setup / "batch2"], out, overrides={"epochs": 1})
    old, new = load(setup / "model1"), load(out)
    p_old, p_new = old.get_params(), new.get_params()
    assert p_new.pop("epochs") == 1 and p_old.pop("epochs") == 2
    assert p_new == p_old                              # model, sizes, threshold rule, seed: all kept
    assert new.threshold_method_ == "fpr"
    assert result["parent_version"] == model_version(setup / "model1")
    assert result["data_fingerprint"] == data_fingerprint([setup / "batch2"])
    assert result["metrics"]["threshold"] == pytest.approx(new.threshold_)
    assert not np.allclose(old.decision_function(str(setup / "probe")), new.decision_function(str(setup / "probe")))
    with pytest.raises(ValueError, match="unknown setting 'epoch'"):
        parse_overrides(["epoch=3"], old.get_params())
    assert parse_overrides(["lr=0.01", "model=conv_ae", "patience=null"], old.get_params()) == \
        {"lr": 0.01, "model": "conv_ae", "patience": None}


def test_registry_promote_rollback(setup, tmp_path):
    reg = ModelRegistry(tmp_path / "registry")
    assert reg.list() == [] and reg.current() is None
    v1 = reg.register(setup / "model1", data_fingerprint=data_fingerprint(setup / "batch1"), metrics={"auc": 0.9})
    assert v1["version"] == "v0001" and v1["threshold"] == pytest.approx(load(setup / "model1").threshold_)
    with pytest.raises(ValueError, match="no current version"):
        resolve(tmp_path / "registry")
    reg.promote("v0001")
    out = retrain(tmp_path / "registry", [setup / "batch2"], tmp_path / "m2", registry=tmp_path / "registry",
                  promote=True, overrides={"epochs": 1})
    assert out["version"] == "v0002" and out["parent_version"] == "v0001"
    assert reg.current()["version"] == "v0002" and reg.current()["parent"] == "v0001"
    det = load_model(tmp_path / "registry")
    assert det.model_version_ == "v0002" and model_version(det) == "v0002"
    assert model_version(reg.path("v0002")) == "v0002"
    assert json.loads((reg.path("v0002") / "meta.json").read_text())["data_fingerprint"] == out["data_fingerprint"]
    assert reg.rollback()["version"] == "v0001"
    assert load_model(tmp_path / "registry").model_version_ == "v0001"
    with pytest.raises(ValueError, match="nothing to roll back"):
        reg.rollback()
    with pytest.raises(ValueError, match="no version 'v0009'"):
        reg.promote("v0009")
    assert [v["current"] for v in reg.list()] == [True, False]
    assert not list((tmp_path / "registry").glob(".*"))       # no temporary files left


def test_cli_retrain_models_and_versioned_scores(setup, tmp_path):
    registry = tmp_path / "registry"
    invoke("models", "register", "--model", setup / "model1", "--registry", registry, "--data", setup / "batch1",
           "--promote")
    out = invoke("retrain", "--model", registry, "--data", setup / "batch2", "--out", tmp_path / "m2",
                 "--set", "epochs=1", "--registry", registry, "--quiet")
    assert "retrained from v0001" in out and "registered as v0002" in out
    listing = json.loads(invoke("models", "list", "--registry", registry, "--json"))
    assert [(v["version"], v["current"]) for v in listing] == [("v0001", True), ("v0002", False)]
    assert "v0002" in invoke("models", "list", "--registry", registry)
    invoke("models", "promote", "v0002", "--registry", registry)
    scores = invoke("score", "--model", registry, setup / "probe")
    rows = scores.strip().splitlines()
    assert rows[0] == "file,score,label,model_version" and all(r.endswith(",v0002") for r in rows[1:])
    assert "v0001" in invoke("models", "rollback", "--registry", registry)
    rows = invoke("score", "--model", registry, setup / "probe").strip().splitlines()
    assert all(r.endswith(",v0001") for r in rows[1:])
    plain = invoke("score", "--model", setup / "model1", setup / "probe").strip().splitlines()
    assert plain[1].endswith("," + model_version(setup / "model1"))    # a checksum prefix outside a registry
    bad = runner.invoke(app, ["models", "promote", "v0042", "--registry", str(registry)])
    assert bad.exit_code != 0 and "v0042" in str(bad.exception)


def test_one_loader_names_a_model_three_ways(setup, tmp_path):
    registry = tmp_path / "registry"
    reg = ModelRegistry(registry)
    reg.register(setup / "model1")
    reg.register(setup / "model1")
    reg.promote("v0002")
    assert resolve(setup / "model1").version == model_version(setup / "model1")
    assert resolve(setup / "model1").registry is None
    cur = resolve(registry)
    assert (cur.version, cur.folder, cur.registry) == ("v0002", reg.path("v0002").resolve(), registry.resolve())
    assert cur.name == f"{registry.resolve()}@v0002" and resolve(cur.name) == cur
    assert load_model(f"{registry}@v0001").model_version_ == "v0001"
    with pytest.raises(ValueError, match="no version 'v0009' in registry .*versions: v0001, v0002"):
        resolve(f"{registry}@v0009")
    with pytest.raises(ValueError, match="is not a model registry .*@v0001 names nothing"):
        resolve(f"{setup / 'model1'}@v0001")
    with pytest.raises(FileNotFoundError, match="model registry folder not found"):
        resolve(f"{tmp_path / 'nope'}@v0001")
    with pytest.raises(FileNotFoundError, match="model folder not found"):
        resolve(tmp_path / "nope")
    # the command line takes the same names
    first = invoke("score", "--model", f"{registry}@v0001", setup / "probe").strip().splitlines()
    assert len(first) == 6 and all(r.endswith(",v0001") for r in first[1:])
