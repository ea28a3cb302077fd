"""A scoring service for a fitted detector: FastAPI on uvicorn.

``create_app(detector)`` returns the application; ``reconad serve`` runs it.

* ``POST /score``: the body is one of
  - ``application/json``: ``{"instances": [...]}`` or a bare list: images as nested
    arrays ``(N, H, W[, C])`` (integers 0..255 or floats 0..1) for image models; rows
    (lists of numbers, or objects of column -> value) for table and series models;
  - ``text/csv``: rows with a header line (table and series models);
  - ``multipart/form-data``: image files (PNG, JPEG, ...), any field name;
  - ``image/png`` or ``image/jpeg``: one image file as the raw body.
  It answers ``{"n", "scores", "labels", "threshold", "score"}``; with ``?map=true`` (image
  models) also ``maps`` (8-bit grayscale PNG per image, base64) and ``map_max`` (the map
  value that white stands for).
* ``GET /health``, ``GET /model`` (input kind and shape, threshold, parameters, limits),
  ``GET /docs`` (the OpenAPI page) and ``GET /openapi.json``.

Limits: ``max_request_bytes`` (413) and ``max_batch`` samples per request (413). Bad input
gets a 4xx whose ``detail`` names the problem. With a token, ``/score`` and ``/model``
need ``Authorization: Bearer <token>`` (401 otherwise).

The service only uses the detector's public face: ``kind``, ``decision_function``,
``anomaly_map``, ``threshold_``, ``input_shape_``, ``get_params`` and ``model_version_``
(when loaded by :func:`reconad.ops.loading.load_model`). The detector's declared ``kind``
says what it takes: an image detector takes images; a series or table detector takes rows
(a 2-D array or a ``pandas.DataFrame`` passed to ``decision_function``). Every answer and
``/health`` name the model version.
"""

from __future__ import annotations

import base64
import gc
import io
import json
import math
import secrets
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

try:
    from fastapi import FastAPI, Query, Request
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from starlette.concurrency import run_in_threadpool
    from starlette.datastructures import Headers
    from starlette.formparsers import MultiPartException, MultiPartParser
except ImportError:  # pragma: no cover - the serve extra is missing
    raise ImportError("the scoring service needs FastAPI and uvicorn: pip install 'reconad[serve]'") from None

from reconad._version import __version__
from reconad.data.csv import read_csv_bytes
from reconad.data.images import decode_image, stack_images, to_float_array
from reconad.models.catalogue import KINDS, entries
from reconad.ops.loading import declared_kind
from reconad.serve.batching import MicroBatcher, image_engine

TOKEN_ENV = "RECONAD_TOKEN"
DEFAULT_MAX_REQUEST_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_BATCH = 1024


class BadInput(Exception):
    """A request the service refuses, with its HTTP status and a message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# --- turning request bodies into detector input ----------------------------------------

OFFLINE_NOTE = (
    "<div id='reconad-offline' style='display:none;font-family:sans-serif;margin:2em'>"
    "<h2>The interactive API page needs the internet</h2>"
    "<p>It loads Swagger UI from cdn.jsdelivr.net, which this browser cannot reach. The service "
    "works without it: the API description is at <a href='/openapi.json'>/openapi.json</a>; "
    "score with <code>POST /score</code> (JSON, CSV, or image files), check with "
    "<code>GET /health</code> and <code>GET /model</code>.</p></div>"
    "<script>window.addEventListener('load', function () {"
    "if (typeof SwaggerUIBundle === 'undefined') {"
    "document.getElementById('reconad-offline').style.display = 'block';}});</script>")


def docs_html(title: str) -> str:
    """The /docs page: Swagger UI (from its CDN), and a note shown when the CDN cannot be
    reached (offline plants) that says where the API description is."""
    from fastapi.openapi.docs import get_swagger_ui_html

    page = get_swagger_ui_html(openapi_url="/openapi.json", title=f"{title} - API").body.decode("utf-8")
    return page.replace("<body>", "<body>" + OFFLINE_NOTE, 1)


def _json_images(payload) -> np.ndarray:
    try:
        arr = np.asarray(payload)
    except ValueError as exc:  # ragged nesting
        raise BadInput(422, f"images must be equally sized nested arrays: {exc}") from None
    if arr.dtype == bool or arr.dtype.kind not in "iuf":
        raise BadInput(422, "images must be arrays of numbers (integers 0..255 or floats 0..1), "
                            f"got {'ragged or mixed values' if arr.dtype == object else arr.dtype}")
    if arr.dtype.kind in "iu":
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise BadInput(422, f"integer pixel values must lie in 0..255; they range from "
                                f"{arr.min()} to {arr.max()}")
        return arr.astype(np.uint8)
    return arr.astype(np.float32)


def _json_rows(payload):
    if not isinstance(payload, list) or not payload:
        raise BadInput(422, "rows must be a non-empty list")
    if all(isinstance(r, dict) for r in payload):
        return pd.DataFrame.from_records(payload)
    try:
        arr = np.asarray(payload, dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise BadInput(422, f"rows must be equally long lists of numbers: {exc}") from None
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2:
        raise BadInput(422, f"rows must form a 2-D table; got {arr.ndim} dimensions")
    return arr


def _map_png(amap: np.ndarray) -> tuple[str, float]:
    top = float(amap.max())
    scaled = np.zeros(amap.shape, np.uint8) if top <= 0 else np.clip(amap / top * 255.0 + 0.5, 0, 255)
    buf = io.BytesIO()
    Image.fromarray(scaled.astype(np.uint8)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii"), top


# --- the application ---------------------------------------------------------------------

def _catalogue_info(detector) -> dict | None:
    """The model's catalogue entry (name, kind, family, scores), when it has one."""
    kind, name = getattr(detector, "kind", None), getattr(detector, "model", None)
    found = [e for e in entries(kind) if e.name == name] if kind in KINDS else []
    if not found:
        return None
    e = found[0]
    return {"name": e.name, "kind": e.kind, "family": e.family, "default_score": e.default_score,
            "scores": list(e.scores), "exportable": e.exportable, "description": e.description}


