"""Export a fitted detector as one graph that scores raw input: ONNX or TorchScript.

The exported graph does everything the detector does between raw input and answer:
the preprocessing (for images: uint8 to 0..1 scaling, channel conversion, layout), the
network, the score term, and the comparison with the stored threshold. It returns

* ``score``: float32 ``(N,)``, the anomaly score (higher = more anomalous),
* ``label``: int64 ``(N,)``, 1 where ``score > threshold`` (the comparison is done in
  float64, exactly as ``predict`` does),
* ``anomaly_map``: float32 ``(N, H, W)``, images only, as ``anomaly_map``.

The threshold, score name, input shape and versions are also stored as metadata (ONNX
``metadata_props``; TorchScript ``extra_files["reconad.json"]``).

Protocol for a detector family
------------------------------
Export is a registry keyed by detector class. A family adds one function::

    @register_exporter(MyDetector)
    def _my_graph(detector, input_dtype: str) -> ScoringGraph:
        ...

that returns a :class:`ScoringGraph`:

``module``
    a pure ``nn.Module`` (no NumPy, no Python-side state) mapping the raw input tensor
    to ``(score, label)`` or ``(score, label, anomaly_map)``; built from a copy of the
    fitted network plus the detector's preprocessing constants (scaler mean and scale,
    window length, ...) stored as buffers. It is exported to ONNX by tracing with
    ``example``, so its branches may depend on the example's dtype and rank.
``script_module``
    the same computation as a ``torch.jit.ScriptModule``; usually the same wrapper
    class around ``trace_network(network, example)``, scripted with ``torch.jit.script``
    so that its input checks and dtype branches stay live.
``example``
    a raw input batch of the declared dtype and shape (its first axis is dynamic).
``output_names``, ``metadata``
    names of the outputs in order; JSON-able facts about the model.

A family that cannot be exported raises :class:`ExportError` with the reason; a
detector class without a registered exporter gets an ``ExportError`` naming it.
``tests/test_export.py`` checks parity (ONNX Runtime and TorchScript against the
Python detector, relative difference <= 1e-5, same labels) for every family listed in
its ``FAMILIES`` table; a new family adds a row there.

ONNX files are written with the TorchScript-based exporter
(``torch.onnx.export(..., dynamo=False)``, opset 17), which needs only the ``onnx``
package and works offline.
"""

from __future__ import annotations

import copy
import io
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from reconad._atomic import atomic_path
from reconad._version import __version__

FORMATS = ("onnx", "torchscript")
INPUT_DTYPES = ("uint8", "float32")
OPSET = 17
INPUT_NAME = "input"


class ExportError(ValueError):
    """A detector or model family that cannot be exported, with the reason."""


@dataclass
class ScoringGraph:
    """What an exporter returns; see the module docstring."""

    module: nn.Module
    script_module: torch.jit.ScriptModule
    example: torch.Tensor
    output_names: tuple[str, ...]
    metadata: dict = field(default_factory=dict)


_EXPORTERS: dict[type, Callable[..., ScoringGraph]] = {}


def register_exporter(detector_cls: type):
    """Decorator: register ``f(detector, input_dtype) -> ScoringGraph`` for a detector class."""

    def deco(fn):
        _EXPORTERS[detector_cls] = fn
        return fn

    return deco


