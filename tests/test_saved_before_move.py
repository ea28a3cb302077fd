"""Models saved by reconad before the package was laid out by concern still load, and score
the same samples as they did when they were saved (tests/fixtures/saved_before_move/)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import reconad
from reconad.ops.loading import load_model
from reconad.ops.registry import ModelRegistry

HERE = Path(__file__).resolve().parent / "fixtures" / "saved_before_move"
EXPECTED = json.loads((HERE / "expected.json").read_text(encoding="utf-8"))


def _inputs(name: str):
    path = HERE / name
    return np.load(path) if path.suffix == ".npy" else pd.read_csv(path)


@pytest.mark.parametrize("name", sorted(EXPECTED["models"]))
def test_old_model_loads_and_scores_alike(name):
    case = EXPECTED["models"][name]
    det = reconad.load(HERE / name)
    scores = det.decision_function(_inputs(case["inputs"]))
    np.testing.assert_allclose(scores, case["scores"], rtol=1e-5, atol=1e-7)
    kind = name.split("_")[0]
    assert type(det).__name__ == {"image": "ImageDetector", "series": "SeriesDetector",
                                  "table": "TabularDetector"}[kind]


def test_old_models_go_through_the_loader_and_a_registry(tmp_path):
    reg = ModelRegistry(tmp_path / "registry")
    for name in ("image_conv_ae", "table_vae"):
        reg.register(HERE / name)
    reg.promote("v0001")
    for name, version in (("image_conv_ae", "v0001"), ("table_vae", "v0002")):
        case = EXPECTED["models"][name]
        det = load_model(f"{tmp_path / 'registry'}@{version}")
        assert det.model_version_ == version
        np.testing.assert_allclose(det.decision_function(_inputs(case["inputs"])), case["scores"], rtol=1e-5,
                                   atol=1e-7)
    assert load_model(tmp_path / "registry").model_version_ == "v0001"
    assert len(load_model(HERE / "series_conv_ae").model_version_) == 12   # weights checksum outside a registry