def create_app(detector, token: str | None = None, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
               max_batch: int = DEFAULT_MAX_BATCH, model_name: str | None = None, alerts=None,
               engine: str = "auto", batch_wait_ms: float = 0.0, threads: int = 1,
               inline_samples: int = 1):
    """The FastAPI application serving ``detector`` (fitted). With ``alerts`` (a
    :class:`reconad.ops.alerts.AlertDispatcher`), every sample labelled anomalous is also sent
    to the alert channels, with the model version.

    Image scores (without maps) are computed by ``engine``: ``"onnx"`` (the detector's
    exported graph in ONNX Runtime on ``threads`` threads), ``"python"`` (the detector) or
    ``"auto"`` (ONNX when onnxruntime is installed and the model exports). Requests that
    wait while a batch is scored (and those arriving within ``batch_wait_ms``) form the
    next batch, scored in a worker thread; a batch of at most ``inline_samples`` images is
    scored on the event loop, which costs less than the hand-over (see
    :class:`reconad.serve.batching.MicroBatcher`)."""
    if not hasattr(detector, "threshold_"):
        raise ValueError("the detector is not fitted; serve a fitted or loaded model")
    kind = declared_kind(detector)
    takes_images = kind == "image"
    version = getattr(detector, "model_version_", None)
    # fixed-size image models (not patch mode, not feature models, which take any size)
    fixed_size = takes_images and hasattr(detector, "input_shape_") and \
        getattr(detector, "patch_size", None) is None
    channels = int(detector.input_shape_[0]) if takes_images and hasattr(detector, "input_shape_") else None
    batcher = None
    engine_name = None
    if fixed_size:
        engine_name, engine_fn = image_engine(detector, engine, threads)
        batcher = MicroBatcher(engine_fn, wait=batch_wait_ms / 1000.0, max_batch=max_batch,
                               inline_samples=inline_samples)

    def model_images(X: np.ndarray) -> np.ndarray:
        """Request images as float32 ``(N, H, W, C)`` in 0..1, checked against the model."""
        data = to_float_array(X, channels=channels)
        want = tuple(int(v) for v in detector.input_shape_[1:])
        if data.shape[2:] != want:
            raise ValueError(f"images are {data.shape[2]}x{data.shape[3]} but the model was trained on "
                             f"{want[0]}x{want[1]} (height x width)")
        return np.ascontiguousarray(data.transpose(0, 2, 3, 1))

    app = FastAPI(title="reconad scoring service", version=__version__, docs_url=None,
                  description="Anomaly scores, labels and maps from a fitted reconad model.")

    @app.get("/docs", include_in_schema=False)
    async def docs_page():
        return HTMLResponse(docs_html(app.title))

    @app.exception_handler(BadInput)
    async def _bad_input(request: Request, exc: BadInput):
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=headers)

    def check_token(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(value.strip().encode(), token.encode()):
            raise BadInput(401, "missing or wrong bearer token (send 'Authorization: Bearer <token>')")

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise BadInput(400, "invalid Content-Length header")
            if int(declared) > max_request_bytes:
                raise BadInput(413, f"request body of {int(declared)} bytes exceeds the limit of "
                                    f"{max_request_bytes} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_request_bytes:
                raise BadInput(413, f"request body exceeds the limit of {max_request_bytes} bytes")
            chunks.append(chunk)
        body = b"".join(chunks)
        if not body:
            raise BadInput(400, "empty request body")
        return body

    async def parse(request: Request, body: bytes):
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "application/json":
            try:
                payload = json.loads(body)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise BadInput(400, f"body is not valid JSON: {exc}") from None
            except RecursionError:
                raise BadInput(400, "body is not valid JSON: nested too deeply") from None
            if isinstance(payload, dict):
                if "instances" not in payload:
                    raise BadInput(422, "JSON object needs an 'instances' field (a list)")
                payload = payload["instances"]
            if not isinstance(payload, list) or not payload:
                raise BadInput(422, "'instances' must be a non-empty list")
            if len(payload) > max_batch:
                raise BadInput(413, f"batch of {len(payload)} exceeds the limit of {max_batch} samples")
            return _json_images(payload) if takes_images else _json_rows(payload)
        if ctype in ("text/csv", "application/csv"):
            if takes_images:
                raise BadInput(415, "this model takes images: send image files or JSON arrays, not CSV")
            try:
                frame = read_csv_bytes(body, "the CSV body")   # as the command line reads files
            except (UnicodeDecodeError, ValueError, pd.errors.ParserError) as exc:
                raise BadInput(422, f"cannot read CSV: {exc}") from None
            if frame.empty:
                raise BadInput(422, "CSV has no data rows")
            return frame
        if ctype == "multipart/form-data" or ctype.startswith("image/"):
            if not takes_images:
                raise BadInput(415, "this model takes rows: send JSON rows or CSV, not image files")
            if ctype.startswith("image/"):
                uploads = [("body", body)]
            else:
                uploads = await _multipart_files(request, body)
            if not uploads:
                raise BadInput(422, "no image files in the form")
            if len(uploads) > max_batch:
                raise BadInput(413, f"batch of {len(uploads)} exceeds the limit of {max_batch} samples")
            try:
                limit = detector.pixel_limit() if hasattr(detector, "pixel_limit") else None
                images = [decode_image(data, channels, name=name, max_pixels=limit) for name, data in uploads]
            except ValueError as exc:
                raise BadInput(422, str(exc)) from None
            shapes = {im.shape for im in images}
            if len(shapes) > 1:
                raise BadInput(422, f"uploaded images differ in size: {sorted(shapes)[:3]}")
            return stack_images(images)
        raise BadInput(415, f"unsupported content type {ctype or '(none)'!r}; send application/json, "
                            "text/csv, multipart/form-data or image/png")

    async def _multipart_files(request: Request, body: bytes) -> list[tuple[str, bytes]]:
        async def stream():
            yield body
            yield b""

        parser = MultiPartParser(Headers(raw=request.headers.raw), stream(), max_files=max_batch + 1,
                                 max_fields=max_batch + 1)
        try:
            form = await parser.parse()
        except MultiPartException as exc:
            raise BadInput(400, f"cannot read the form: {exc.message}") from None
        files = []
        for _, value in form.multi_items():
            if hasattr(value, "read"):
                files.append((value.filename or "upload", await value.read()))
        return files

    def score(X, want_map: bool) -> dict:
        scores = np.asarray(detector.decision_function(X), dtype=np.float64)
        maps = detector.anomaly_map(X) if want_map else None
        return answer(scores, maps)

    def answer(scores: np.ndarray, maps) -> dict:
        threshold = float(detector.threshold_)
        out: dict[str, Any] = {
            "n": int(scores.shape[0]),
            "scores": [None if not math.isfinite(s) else float(s) for s in scores],
            "labels": (scores > threshold).astype(int).tolist(),
            "threshold": threshold,
            "model_version": version,
        }
        if alerts is not None:
            named = {"model_version": version} if version else {}
            for i in np.flatnonzero(scores > threshold):
                alerts.submit({"kind": "anomaly", "source": "service", "index": int(i),
                               "score": float(scores[i]), "threshold": threshold, **named})
        if maps is not None:
            pngs = [_map_png(m) for m in maps]
            out["maps"] = [p for p, _ in pngs]
            out["map_max"] = [t for _, t in pngs]
        return out

    body_doc = {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"type": "object", "properties": {"instances": {"type": "array"}}},
                             "example": {"instances": [[[0, 255], [255, 0]]]}},
        "text/csv": {"schema": {"type": "string"}},
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
        "image/png": {"schema": {"type": "string", "format": "binary"}},
        "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
    }}}

    @app.post("/score", openapi_extra=body_doc,
              summary="Anomaly scores and labels (and maps for images) for a batch")
    async def score_endpoint(request: Request,
                             map: bool = Query(False, description="image models: add the anomaly maps as PNG")):
        check_token(request)
        if map and not takes_images:
            raise BadInput(422, "maps are only available for image models")
        body = await read_body(request)
        X = await parse(request, body)
        if len(X) > max_batch:
            raise BadInput(413, f"batch of {len(X)} exceeds the limit of {max_batch} samples")
        try:
            if batcher is not None and not map:
                # checked here, then scored in a batch with the other requests waiting
                scores = await batcher.score(model_images(X))
                out = answer(scores, None)
            else:
                out = await run_in_threadpool(score, X, map)
        except (ValueError, TypeError, KeyError) as exc:
            raise BadInput(422, str(exc).strip("'\"")) from None
        return Response(json.dumps(out), media_type="application/json")

    @app.get("/health", summary="Liveness")
    async def health():
        return {"status": "ok", "model_version": version}

    @app.get("/model", summary="What the model expects, and its metadata")
    async def model_info(request: Request):
        check_token(request)
        info: dict[str, Any] = {
            "name": model_name,
            "detector": type(detector).__name__,
            "model_version": version,
            "model": _catalogue_info(detector),
            "input": {"kind": kind},
            "threshold": float(detector.threshold_),
            "threshold_method": getattr(detector, "threshold_method_", None),
            "params": json.loads(json.dumps(detector.get_params(deep=False), default=str)),
            "limits": {"max_request_bytes": max_request_bytes, "max_batch": max_batch},
            "engine": engine_name or "python",
            "reconad_version": __version__,
        }
        if takes_images:
            if fixed_size:
                c, h, w = (int(v) for v in detector.input_shape_)
                info["input"].update({"height": h, "width": w, "channels": c})
            info["input"].update({"formats": ["image files (PNG, JPEG, ...) as multipart/form-data or "
                                              "image/png", "JSON arrays (N, H, W[, C]): integers "
                                              "0..255 or floats 0..1"]})
        else:
            info["input"]["formats"] = ["JSON rows (lists of numbers or column objects)", "CSV with a header"]
            if hasattr(detector, "feature_names_in_"):
                info["input"]["columns"] = [str(c) for c in detector.feature_names_in_]
            if hasattr(detector, "n_features_in_"):
                info["input"]["n_features"] = int(detector.n_features_in_)
        return info

    return app