def trace_network(network: nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
    """Trace a fitted network (a pure module with tensor in, tensor(s) out) for scripting
    into a wrapper; raises ``ExportError`` when it cannot be traced."""
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.trace(network, example, check_trace=False)
    except Exception as exc:  # tracing failures come as many exception types
        raise ExportError(f"the network {type(network).__name__} cannot be traced: {exc}") from None


def scoring_graph(detector, input_dtype: str = "uint8") -> ScoringGraph:
    """The exportable scoring graph of a fitted ``detector``."""
    from sklearn.exceptions import NotFittedError

    if input_dtype not in INPUT_DTYPES:
        raise ValueError(f"unknown input dtype {input_dtype!r}; choose one of {', '.join(INPUT_DTYPES)}")
    if not hasattr(detector, "threshold_"):
        raise NotFittedError(f"this {type(detector).__name__} is not fitted yet; fit or load it first")
    for cls in type(detector).__mro__:
        if cls in _EXPORTERS:
            graph = _EXPORTERS[cls](detector, input_dtype)
            graph.metadata = {
                "detector": type(detector).__name__,
                "threshold": float(detector.threshold_),
                "input_dtype": input_dtype,
                "outputs": list(graph.output_names),
                "reconad_version": __version__,
                "torch_version": torch.__version__,
                **graph.metadata,
            }
            return graph
    known = ", ".join(sorted(c.__name__ for c in _EXPORTERS)) or "none"
    raise ExportError(f"{type(detector).__name__} cannot be exported: no exporter is registered "
                      f"for it (exportable detectors: {known})")


def export(detector, path: str | os.PathLike, format: str = "onnx", input_dtype: str = "uint8") -> Path:
    """Write the scoring graph of ``detector`` to ``path`` as ``format`` (``"onnx"`` or
    ``"torchscript"``); returns the path. The ONNX graph takes input of ``input_dtype``
    only; the TorchScript module takes uint8 or float input, as the detector does."""
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    graph = scoring_graph(detector, input_dtype)
    path = Path(path)
    if format == "onnx":
        data = _onnx_bytes(graph)
    else:
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is still supported
            torch.jit.save(graph.script_module, buf,
                           _extra_files={"reconad.json": json.dumps(graph.metadata)})
        data = buf.getvalue()
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def _onnx_bytes(graph: ScoringGraph) -> bytes:
    try:
        import onnx
    except ImportError:
        raise ExportError("ONNX export needs the onnx package: pip install 'reconad[export]'") from None
    buf = io.BytesIO()
    dynamic = {INPUT_NAME: {0: "batch"}, **{name: {0: "batch"} for name in graph.output_names}}
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer notes on the resolved input branches
            torch.onnx.export(graph.module, (graph.example,), buf, input_names=[INPUT_NAME],
                              output_names=list(graph.output_names), dynamic_axes=dynamic,
                              opset_version=OPSET, dynamo=False)
    except Exception as exc:  # the exporter raises many types for unsupported operations
        raise ExportError(f"{graph.metadata.get('detector')} model cannot be written as ONNX: {exc}") from None
    model = onnx.load_from_string(buf.getvalue())
    for key, value in graph.metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    model.producer_name = "reconad"
    model.producer_version = __version__
    return model.SerializeToString()


def load_torchscript(path: str | os.PathLike) -> tuple[torch.jit.ScriptModule, dict]:
    """Load an exported TorchScript file and its metadata."""
    extra = {"reconad.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return module, json.loads(extra["reconad.json"] or "{}")


# --- images ---------------------------------------------------------------------------

_LUMA = (0.299, 0.587, 0.114)


class ImageScorer(nn.Module):
    """Raw images ``(N, H, W)`` or ``(N, H, W, C)``, uint8 0..255 or float 0..1, to
    ``(score, label, anomaly_map)`` with a fitted image autoencoder.

    Mirrors ``ImageDetector``: ``data.images.to_float_array`` (scaling, 1 <-> 3 channel
    conversion, NCHW), the network, and ``scoring.per_sample`` / ``scoring.pixel_map``.
    """

    def __init__(self, network: nn.Module, score: str, threshold: float, channels: int):
        super().__init__()
        self.network = network
        self.score = score
        self.channels = channels
        self.register_buffer("threshold", torch.tensor(float(threshold), dtype=torch.float64))
        self.register_buffer("luma", torch.tensor(_LUMA, dtype=torch.float32))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = images
        if x.dim() == 3:
            x = x.unsqueeze(3)
        if x.dtype == torch.uint8:
            x = x.to(torch.float32) / 255.0
        else:
            x = x.to(torch.float32)
        if x.size(3) == 1 and self.channels == 3:
            x = x.repeat(1, 1, 1, 3)
        elif x.size(3) == 3 and self.channels == 1:
            x = torch.matmul(x, self.luma).unsqueeze(3)
        x = x.permute(0, 3, 1, 2).contiguous()
        rec = self.network(x)
        if self.score == "l1":
            err = (x - rec).abs()
        elif self.score == "mse":
            err = (x - rec).square()
        else:
            p = rec.clamp(1e-7, 1 - 1e-7)  # as scoring.elementwise
            err = -(x * p.log() + (1 - x) * (1 - p).log())
        flat = err.flatten(1)
        if self.score == "mse":
            score = flat.mean(1)
        else:
            score = flat.sum(1)
        label = (score.to(torch.float64) > self.threshold).to(torch.int64)
        return score, label, err.sum(1)


def _image_graph(detector, input_dtype: str) -> ScoringGraph:
    c, h, w = detector.input_shape_
    score = detector._score_name()
    network = copy.deepcopy(detector.model_).cpu().eval()
    for p in network.parameters():
        p.requires_grad_(False)
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, size=(2, h, w, c), dtype=np.uint8)
    net_example = torch.from_numpy(raw.astype(np.float32) / 255.0).permute(0, 3, 1, 2)
    if c == 1:  # grayscale input is (N, H, W), as the arrays users hold
        raw = raw[..., 0]
    example = torch.from_numpy(raw if input_dtype == "uint8" else raw.astype(np.float32) / 255.0)
    module = ImageScorer(network, score, detector.threshold_, c).eval()
    traced = trace_network(network, net_example)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            script = torch.jit.script(ImageScorer(traced, score, detector.threshold_, c).eval())
    except Exception as exc:
        raise ExportError(f"model {detector.model!r} cannot be scripted: {exc}") from None
    meta = {"model": detector.model, "score": score, "input_shape": list(example.shape[1:]),
            "channels": c}
    return ScoringGraph(module, script, example, ("score", "label", "anomaly_map"), meta)


def _register_builtin() -> None:
    from reconad.detectors.image import ImageDetector

    register_exporter(ImageDetector)(_image_graph)


_register_builtin()
