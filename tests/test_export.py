"""Exported graphs (ONNX Runtime, TorchScript) score exactly as the Python detector.

Every exportable family is a row of ``FAMILIES``: a name and a function that returns a
fitted detector and real inputs for it (uint8 arrays as a user holds them).
"""

import copy

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError

import pandas as pd

from reconad import ImageDetector, SeriesDetector, TabularDetector, load
from reconad.detectors.base import BaseDetector
from reconad.export import ExportError, export, load_torchscript, scoring_graph

from conftest import DATA_DIR

ort = pytest.importorskip("onnxruntime")

RTOL = 1e-5


def _mnist_real(d):
    """Test 1s and 0s, and the training 1s that thresholds re-derived below come from (so
    that some lie above the threshold)."""
    return np.concatenate([d["test_ones"][:40], d["test_zeros"][:40], d["train_ones"][:100]])


_FITTED = {}


def _image(model, score=None, rgb=False, epochs=1, **kw):
    def make(d):
        train, real = d["train_ones"][:200], _mnist_real(d)
        if rgb:  # colour images: the digit tinted differently per channel
            tint = np.array([1.0, 0.6, 0.3])
            train = (train[..., None] * tint).astype(np.uint8)
            real = (real[..., None] * tint).astype(np.uint8)
        key = (model, rgb, epochs, repr(sorted(kw.items())))
        if key not in _FITTED:  # families that differ only in the score share one network
            _FITTED[key] = ImageDetector(model=model, epochs=epochs, batch_size=32, verbose=0, random_state=0,
                                         **kw).fit(train)
        det = copy.deepcopy(_FITTED[key])
        if score is not None:  # another score term on the same network, threshold re-derived
            det.set_params(score=score).calibrate(train[:100])
        return det, real
    return make


def _skab(rows=None):
    """SKAB: (normal rows, a labelled run) as float arrays, or None when the data is missing."""
    folder = DATA_DIR / "skab"
    if not (folder / "anomaly-free" / "anomaly-free.csv").exists():
        return None
    if "skab" not in _FITTED:
        normal = pd.read_csv(folder / "anomaly-free" / "anomaly-free.csv", sep=";")
        run = pd.read_csv(folder / "valve1" / "0.csv", sep=";")
        cols = [c for c in normal.columns if c not in ("datetime", "anomaly", "changepoint")]
        _FITTED["skab"] = (normal[cols].to_numpy(np.float64)[:600], run[cols].to_numpy(np.float64)[:400])
    return _FITTED["skab"]


def _synthetic_series(n, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None]
    return np.sin(t / np.array([8.0, 13.0, 5.0])) + 0.05 * rng.standard_normal((n, 3))


def _synthetic_run():
    """A labelled run for when SKAB is missing: fresh normal rows with a planted level shift."""
    run = _synthetic_series(400, seed=1)
    run[150:200, 0] += 4.0
    return run


def _series(model, **kw):
    def make(d):
        skab = _skab()
        train = skab[0] if skab is not None else _synthetic_series(400)
        params = dict(model=model, window=12, width=8, epochs=2, batch_size=64, verbose=0, random_state=0)
        if model in ("lstm_ae", "lstm_vae", "dense_ae"):
            params["latent_dim"] = 4
        params.update(kw)
        det = SeriesDetector(**params).fit(train)
        return det, (skab[1] if skab is not None else _synthetic_run())
    return make


def _odds(name="thyroid"):
    path = DATA_DIR / "odds" / f"{name}.npz"
    if not path.exists():
        return None
    d = np.load(path)
    return d["x"].astype(np.float64), d["y"].ravel().astype(int)


def _table(model, nan=False, **kw):
    def make(d):
        odds = _odds()
        if odds is None:
            x = np.random.default_rng(0).normal(size=(600, 6))
            train, real = x[:500], x[500:].copy()
            real[60:, 0] += 8.0  # planted outliers next to held-out normal rows
        else:
            x, y = odds
            train, real = x[y == 0][:600], np.concatenate([x[y == 0][600:660], x[y == 1][:40]])
        det = TabularDetector(model=model, epochs=2, verbose=0, random_state=0, **kw).fit(train)
        if nan:  # missing values are imputed in the graph
            real = real.copy()
            real[::7, 1] = np.nan
            real[::11, 3] = np.nan
        return det, real
    return make