def serve(model_path, host: str = "127.0.0.1", port: int = 8000, token: str | None = None,
          max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES, max_batch: int = DEFAULT_MAX_BATCH,
          threads: int | None = 1, log_level: str = "warning", alert_config=None, engine: str = "auto",
          batch_wait_ms: float = 0.0) -> None:
    """Load the model ``model_path`` names (a model folder, a registry folder for its current
    version, or ``REGISTRY@VERSION``) and serve it until interrupted. ``threads`` sets
    the torch threads for scoring (None keeps torch's default): one thread suits many
    small requests and avoids idle threads spinning on a busy CPU."""
    import torch
    import uvicorn

    from reconad.ops.loading import load_model

    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an integer 0..65535, got {port!r}")
    if threads is not None:
        torch.set_num_threads(int(threads))

    detector = load_model(model_path)
    dispatcher = None
    if alert_config is not None:
        from reconad.ops.alerts import AlertDispatcher

        dispatcher = AlertDispatcher(alert_config, defaults={"model_version": detector.model_version_})
    app = create_app(detector, token=token, max_request_bytes=max_request_bytes, max_batch=max_batch,
                     model_name=str(model_path), alerts=dispatcher, engine=engine,
                     batch_wait_ms=batch_wait_ms, threads=threads or 1)
    gc.collect()
    gc.freeze()  # the model and libraries stay out of later collections: no long pauses under load
    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
    finally:
        if dispatcher is not None:
            dispatcher.close(timeout=10)
