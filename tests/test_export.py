"""Exported graphs (ONNX Runtime, TorchScript) score exactly as the Python detector.

Every exportable family is a row of ``FAMILIES``: a name and a function that returns a
fitted detector and real inputs for it (uint8 arrays as a user holds them).
"""

import copy

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError

from reconad import ImageDetector, load
from reconad.detectors.base import BaseDetector
from reconad.export import ExportError, export, load_torchscript, scoring_graph

ort = pytest.importorskip("onnxruntime")

RTOL = 1e-5


def _mnist_real(d):
    return np.concatenate([d["test_ones"][:40], d["test_zeros"][:40]])


_FITTED = {}


def _image(model, score=None, rgb=False, **kw):
    def make(d):
        train, real = d["train_ones"][:200], _mnist_real(d)
        if rgb:  # colour images: the digit tinted differently per channel
            tint = np.array([1.0, 0.6, 0.3])
            train = (train[..., None] * tint).astype(np.uint8)
            real = (real[..., None] * tint).astype(np.uint8)
        key = (model, rgb, tuple(sorted(kw.items())))
        if key not in _FITTED:  # families that differ only in the score share one network
            _FITTED[key] = ImageDetector(model=model, epochs=1, batch_size=32, verbose=0, random_state=0,
                                         **kw).fit(train)
        det = copy.deepcopy(_FITTED[key])
        if score is not None:  # another score term on the same network, threshold re-derived
            det.set_params(score=score).calibrate(train[:100])
        return det, real
    return make


FAMILIES = {
    "conv_ae": _image("conv_ae", width=8, latent_dim=8),
    "conv_ae-l1": _image("conv_ae", score="l1", width=8, latent_dim=8),
    "conv_ae-bce": _image("conv_ae", score="bce", width=8, latent_dim=8),
    "conv_ae-rgb": _image("conv_ae", rgb=True, width=8, latent_dim=8, depth=2),
    "dense_ae": _image("dense_ae", width=64, latent_dim=8),
    "tutorial_cae": _image("tutorial_cae"),
}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request, mnist01, tmp_path_factory):
    det, real = FAMILIES[request.param](mnist01)
    folder = tmp_path_factory.mktemp(request.param)
    det.save(folder / "model")
    det = load(folder / "model")  # export what a user exports: a saved model
    return request.param, det, real, folder


def _inputs(det, real):
    """Real images, fresh random uint8 images and fresh random float images."""
    rng = np.random.default_rng(123)
    shape = real.shape[1:]
    return {
        "real": real,
        "random-uint8": rng.integers(0, 256, size=(17, *shape), dtype=np.uint8),
        "random-float": rng.random((17, *shape), dtype=np.float32),
        "single": real[:1],
    }


def _check(name, got_score, got_label, got_map, det, x):
    ref = det.decision_function(x)
    np.testing.assert_allclose(got_score, ref, rtol=RTOL, atol=0, err_msg=f"{name}: scores")
    np.testing.assert_array_equal(got_label, det.predict(x), err_msg=f"{name}: labels")
    ref_map = det.anomaly_map(x)
    np.testing.assert_allclose(got_map, ref_map, rtol=RTOL, atol=RTOL * float(ref_map.max()),
                               err_msg=f"{name}: maps")


def test_onnx_parity(family):
    name, det, real, folder = family
    sessions = {}
    for dtype in ("uint8", "float32"):
        path = export(det, folder / f"model-{dtype}.onnx", "onnx", input_dtype=dtype)
        sessions[dtype] = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    labels = []
    for kind, x in _inputs(det, real).items():
        for dtype, sess in sessions.items():
            if x.dtype == np.uint8 and dtype == "float32":
                x_in = x.astype(np.float32) / 255.0
            elif x.dtype != np.uint8 and dtype == "uint8":
                continue  # float images go to the float32 graph
            else:
                x_in = x
            score, label, amap = sess.run(None, {"input": x_in})
            assert score.dtype == np.float32 and label.dtype == np.int64
            _check(f"{name} onnx {dtype} {kind}", score, label, amap, det, x)
            labels.append(label)
    assert len(np.unique(np.concatenate(labels))) == 2, "the inputs should give both labels"


def test_torchscript_parity(family):
    name, det, real, folder = family
    path = export(det, folder / "model.pt", "torchscript")
    module, meta = load_torchscript(path)
    assert meta["threshold"] == det.threshold_ and meta["detector"] == "ImageDetector"
    for kind, x in _inputs(det, real).items():
        with torch.no_grad():
            score, label, amap = module(torch.from_numpy(x))
        _check(f"{name} torchscript {kind}", score.numpy(), label.numpy(), amap.numpy(), det, x)


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