IMAGE_FAMILIES = {
    "conv_ae": _image("conv_ae", width=8, latent_dim=8),
    "conv_ae-l1": _image("conv_ae", score="l1", width=8, latent_dim=8),
    "conv_ae-bce": _image("conv_ae", score="bce", width=8, latent_dim=8),
    "conv_ae-rgb": _image("conv_ae", rgb=True, width=8, latent_dim=8, depth=2),
    "dense_ae": _image("dense_ae", width=64, latent_dim=8),
    "tutorial_cae": _image("tutorial_cae"),
    "gmm": _image("gmm", latent_dim=3, model_kwargs={"pca_components": 8}),
    "gmm-nll": _image("gmm", score="nll", latent_dim=3, model_kwargs={"pca_components": 8}),
    "gmm-elbo": _image("gmm", score="elbo", latent_dim=3, model_kwargs={"pca_components": 8}),
    "fanogan": _image("fanogan", width=32, latent_dim=8),
    "dense_vae-bernoulli": _image("dense_vae", width=64, latent_dim=8, model_kwargs={"decoder": "bernoulli"}),
}
# VAEs train 3 epochs: after one, the KL term D is still near 0, a difference of nearly equal
# float32 numbers, and its relative rounding noise exceeds 1e-5
for _vae, _kw in {"conv_vae": dict(width=8, latent_dim=8, depth=2, epochs=3),
                  "dense_vae": dict(width=64, latent_dim=8, epochs=3),
                  "paper_vae": dict(width=8, latent_dim=8, depth=3, epochs=3)}.items():
    for _score in ("unregularized", "elbo", "kl", "log_norm", "recon_kl"):
        IMAGE_FAMILIES[f"{_vae}-{_score}"] = _image(_vae, score=None if _score == "unregularized" else _score,
                                                   **_kw)

SERIES_FAMILIES = {
    "series-conv_ae": _series("conv_ae"),
    "series-conv_ae-max-stride3": _series("conv_ae", combine="max", stride=3),
    "series-conv_ae-last-mse-norm": _series("conv_ae", combine="last", score="mse", normalize_sensors=True),
    "series-conv_ae-mean-stride5": _series("conv_ae", stride=5, scaler="minmax"),
    "series-lstm_ae": _series("lstm_ae"),
    "series-lstm_vae": _series("lstm_vae"),
    "series-dense_ae": _series("dense_ae", combine="max"),
    "series-conv_ae-worst-sensor": _series("conv_ae", sensor_reduce="max"),
}

TABLE_FAMILIES = {
    "table-ensemble": _table("ensemble", nan=True),
    "table-ensemble-median": _table("ensemble", combine="median"),
    "table-ensemble-median-odd": _table("ensemble", combine="median", members=3, score="l1"),
    "table-ae": _table("ae", nan=True),
    "table-vae": _table("vae", score="l1", scaler="minmax"),
    "table-ae-unbounded": _table("ae", bounded=False),
}

FAMILIES = {**IMAGE_FAMILIES, **SERIES_FAMILIES, **TABLE_FAMILIES}


def _kind(det):
    return {"ImageDetector": "images", "SeriesDetector": "series", "TabularDetector": "table"}[type(det).__name__]


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request, mnist01, tmp_path_factory):
    det, real = FAMILIES[request.param](mnist01)
    folder = tmp_path_factory.mktemp(request.param)
    det.save(folder / "model")
    det = load(folder / "model")  # export what a user exports: a saved model
    return request.param, det, real, folder


def _inputs(det, real):
    """Real inputs (when the data is there) and fresh random ones, as the graph takes them."""
    rng = np.random.default_rng(123)
    kind = _kind(det)
    out = {}
    if kind == "images":
        shape = real.shape[1:]
        out = {"real": real, "random-uint8": rng.integers(0, 256, size=(17, *shape), dtype=np.uint8),
               "random-float": rng.random((17, *shape), dtype=np.float32), "single": real[:1]}
    elif kind == "series":
        n_feat = det.n_features_
        out["real"] = real.astype(np.float32)
        base = _synthetic_series(150, seed=5)[:, np.arange(n_feat) % 3] * det.scale_ + det.center_
        out["random"] = (base + rng.normal(size=base.shape) * det.scale_ * 0.3).astype(np.float32)
        long = _synthetic_series(2100, seed=6)[:, np.arange(n_feat) % 3] * det.scale_ + det.center_
        out["long"] = long.astype(np.float32)  # more windows than one chunk of the graph's loop
        out["one-window"] = out["random"][: det.window]
        out["odd-length"] = out["random"][: det.window + 2 * int(det.stride) + 1]
    else:
        n = len(det.encoder_.columns_)
        out["real"] = real
        center, scale = det.encoder_.offset_, det.encoder_.scale_
        out["random"] = center + scale * rng.normal(size=(33, n)) * np.r_[1.0, 4.0, np.ones(n - 2)]
        out["single"] = out["random"][:1]
    return out


