"""The scoring service: answers, bad requests (always 4xx, never 500), limits and the token."""

import base64
import io
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import RowDetector

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from reconad.serve import create_app  # noqa: E402


@pytest.fixture(scope="module")
def rows():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(200, 3)), columns=["temp", "pressure", "flow"])
    return frame, RowDetector().fit(frame)


@pytest.fixture(scope="module")
def client(small_detector):
    app = create_app(small_detector, max_request_bytes=200_000, max_batch=64, engine="python")
    return TestClient(app, raise_server_exceptions=False)


def png_bytes(im: np.ndarray, fmt="PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(im).save(buf, format=fmt)
    return buf.getvalue()


def test_health_model_docs(client, small_detector):
    assert client.get("/health").json() == {"status": "ok", "model_version": None}  # made here, never saved
    info = client.get("/model").json()
    assert info["input"] == {**info["input"], "kind": "image", "height": 28, "width": 28, "channels": 1}
    assert info["threshold"] == small_detector.threshold_
    assert info["params"]["model"] == "conv_ae" and info["limits"]["max_batch"] == 64
    assert "/score" in client.get("/openapi.json").json()["paths"]
    assert "swagger" in client.get("/docs").text.lower()


def test_json_arrays_match_detector(client, small_detector, mnist01):
    x = np.concatenate([mnist01["test_ones"][:5], mnist01["test_zeros"][:5]])
    r = client.post("/score", json={"instances": x.tolist()})
    assert r.status_code == 200, r.text
    body = r.json()
    np.testing.assert_allclose(body["scores"], small_detector.decision_function(x), rtol=1e-12)
    assert body["labels"] == small_detector.predict(x).tolist() and body["n"] == 10
    assert body["threshold"] == small_detector.threshold_ and "maps" not in body
    xf = (x / 255.0).astype(np.float32)
    r = client.post("/score", json=xf.tolist())  # a bare list of float images works too
    np.testing.assert_allclose(r.json()["scores"], small_detector.decision_function(xf), rtol=1e-6)


def test_uploads_and_maps(client, small_detector, mnist01):
    x = mnist01["test_zeros"][:3]
    files = [("files", (f"{i}.png", png_bytes(im), "image/png")) for i, im in enumerate(x)]
    r = client.post("/score", files=files, params={"map": "true"})
    assert r.status_code == 200, r.text
    body = r.json()
    np.testing.assert_allclose(body["scores"], small_detector.decision_function(x), rtol=1e-12)
    maps = small_detector.anomaly_map(x)
    np.testing.assert_allclose(body["map_max"], maps.max(axis=(1, 2)), rtol=1e-6)
    png = Image.open(io.BytesIO(base64.b64decode(body["maps"][0])))
    assert png.size == (28, 28) and np.asarray(png).max() == 255
    # one JPEG as the raw body
    jpeg = png_bytes(x[0], "JPEG")
    r = client.post("/score", content=jpeg, headers={"content-type": "image/jpeg"})
    assert r.status_code == 200, r.text
    decoded = np.asarray(Image.open(io.BytesIO(jpeg)).convert("L"))[None]
    assert r.json()["scores"] == pytest.approx(small_detector.decision_function(decoded).tolist(), rel=1e-12)


def _post(client, **kw):
    r = client.post("/score", **kw)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    return r.status_code, r.json()["detail"]


@pytest.mark.parametrize("kwargs, status, words", [
    ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "not valid JSON"),
    ({"content": b"[" * 50_000 + b"]" * 50_000, "headers": {"content-type": "application/json"}}, 400,
     "not valid JSON"),
    ({"json": {"images": []}}, 422, "'instances'"),
    ({"json": {"instances": []}}, 422, "non-empty list"),
    ({"json": {"instances": np.zeros((2, 20, 20), int).tolist()}}, 422, "20x20"),
    ({"json": {"instances": np.full((1, 28, 28), 2.0).tolist()}}, 422, "0..1"),
    ({"json": {"instances": np.full((1, 28, 28), 300).tolist()}}, 422, "0..255"),
    ({"json": {"instances": [[[1, 2]], [[1]]]}}, 422, "equally sized"),
    ({"json": {"instances": [[["a", "b"]]]}}, 422, "numbers"),
    ({"json": {"instances": [[1, 2, 3]]}}, 422, "dimensions"),
    ({"content": b"1,2\n3,4", "headers": {"content-type": "text/csv"}}, 415, "takes images"),
    ({"content": b"hello", "headers": {"content-type": "text/plain"}}, 415, "unsupported content type"),
    ({"content": b"", "headers": {"content-type": "application/json"}}, 400, "empty"),
    ({"files": [("f", ("x.png", b"not an image", "image/png"))]}, 422, "cannot read image x.png"),
    ({"files": [("f", ("a.png", png_bytes(np.zeros((28, 28), np.uint8)), "image/png")),
                ("f", ("b.png", png_bytes(np.zeros((30, 28), np.uint8)), "image/png"))]}, 422, "differ in size"),
    ({"files": [("field", (None, b"value"))]}, 422, "no image files"),
    ({"data": {"field": "value"}}, 415, "unsupported content type"),
    ({"json": {"instances": np.zeros((65, 28, 28), int).tolist()}}, 413, "limit of 64 samples"),
    ({"content": b"0" * 300_000, "headers": {"content-type": "application/json"}}, 413, "200000 bytes"),
])
def test_bad_requests_are_4xx(client, kwargs, status, words):
    code, detail = _post(client, **kwargs)
    assert code == status and words in detail, detail


