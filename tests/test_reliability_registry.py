"""The registry changed by several processes at once, and a damaged registry."""

import json
import multiprocessing

import pytest
from typer.testing import CliRunner

from reconad import ImageDetector
from reconad.cli import app
from reconad.ops.registry import ModelRegistry

runner = CliRunner()
fork = multiprocessing.get_context("fork")


@pytest.fixture(scope="module")
def model(tmp_path_factory, mnist01):
    path = tmp_path_factory.mktemp("regmodel") / "m"
    ImageDetector(model="dense_ae", width=16, latent_dim=4, epochs=1, batch_size=64, verbose=0,
                  random_state=0).fit(mnist01["train_ones"][:100]).save(path)
    return path


def _register_many(folder, model, n, out):
    out.put([ModelRegistry(folder).register(model)["version"] for _ in range(n)])


def _promote_all(folder, versions):
    reg = ModelRegistry(folder)
    for v in versions:
        reg.promote(v)


def test_concurrent_registrations_get_distinct_versions(tmp_path, model):
    queue = fork.Queue()
    procs = [fork.Process(target=_register_many, args=(tmp_path / "reg", model, 5, queue)) for _ in range(6)]
    for p in procs:
        p.start()
    got = [v for _ in procs for v in queue.get(timeout=120)]
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    assert len(got) == 30 and len(set(got)) == 30
    listed = [v["version"] for v in ModelRegistry(tmp_path / "reg").list()]
    assert sorted(listed) == sorted(got)


def test_interleaved_promotions_lose_no_update(tmp_path, model):
    reg = ModelRegistry(tmp_path / "reg")
    versions = [reg.register(model)["version"] for _ in range(40)]
    procs = [fork.Process(target=_promote_all, args=(tmp_path / "reg", versions[i::2])) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
        assert p.exitcode == 0
    data = json.loads((tmp_path / "reg" / "registry.json").read_text())
    assert len([e for e in data["log"] if e["action"] == "promote"]) == 40
    assert len(data["history"]) == 39
    assert sorted(data["history"] + [data["current"]]) == sorted(versions)


def test_promoting_a_damaged_version_is_refused(tmp_path, model):
    reg = ModelRegistry(tmp_path / "reg")
    v1 = reg.register(model)["version"]
    v2 = reg.register(model)["version"]
    reg.promote(v1)
    weights = reg.path(v2) / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ValueError, match="damaged"):
        reg.promote(v2)
    assert reg.current()["version"] == v1
    cfg = reg.path(v1) / "config.json"
    cfg.write_text(cfg.read_text().replace('"threshold_": ', '"threshold_": 1'))
    res = runner.invoke(app, ["models", "promote", v1, "--registry", str(tmp_path / "reg")])
    assert isinstance(res.exception, ValueError) and "configuration was changed" in str(res.exception)


@pytest.mark.parametrize("index, words", [
    ([], "JSON list, not an object"),
    ({"format": "reconad-registry"}, "'versions' is missing"),
    ({"format": "reconad-registry", "versions": [3], "history": []}, "version entry"),
    ({"format": "reconad-registry", "versions": [], "history": [], "current": "v0009"}, "not among"),
    ({"format": "other"}, "'format'"),
])
def test_damaged_registry_index_gives_a_message(tmp_path, index, words):
    (tmp_path / "reg").mkdir()
    (tmp_path / "reg" / "registry.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match=words):
        ModelRegistry(tmp_path / "reg").list()
    res = runner.invoke(app, ["models", "list", "--registry", str(tmp_path / "reg")])
    assert res.exit_code != 0 and isinstance(res.exception, ValueError)


def test_register_metrics_that_are_not_an_object(tmp_path, model):
    (tmp_path / "m.json").write_text("[1, 2]")
    res = runner.invoke(app, ["models", "register", "--model", str(model), "--registry", str(tmp_path / "reg"),
                              "--metrics", str(tmp_path / "m.json")])
    assert isinstance(res.exception, ValueError) and "JSON object" in str(res.exception)