def _check(name, outputs, det, x):
    ref = det.decision_function(x)
    score, label = outputs[0], outputs[1]
    np.testing.assert_allclose(score, ref, rtol=RTOL, atol=0, err_msg=f"{name}: scores")
    np.testing.assert_array_equal(label, det.predict(x), err_msg=f"{name}: labels")
    if len(outputs) == 3:
        ref_map = det.anomaly_map(x)
        np.testing.assert_allclose(outputs[2], ref_map, rtol=RTOL, atol=RTOL * float(np.abs(ref_map).max()),
                                   err_msg=f"{name}: maps")


def test_onnx_parity(family):
    name, det, real, folder = family
    kind = _kind(det)
    dtypes = {"images": ("uint8", "float32"), "series": ("float32",), "table": ("float64", "float32")}[kind]
    sessions = {}
    for dtype in dtypes:
        path = export(det, folder / f"model-{dtype}.onnx", "onnx", input_dtype=dtype)
        sessions[dtype] = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    labels = []
    for what, x in _inputs(det, real).items():
        for dtype, sess in sessions.items():
            if kind == "images":
                if x.dtype == np.uint8 and dtype == "float32":
                    x_in = x.astype(np.float32) / 255.0
                elif x.dtype != np.uint8 and dtype == "uint8":
                    continue  # float images go to the float32 graph
                else:
                    x_in = x
            elif kind == "table" and dtype == "float32":
                x_in = x.astype(np.float32)
                x = x_in.astype(np.float64)  # the detector gets the same (rounded) values
            else:
                x_in = x
            outputs = sess.run(None, {"input": x_in})
            assert outputs[0].dtype == np.float32 and outputs[1].dtype == np.int64
            _check(f"{name} onnx {dtype} {what}", outputs, det, x)
            labels.append(outputs[1])
    assert len(np.unique(np.concatenate(labels))) == 2, "the inputs should give both labels"


def test_torchscript_parity(family):
    name, det, real, folder = family
    path = export(det, folder / "model.pt", "torchscript")
    module, meta = load_torchscript(path)
    assert meta["threshold"] == det.threshold_ and meta["detector"] == type(det).__name__
    for what, x in _inputs(det, real).items():
        with torch.no_grad():
            outputs = [t.numpy() for t in module(torch.from_numpy(x))]
        _check(f"{name} torchscript {what}", outputs, det, x)


def test_real_data_is_there():
    """The series and table rows above use real data (SKAB, ODDS) when it is present."""
    missing = [n for n, ok in (("SKAB", _skab() is not None), ("ODDS thyroid", _odds() is not None)) if not ok]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not found under {DATA_DIR}: series/table parity ran on "
                    "synthetic data only")


def test_series_graph_errors(tmp_path):
    det, _ = SERIES_FAMILIES["series-conv_ae"](None)
    module = scoring_graph(det).script_module
    with pytest.raises(torch.jit.Error, match="shorter than one window"):
        module(torch.zeros(det.window - 1, det.n_features_))
    with pytest.raises(torch.jit.Error, match="training sensor columns"):
        module(torch.zeros(50, det.n_features_ + 1))
    sess = ort.InferenceSession(str(export(det, tmp_path / "s.onnx")), providers=["CPUExecutionProvider"])
    with pytest.raises(Exception):
        sess.run(None, {"input": np.zeros((50, det.n_features_ + 1), np.float32)})


