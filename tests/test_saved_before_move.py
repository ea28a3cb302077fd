"""Models saved by reconad before the package was laid out by concern still load, and score
the same samples as they did when they were saved (tests/fixtures/saved_before_move/)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import reconad

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
