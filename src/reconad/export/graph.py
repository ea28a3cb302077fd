"""Export a fitted detector as one graph that scores raw input: ONNX or TorchScript.

The exported graph does everything the detector does between raw input and answer:
the preprocessing (for images: uint8 to 0..1 scaling, channel conversion, layout), the
network, the score term, and the comparison with the stored threshold. It returns

* ``score``: float32 ``(N,)``, the anomaly score (higher = more anomalous),
* ``label``: int64 ``(N,)``, 1 where ``score > threshold`` (the comparison is done in
  float64, exactly as ``predict`` does),
* ``anomaly_map``: float32 ``(N, H, W)``, images only, as ``anomaly_map``.

Image detectors are exported here; series detectors in :mod:`reconad.export.series`
(one series ``(T, F)`` in, a score and label per step out) and table detectors in
:mod:`reconad.export.table` (numeric rows in). The threshold, score name, input shape
and versions are also stored as metadata (ONNX ``metadata_props``; TorchScript
``extra_files["reconad.json"]``).

Protocol for a detector family
------------------------------
Export is a registry keyed by detector class. A family adds one function::

    @register_exporter(MyDetector)
    def _my_graph(detector, input_dtype, score=None, threshold=0.0, anomaly_map=True) -> ScoringGraph:
        ...

(``input_dtype`` None means the family's default, see :func:`check_input_dtype`;
``threshold`` is the one the labels use; ``score`` and ``anomaly_map`` are the user's
options, which a family without them refuses or ignores)

that returns a :class:`ScoringGraph`:

``module``
    a pure ``nn.Module`` (no NumPy, no Python-side state) mapping the raw input tensor
    to ``(score, label)`` or ``(score, label, anomaly_map)``; built from a copy of the
    fitted network plus the detector's preprocessing constants (scaler mean and scale,
    window length, ...) stored as buffers. It is exported to ONNX by tracing with
    ``example``, so its branches may depend on the example's dtype and rank. A graph
    that needs a loop (series: windows scored in chunks) passes its ``script_module``
    here, which the exporter converts as scripted (loops stay loops).
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
package and works offline. Graphs are built for ONNX Runtime's fast paths: element-wise
operations on the raw shape with one-element constants, no ``Softplus`` node (see
:func:`_fast_softplus`), 1-D convolutions as 2-D ones.
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
from reconad.models.catalogue import KINDS, entry

FORMATS = ("onnx", "torchscript")
INPUT_DTYPES = ("uint8", "float32", "float64")
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
    first_axis: str = "batch"  # name of the input's dynamic first axis (and the outputs')


_EXPORTERS: dict[type, Callable[..., ScoringGraph]] = {}


def register_exporter(detector_cls: type):
    """Decorator: register ``f(detector, input_dtype, score, anomaly_map) -> ScoringGraph``
    for a detector class (``input_dtype`` None means the family's default)."""

    def deco(fn):
        _EXPORTERS[detector_cls] = fn
        return fn

    return deco


def trace_network(network: nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
    """Trace a fitted network (a pure module with tensor in, tensor(s) out) for scripting
    into a wrapper; raises ``ExportError`` when it cannot be traced."""
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecation and tracer notes
            return torch.jit.trace(network, example, check_trace=False)
    except Exception as exc:  # tracing failures come as many exception types
        raise ExportError(f"the network {type(network).__name__} cannot be traced: {exc}") from None


def script(module: nn.Module, what: str) -> torch.jit.ScriptModule:
    """``torch.jit.script(module)`` with an ``ExportError`` naming ``what`` on failure."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.script(module.eval())
    except Exception as exc:
        raise ExportError(f"{what} cannot be scripted: {exc}") from None


def frozen_copy(network: nn.Module) -> nn.Module:
    """A CPU copy of a fitted network in evaluation mode, without gradients."""
    network = copy.deepcopy(network).cpu().eval()
    for p in network.parameters():
        p.requires_grad_(False)
    return network


def check_input_dtype(input_dtype: str | None, allowed: tuple[str, ...]) -> str:
    """``input_dtype`` checked against ``allowed``; None gives the first (the default)."""
    if input_dtype is None:
        return allowed[0]
    if input_dtype not in allowed:
        raise ValueError(f"unknown input dtype {input_dtype!r} for this model; choose one of "
                         f"{', '.join(allowed)}")
    return input_dtype


# why models the catalogue marks as not exportable cannot be: by (kind, name), then (kind, family)
NOT_EXPORTABLE = {
    ("image", "features"): " yet: its graph would need the pretrained backbone, the antialiased resize "
                           "of each image to its short side (ONNX opset 17 has no antialiased resize), "
                           "the feature pyramid, the head or memory bank and the smoothing of the map; "
                           "score it in Python, or export a pixel model (conv_ae, conv_vae, gmm, ...)",
    ("image", "anogan"): ": it finds each image's latent code by gradient descent (Adam steps through "
                         "the generator) when scoring, which an inference graph cannot do; use "
                         "'fanogan', whose encoder gives the code in one pass",
}


def _check_catalogue(detector) -> None:
    """``ExportError`` naming the reason when the detector's model is not exportable."""
    kind, name = getattr(detector, "kind", None), getattr(detector, "model", None)
    if kind not in KINDS or not isinstance(name, str):
        return  # not a catalogue model: the exporter registry decides
    model = entry(kind, name)
    if not model.exportable:
        why = (NOT_EXPORTABLE.get((kind, name)) or NOT_EXPORTABLE.get((kind, model.family))
               or ": the model catalogue marks it as not exportable")
        raise ExportError(f"{kind} model {name!r} cannot be exported{why}")


def scoring_graph(detector, input_dtype: str | None = None, score: str | None = None,
                  threshold: float | None = None, anomaly_map: bool = True) -> ScoringGraph:
    """The exportable scoring graph of a fitted ``detector``.

    ``score`` picks another score term (image models; the detector's by default);
    ``threshold`` replaces the stored one (needed when ``score`` differs from the
    detector's, whose threshold is on another scale); ``anomaly_map=False`` leaves the
    map output out of image graphs."""
    from sklearn.exceptions import NotFittedError

    if input_dtype is not None and input_dtype not in INPUT_DTYPES:
        raise ValueError(f"unknown input dtype {input_dtype!r}; choose one of {', '.join(INPUT_DTYPES)}")
    if not hasattr(detector, "threshold_"):
        raise NotFittedError(f"this {type(detector).__name__} is not fitted yet; fit or load it first")
    _check_catalogue(detector)
    for cls in type(detector).__mro__:
        if cls in _EXPORTERS:
            if threshold is None:
                threshold = float(detector.threshold_)
            graph = _EXPORTERS[cls](detector, input_dtype, score=score, threshold=float(threshold),
                                    anomaly_map=anomaly_map)
            graph.metadata = {
                "detector": type(detector).__name__,
                "threshold": float(threshold),
                "input_dtype": str(graph.example.dtype).replace("torch.", ""),
                "outputs": list(graph.output_names),
                "reconad_version": __version__,
                "torch_version": torch.__version__,
                **graph.metadata,
            }
            return graph
    known = ", ".join(sorted(c.__name__ for c in _EXPORTERS)) or "none"
    raise ExportError(f"{type(detector).__name__} cannot be exported: no exporter is registered "
                      f"for it (exportable detectors: {known})")


def export(detector, path: str | os.PathLike, format: str = "onnx", input_dtype: str | None = None,
           score: str | None = None, threshold: float | None = None, anomaly_map: bool = True) -> Path:
    """Write the scoring graph of ``detector`` to ``path`` as ``format`` (``"onnx"`` or
    ``"torchscript"``); returns the path.

    ``input_dtype``: the ONNX input type; None takes the family's default (``uint8`` for
    images, ``float32`` for series, ``float64`` for tables). The TorchScript module
    takes any of them. ``score``, ``threshold``, ``anomaly_map``: see ``scoring_graph``."""
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    if Path(path).is_dir():
        raise ValueError(f"export output {path} is a folder; give a file name such as {Path(path) / 'model.onnx'}")
    graph = scoring_graph(detector, input_dtype, score=score, threshold=threshold, anomaly_map=anomaly_map)
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
    axis = graph.first_axis
    dynamic = {INPUT_NAME: {0: axis}, **{name: {0: axis} for name in graph.output_names}}
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer notes on the resolved input branches
            torch.onnx.export(graph.module, (graph.example,), buf, input_names=[INPUT_NAME],
                              output_names=list(graph.output_names), dynamic_axes=dynamic,
                              opset_version=OPSET, dynamo=False)
    except Exception as exc:  # the exporter raises many types for unsupported operations
        raise ExportError(f"{graph.metadata.get('detector')} model cannot be written as ONNX: {exc}") from None
    model = _fast_softplus(onnx.load_from_string(buf.getvalue()))
    for key, value in graph.metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    model.producer_name = "reconad"
    model.producer_version = __version__
    return model.SerializeToString()


def _fast_softplus(model):
    """Each ``Softplus`` node replaced by ``relu(z) + log(1 + exp(-|z|))``: the same values
    to float32 rounding, and about 20 times faster in ONNX Runtime, whose ``Softplus``
    kernel is not vectorised (it dominated the VAE graphs)."""
    import onnx
    from onnx import helper

    nodes = []
    for i, node in enumerate(model.graph.node):
        if node.op_type != "Softplus":
            nodes.append(node)
            continue
        z, y, p = node.input[0], node.output[0], f"softplus_{i}"
        one = helper.make_node("Constant", [], [f"{p}_one"], value=helper.make_tensor(
            f"{p}_one_value", onnx.TensorProto.FLOAT, [1], [1.0]))
        nodes += [one,
                  helper.make_node("Abs", [z], [f"{p}_abs"]),
                  helper.make_node("Neg", [f"{p}_abs"], [f"{p}_neg"]),
                  helper.make_node("Exp", [f"{p}_neg"], [f"{p}_exp"]),
                  helper.make_node("Add", [f"{p}_exp", f"{p}_one"], [f"{p}_sum"]),
                  helper.make_node("Log", [f"{p}_sum"], [f"{p}_log"]),
                  helper.make_node("Relu", [z], [f"{p}_relu"]),
                  helper.make_node("Add", [f"{p}_relu", f"{p}_log"], [y])]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


def load_torchscript(path: str | os.PathLike) -> tuple[torch.jit.ScriptModule, dict]:
    """Load an exported TorchScript file and its metadata."""
    extra = {"reconad.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return module, json.loads(extra["reconad.json"] or "{}")