def test_score_chosen_at_export(mnist01, tmp_path):
    det, real = IMAGE_FAMILIES["conv_vae-unregularized"](mnist01)
    with pytest.raises(ExportError, match="differs from the detector's score 'unregularized'"):
        export(det, tmp_path / "x.onnx", score="elbo")
    ref = copy.deepcopy(det).set_params(score="elbo").calibrate(mnist01["train_ones"][:100])
    path = export(det, tmp_path / "elbo.onnx", score="elbo", threshold=ref.threshold_, anomaly_map=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["score", "label"]
    _check("elbo at export", sess.run(None, {"input": real}), ref, real)
    assert not (tmp_path / "x.onnx").exists()


def test_families_that_cannot_export(mnist01, tmp_path):
    train = mnist01["train_ones"][:60]
    anogan = ImageDetector(model="anogan", width=16, latent_dim=4, epochs=1, verbose=0,
                           model_kwargs={"search_steps": 2}).fit(train)
    with pytest.raises(ExportError, match="gradient descent"):
        export(anogan, tmp_path / "a.onnx")
    patches = ImageDetector(model="conv_ae", width=8, latent_dim=4, epochs=1, verbose=0, patch_size=16,
                            patches_per_image=2).fit(train)
    with pytest.raises(ExportError, match="patch-mode"):
        export(patches, tmp_path / "p.onnx")
    frame = pd.DataFrame({"a": np.arange(40.0), "kind": ["x", "y"] * 20})
    table = TabularDetector(epochs=1, verbose=0).fit(frame)
    with pytest.raises(ExportError, match="categorical columns \\(kind\\)"):
        export(table, tmp_path / "t.onnx")
    for model in ("feature_ae", "feature_vae", "feature_knn"):  # refused before anything is read
        det = ImageDetector(model=model)
        det.threshold_ = 1.0
        with pytest.raises(ExportError, match=f"model '{model}' cannot be exported yet: .*backbone"):
            export(det, tmp_path / "f.onnx")
    series, _ = SERIES_FAMILIES["series-conv_ae"](None)
    with pytest.raises(ValueError, match="unknown input dtype 'uint8'"):
        export(series, tmp_path / "s.onnx", input_dtype="uint8")
    assert not list(tmp_path.iterdir())


def test_onnx_metadata(small_detector, tmp_path):
    import onnx

    path = export(small_detector, tmp_path / "m.onnx")
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert float(props["threshold"]) == small_detector.threshold_
    assert props["score"] == '"mse"' and props["model"] == '"conv_ae"'
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["score", "label", "anomaly_map"]
    assert sess.get_inputs()[0].type == "tensor(uint8)"


class _NoExport(BaseDetector):
    def __init__(self):
        pass

    def decision_function(self, X):
        return np.zeros(len(X))


def test_cannot_export_is_clear(small_detector, tmp_path):
    det = _NoExport()
    det.threshold_ = 1.0
    with pytest.raises(ExportError, match="_NoExport cannot be exported: no exporter"):
        scoring_graph(det)
    with pytest.raises(NotFittedError):
        export(ImageDetector(), tmp_path / "x.onnx")
    with pytest.raises(ValueError, match="unknown export format 'tflite'"):
        export(small_detector, tmp_path / "x.tflite", format="tflite")
    with pytest.raises(ValueError, match="unknown input dtype"):
        export(small_detector, tmp_path / "x.onnx", input_dtype="int16")
    assert not list(tmp_path.iterdir())


def test_cli_export(small_detector, tmp_path, mnist01):
    from test_cli import run_cli

    small_detector.save(tmp_path / "model")
    r = run_cli("export", "--model", tmp_path / "model", "--format", "onnx", "--out", tmp_path / "m.onnx")
    assert r.returncode == 0, r.stderr
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    x = mnist01["test_zeros"][:10]
    np.testing.assert_allclose(sess.run(["score"], {"input": x})[0], small_detector.decision_function(x),
                               rtol=RTOL)
    r = run_cli("export", "--model", tmp_path / "model", "--format", "tflite", "--out", tmp_path / "m.x")
    assert r.returncode == 2 and "unknown export format" in r.stderr and "Traceback" not in r.stderr


def test_uint8_scaling_is_exact():
    """The graph's 1/255 scaling (a product and a correction, fast in ONNX Runtime) gives
    NumPy's float32 division for every uint8 value."""
    from reconad.export.image import _LUMA, images_to_nchw

    levels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    got = images_to_nchw(torch.from_numpy(levels), 1, torch.tensor(_LUMA)).numpy()
    np.testing.assert_array_equal(got[0, 0], levels[0].astype(np.float32) / 255.0)