def test_token(small_detector, mnist01):
    app = create_app(small_detector, token="s3cret")
    c = TestClient(app, raise_server_exceptions=False)
    body = {"instances": mnist01["test_ones"][:1].tolist()}
    assert c.get("/health").status_code == 200
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
        r = c.post("/score", json=body, headers=headers)
        assert r.status_code == 401 and "bearer token" in r.json()["detail"]
        assert r.headers["www-authenticate"] == "Bearer"
        assert c.get("/model", headers=headers).status_code == 401
    assert c.post("/score", json=body, headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_rows_json_and_csv(rows):
    frame, det = rows
    c = TestClient(create_app(det, max_batch=50), raise_server_exceptions=False)
    info = c.get("/model").json()
    assert info["input"]["kind"] == "table" and info["input"]["columns"] == ["temp", "pressure", "flow"]
    part = frame.iloc[:20]
    expected = det.decision_function(part)
    for kwargs in ({"json": part.to_numpy().tolist()},
                   {"json": {"instances": part.to_dict(orient="records")}},
                   {"content": part.to_csv(index=False).encode(), "headers": {"content-type": "text/csv"}}):
        r = c.post("/score", **kwargs)
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(r.json()["scores"], expected, rtol=1e-12)
        assert r.json()["labels"] == (expected > det.threshold_).astype(int).tolist()
    bad = [
        ({"json": [[1, 2]]}, 422, "rows of 3 values"),
        ({"json": [[1, 2, 3], [1, 2]]}, 422, "equally long"),
        ({"json": [{"temp": 1, "flow": 2}]}, 422, "missing columns: pressure"),
        ({"json": [[1, 2, None]]}, 422, "NaN"),
        ({"content": b"temp,pressure,flow\n1,2,x\n", "headers": {"content-type": "text/csv"}}, 422, "could not convert"),
        ({"content": b"temp,pressure,flow\n", "headers": {"content-type": "text/csv"}}, 422, "no data rows"),
        ({"content": b"\x81\x00", "headers": {"content-type": "text/csv"}}, 422, "cannot read CSV"),  # not UTF-8 nor cp932
        ({"files": [("f", ("a.png", b"x", "image/png"))]}, 415, "takes rows"),
        ({"json": [[1, 2, 3]] * 51}, 413, "limit of 50"),
        ({"content": frame.iloc[:60].to_csv(index=False).encode(), "headers": {"content-type": "text/csv"}},
         413, "batch of 60 exceeds the limit of 50"),
    ]
    for kwargs, status, words in bad:
        code, detail = _post(c, **kwargs)
        assert code == status and words in detail, (kwargs, detail)
    code, detail = _post(c, json=[[1, 2, 3]], params={"map": "true"})
    assert code == 422 and "image models" in detail


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_serve(small_detector, tmp_path, mnist01):
    import httpx

    small_detector.save(tmp_path / "model")
    port = _free_port()
    env = {**os.environ, "RECONAD_TOKEN": "tok"}
    proc = subprocess.Popen([sys.executable, "-m", "reconad.cli", "serve", "--model", str(tmp_path / "model"),
                             "--port", str(port), "--engine", "python"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(url + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail("service did not start: " + proc.stderr.read1().decode())
        x = mnist01["test_zeros"][:2]
        files = [("files", (f"{i}.png", png_bytes(im), "image/png")) for i, im in enumerate(x)]
        assert httpx.post(url + "/score", files=files).status_code == 401
        r = httpx.post(url + "/score", files=files, headers={"Authorization": "Bearer tok"})
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(r.json()["scores"], small_detector.decision_function(x), rtol=1e-12)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_anomalies_go_to_the_alert_channels(small_detector, mnist01, tmp_path):
    from reconad.ops.alerts import AlertDispatcher

    config = {"outbox": str(tmp_path / "outbox"), "channels": [{"type": "log", "path": str(tmp_path / "a.jsonl")}]}
    with AlertDispatcher(config, background=False, defaults={"model_version": "v0007"}) as alerts:
        c = TestClient(create_app(small_detector, alerts=alerts, engine="python"))
        x = np.concatenate([mnist01["test_ones"][:5], mnist01["test_zeros"][:5]])
        r = c.post("/score", json={"instances": x.tolist()})
        assert r.status_code == 200
        flagged = [i for i, label in enumerate(r.json()["labels"]) if label]
        assert flagged
    sent = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [a["index"] for a in sent] == flagged
    assert all(a["model_version"] == "v0007" and a["source"] == "service" for a in sent)


def test_onnx_engine_batches_concurrent_requests(small_detector, mnist01, monkeypatch):
    """The default engine scores images with the exported graph in ONNX Runtime, one batch
    for the requests that arrive together: the detector's scores (relative 1e-5) and labels."""
    import asyncio

    import httpx

    pytest.importorskip("onnxruntime")
    app = create_app(small_detector, batch_wait_ms=20)
    x = np.concatenate([mnist01["test_ones"][:20], mnist01["test_zeros"][:20]])
    calls = []

    async def run():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            info = (await c.get("/model")).json()
            assert info["engine"] == "onnx"
            bodies = [png_bytes(im) for im in x]
            rs = await asyncio.gather(*(c.post("/score", content=b, headers={"content-type": "image/png"})
                                        for b in bodies))
            bad = await c.post("/score", json={"instances": np.zeros((1, 20, 20), int).tolist()})
            return rs, bad

    from reconad.serve import batching as serve_batching

    original = serve_batching.MicroBatcher._score_batch

    async def counting(self, loop, items):
        calls.append(len(items))
        return await original(self, loop, items)

    monkeypatch.setattr(serve_batching.MicroBatcher, "_score_batch", counting)
    rs, bad = asyncio.run(run())
    assert all(r.status_code == 200 for r in rs), [r.text for r in rs if r.status_code != 200]
    scores = np.array([r.json()["scores"][0] for r in rs])
    np.testing.assert_allclose(scores, small_detector.decision_function(x), rtol=1e-5)
    assert [r.json()["labels"][0] for r in rs] == small_detector.predict(x).tolist()
    assert max(calls) > 1 and sum(calls) == len(x), calls  # requests shared batches
    assert bad.status_code == 422 and "20x20" in bad.json()["detail"]


def test_a_registry_version_is_named_in_every_answer(rows, tmp_path):
    from standin_detectors import RowDetector as SavableRowDetector

    from reconad.ops.loading import load_model
    from reconad.ops.registry import ModelRegistry

    frame, _ = rows
    SavableRowDetector().fit(frame).save(tmp_path / "model")
    reg = ModelRegistry(tmp_path / "registry")
    reg.register(tmp_path / "model")
    reg.register(tmp_path / "model")
    reg.promote("v0001")
    client = TestClient(create_app(load_model(f"{tmp_path / 'registry'}@v0002")))
    assert client.get("/health").json() == {"status": "ok", "model_version": "v0002"}
    assert client.get("/model").json()["model_version"] == "v0002"
    body = client.post("/score", json={"instances": frame.iloc[:3].to_dict("records")}).json()
    assert body["model_version"] == "v0002" and len(body["scores"]) == 3
    assert TestClient(create_app(load_model(tmp_path / "registry"))).get("/health").json()["model_version"] == "v0001"
