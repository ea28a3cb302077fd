import numpy as np
import pytest
from scipy import ndimage
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score

from reconad import ImageDetector, load

from conftest import write_pngs


def test_fit_returns_self_and_sets_fitted_attributes(mnist01):
    det = ImageDetector(model="dense_ae", epochs=2, verbose=0)
    assert det.fit(mnist01["train_ones"][:200]) is det
    assert det.input_shape_ == (1, 28, 28)
    assert np.isfinite(det.threshold_)
    assert det.decision_scores_.shape == (20,)  # 10 % held out
    assert det.threshold_ == pytest.approx(np.percentile(det.decision_scores_, 95))
    assert len(det.history_["train_loss"]) == len(det.history_["val_loss"]) == 2


def test_anomalies_score_higher(small_detector, mnist01):
    s1 = small_detector.decision_function(mnist01["test_ones"][:300])
    s0 = small_detector.decision_function(mnist01["test_zeros"][:300])
    assert s1.shape == (300,) and s1.dtype == np.float64
    y = np.r_[np.zeros(300), np.ones(300)]
    assert roc_auc_score(y, np.r_[s1, s0]) > 0.98


def test_predict_is_zero_one_from_threshold(small_detector, mnist01):
    x = np.concatenate([mnist01["test_ones"][:100], mnist01["test_zeros"][:100]])
    labels = small_detector.predict(x)
    assert set(np.unique(labels)) <= {0, 1}
    np.testing.assert_array_equal(labels, (small_detector.decision_function(x) > small_detector.threshold_).astype(int))
    assert labels[100:].mean() > 0.9 and labels[:100].mean() < 0.2


def test_fit_predict(mnist01):
    labels = ImageDetector(model="dense_ae", epochs=1, verbose=0).fit_predict(mnist01["train_ones"][:100])
    assert labels.shape == (100,) and set(np.unique(labels)) <= {0, 1}


def test_score_terms_and_anomaly_map(small_detector, mnist01):
    x = mnist01["test_zeros"][:4]
    maps = {s: small_detector.anomaly_map(x, score=s) for s in ("l1", "mse", "bce")}
    for m in maps.values():
        assert m.shape == (4, 28, 28)
    np.testing.assert_allclose(small_detector.decision_function(x, score="l1"), maps["l1"].sum((1, 2)), rtol=1e-5)
    np.testing.assert_allclose(small_detector.decision_function(x, score="mse"), maps["mse"].mean((1, 2)), rtol=1e-5)
    np.testing.assert_allclose(small_detector.decision_function(x, score="bce"), maps["bce"].sum((1, 2)), rtol=1e-5)
    rec = small_detector.reconstruct(x)
    assert rec.shape == (4, 28, 28) and rec.min() >= 0 and rec.max() <= 1


def test_smoothed_anomaly_map(small_detector, mnist01):
    x = mnist01["test_zeros"][:4]
    raw = small_detector.anomaly_map(x, score="mse")
    smooth = small_detector.anomaly_map(x, score="mse", sigma=2.0)
    assert smooth.shape == raw.shape
    np.testing.assert_allclose(smooth, [ndimage.gaussian_filter(m, 2.0) for m in raw], rtol=1e-6)
    roughness = lambda m: np.abs(np.diff(m, axis=-1)).mean()  # noqa: E731
    assert roughness(smooth) < 0.5 * roughness(raw)
    assert np.allclose(smooth.mean((1, 2)), raw.mean((1, 2)), rtol=0.1)   # smoothing moves, not adds, error
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        small_detector.anomaly_map(x, sigma=-1)


def test_calibrate_methods(small_detector, mnist01):
    det = clone(small_detector).set_params()  # unfitted copy for get_params check
    assert det.get_params()["width"] == 8
    normal = mnist01["test_ones"][:200]
    anomalous = mnist01["test_zeros"][:200]
    x = np.concatenate([normal, anomalous])
    y = np.r_[np.zeros(200, int), np.ones(200, int)]
    s_normal = small_detector.decision_function(normal)
    small_detector.calibrate(normal, method="mean_std", param=3)
    assert small_detector.threshold_ == pytest.approx(s_normal.mean() + 3 * s_normal.std())
    small_detector.calibrate(normal, method="fpr", param=0.01)
    assert (s_normal > small_detector.threshold_).mean() <= 0.01
    small_detector.calibrate(x, y, method="f1")
    f1_threshold = small_detector.threshold_
    small_detector.calibrate(x, y, method="youden")
    assert small_detector.threshold_method_ == "youden" and np.isfinite(f1_threshold)
    small_detector.calibrate(normal, method="percentile")
    assert small_detector.threshold_ == pytest.approx(np.percentile(s_normal, 95))
    with pytest.raises(ValueError, match="needs labels"):
        small_detector.calibrate(normal, method="f1")


