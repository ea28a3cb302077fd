import numpy as np
import pandas as pd
import pytest

from reconad import TabularDetector, load


def _table(n=400, seed=0):
    rng = np.random.RandomState(seed)
    a = rng.normal(10.0, 1.0, n)
    b = 2.0 * a + rng.normal(0.0, 0.1, n)        # b follows a
    c = rng.normal(-5.0, 0.5, n)
    line = rng.choice(["L1", "L2"], n)
    return pd.DataFrame({"a": a, "b": b, "c": c, "line": line, "part_id": np.arange(n)})


def _anomalies(frame):
    bad = frame.head(20).copy()
    bad["b"] = bad["a"] * 2.0 + 3.0               # breaks the a-b relation
    return bad


FAST = dict(epochs=15, batch_size=32, verbose=0, random_state=0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def frame_detector():
    frame = _table()
    return TabularDetector(columns=["a", "b", "c", "line"], **FAST).fit(frame), frame


def test_dataframe_contract(frame_detector):
    det, frame = frame_detector
    test = _table(seed=1)
    normal = det.decision_function(test)
    anomalous = det.decision_function(_anomalies(test))
    assert normal.shape == (len(test),) and np.isfinite(normal).all()
    assert np.median(anomalous) > np.percentile(normal, 95)
    assert det.predict(_anomalies(test)).mean() > 0.8
    assert set(np.unique(det.predict(test))) <= {0, 1}
    assert det.encoder_.categorical_ == ["line"] and det.n_features_ == 5  # 3 numbers + 2 categories


def test_array_contract_and_width_check():
    X = _table()[["a", "b", "c"]].to_numpy()
    det = TabularDetector(**FAST).fit(X)
    assert det.fit(X) is det
    assert det.decision_function(X[:7]).shape == (7,)
    with pytest.raises(ValueError, match="2 columns but the detector was trained on 3"):
        det.decision_function(X[:, :2])
    with pytest.raises(ValueError, match="2-D table"):
        det.decision_function(X[:, 0])


def test_column_order_is_checked_at_scoring(frame_detector):
    det, frame = frame_detector
    test = _table(seed=2)
    reordered = test[["line", "c", "part_id", "b", "a"]]        # other order, extra column
    np.testing.assert_allclose(det.decision_function(reordered), det.decision_function(test))
    with pytest.raises(ValueError, match="columns missing from the table: b"):
        det.decision_function(test.drop(columns=["b"]))
    with pytest.raises(ValueError, match="columns not in the table: zz"):
        TabularDetector(columns=["a", "zz"], **FAST).fit(frame)


def test_missing_values(frame_detector):
    det, frame = frame_detector
    test = _table(seed=3).head(10).copy()
    test.loc[0, "a"] = np.nan
    test.loc[1, "line"] = None
    scores = det.decision_function(test)
    assert np.isfinite(scores).all()
    # a missing number becomes the training median before scaling
    filled = test.copy()
    filled.loc[0, "a"] = float(frame["a"].median())
    assert scores[0] == pytest.approx(det.decision_function(filled)[0], rel=1e-5)
    train = frame.copy()
    train.loc[:5, "c"] = np.nan
    TabularDetector(**FAST).fit(train[["a", "b", "c"]])
    with pytest.raises(ValueError, match="missing values .* in columns: c"):
        TabularDetector(missing="error", **FAST).fit(train[["a", "b", "c"]])
    with pytest.raises(ValueError, match="infinite values in columns: a"):
        det.decision_function(test.assign(a=np.inf))


def test_contamination_threshold():
    frame = _table()
    dirty = pd.concat([frame, _anomalies(_table(seed=4))], ignore_index=True)[["a", "b", "c"]]
    det = TabularDetector(contamination=0.05, **FAST).fit(dirty)
    assert det.threshold_method_ == "contamination"
    assert det.decision_scores_.shape == (len(dirty),)
    assert det.threshold_ == pytest.approx(np.quantile(det.decision_scores_, 0.95))
    assert det.predict(dirty).mean() == pytest.approx(0.05, abs=0.01)
    with pytest.raises(ValueError, match="contamination must be in"):
        TabularDetector(contamination=0.7).fit(dirty)


def test_vae_save_load_and_csv(tmp_path):
    names = {"a": "寸法a", "line": "ライン"}
    frame = _table()[["a", "b", "c", "line"]].rename(columns=names)
    bad = _anomalies(_table()).rename(columns=names)
    path = tmp_path / "parts.csv"
    frame.to_csv(path, sep=";", index=False, encoding="shift_jis")
    det = TabularDetector(model="vae", encoding="shift_jis", **FAST).fit(path)
    assert det.encoder_.columns_ == ["寸法a", "b", "c", "ライン"]
    scores = det.decision_function(path)
    assert det.decision_function(bad).mean() > scores.mean()
    det.save(tmp_path / "model")
    back = load(tmp_path / "model")
    np.testing.assert_allclose(back.decision_function(path), scores, rtol=1e-5)
    assert back.threshold_ == det.threshold_
    with pytest.raises(ValueError, match="cannot decode"):
        TabularDetector(**FAST).fit(path)  # Shift-JIS read as UTF-8


def test_same_seed_same_scores():
    X = _table()[["a", "b", "c"]].to_numpy()
    s1 = TabularDetector(**FAST).fit(X).decision_function(X)
    s2 = TabularDetector(**FAST).fit(X).decision_function(X)
    np.testing.assert_array_equal(s1, s2)


def test_bad_parameters():
    X = np.zeros((10, 2))
    with pytest.raises(ValueError, match="unknown model 'gmm' for tables"):
        TabularDetector(model="gmm").fit(X)
    with pytest.raises(TypeError, match="must be numeric"):
        TabularDetector().fit(np.array([["a", "b"]] * 4))
    with pytest.raises(ValueError, match="the table is empty"):
        TabularDetector().fit(pd.DataFrame({"a": []}))


def test_decision_plots(tmp_path):
    rng = np.random.RandomState(0)
    one = pd.DataFrame({"width_mm": rng.normal(5, 0.2, 300)})
    det1 = TabularDetector(**FAST).fit(one)
    det1.plot_decision(one, tmp_path / "one.png")
    two = pd.DataFrame({"x": rng.normal(0, 1, 300), "y": rng.normal(0, 1, 300)})
    det2 = TabularDetector(**FAST).fit(two)
    det2.plot_decision(two, tmp_path / "two.png", y=(np.abs(two["x"]) > 2).astype(int))
    assert (tmp_path / "one.png").stat().st_size > 1000 and (tmp_path / "two.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="one or two numeric columns"):
        TabularDetector(**FAST).fit(_table()[["a", "b", "c"]]).plot_decision(_table(), tmp_path / "x.png")