def test_all_models_and_scores_train(mnist01):
    x = mnist01["train_ones"][:120]
    for model in ("dense_ae", "conv_ae", "tutorial_cae"):
        det = ImageDetector(model=model, epochs=1, verbose=0).fit(x)
        assert det.decision_function(mnist01["test_zeros"][:3]).shape == (3,)
    assert ImageDetector(model="tutorial_cae")._score_name() == "l1"
    assert ImageDetector(model="tutorial_cae")._loss_name() == "bce"


def test_depth_width_latent_arguments(mnist01):
    det = ImageDetector(model="conv_ae", depth=2, width=4, latent_dim=3, epochs=1, verbose=0)
    det.fit(mnist01["train_ones"][:64])
    assert det.model_.to_latent.out_features == 3
    convs = [m for m in det.model_.features if m.__class__.__name__ == "Conv2d"]
    assert [c.out_channels for c in convs] == [4, 8]


def test_same_seed_same_scores_other_seed_differs(mnist01):
    x, probe = mnist01["train_ones"][:200], mnist01["test_zeros"][:20]
    kw = dict(model="conv_ae", width=8, epochs=2, verbose=0)
    a = ImageDetector(random_state=3, **kw).fit(x).decision_function(probe)
    b = ImageDetector(random_state=3, **kw).fit(x).decision_function(probe)
    c = ImageDetector(random_state=4, **kw).fit(x).decision_function(probe)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_early_stopping_keeps_best_weights(mnist01):
    det = ImageDetector(model="dense_ae", epochs=50, patience=2, lr=0.05, verbose=0).fit(mnist01["train_ones"][:200])
    hist = det.history_["val_loss"]
    assert len(hist) < 50
    assert det.best_epoch_ == int(np.argmin(hist))
    assert len(hist) == det.best_epoch_ + 3


def test_input_forms_give_the_same_scores(small_detector, mnist01, tmp_path):
    imgs = mnist01["test_zeros"][:5]
    ref = small_detector.decision_function(imgs)
    np.testing.assert_allclose(small_detector.decision_function(imgs[..., None]), ref, rtol=1e-6)
    np.testing.assert_allclose(small_detector.decision_function(imgs.astype(np.float32) / 255), ref, rtol=1e-5)
    files = write_pngs(tmp_path / "zeros", imgs)
    np.testing.assert_allclose(small_detector.decision_function([str(f) for f in files]), ref, rtol=1e-6)
    np.testing.assert_allclose(small_detector.decision_function(list(imgs)), ref, rtol=1e-6)


def test_colour_images(tmp_path):
    rng = np.random.RandomState(0)
    x = (rng.rand(40, 16, 20, 3) * 255).astype(np.uint8)
    det = ImageDetector(model="conv_ae", width=4, depth=2, epochs=1, verbose=0).fit(x)
    assert det.input_shape_ == (3, 16, 20)
    assert det.anomaly_map(x[:2]).shape == (2, 16, 20)
    assert det.reconstruct(x[:2]).shape == (2, 16, 20, 3)


def test_not_fitted():
    with pytest.raises(NotFittedError):
        ImageDetector().decision_function(np.zeros((1, 28, 28), np.uint8))


def test_save_load_identical_scores(small_detector, mnist01, tmp_path):
    x = np.concatenate([mnist01["test_ones"][:50], mnist01["test_zeros"][:50]])
    path = small_detector.save(tmp_path / "m")
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "weights.safetensors"]
    loaded = load(path)
    np.testing.assert_array_equal(loaded.decision_function(x), small_detector.decision_function(x))
    assert loaded.threshold_ == small_detector.threshold_
    assert loaded.get_params() == small_detector.get_params()
    np.testing.assert_array_equal(loaded.decision_scores_, small_detector.decision_scores_)
    np.testing.assert_array_equal(loaded.predict(x), small_detector.predict(x))
