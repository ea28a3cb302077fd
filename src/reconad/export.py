"""Export a fitted detector as one graph that scores raw input: ONNX or TorchScript.

The exported graph does everything the detector does between raw input and answer:
the preprocessing (for images: uint8 to 0..1 scaling, channel conversion, layout), the
network, the score term, and the comparison with the stored threshold. It returns

* ``score``: float32 ``(N,)``, the anomaly score (higher = more anomalous),
* ``label``: int64 ``(N,)``, 1 where ``score > threshold`` (the comparison is done in
  float64, exactly as ``predict`` does),
* ``anomaly_map``: float32 ``(N, H, W)``, images only, as ``anomaly_map``.

Image detectors are exported here; series detectors in :mod:`reconad.export_series`
(one series ``(T, F)`` in, a score and label per step out) and table detectors in
:mod:`reconad.export_tabular` (numeric rows in). The threshold, score name, input shape
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

from reconad import scoring
from reconad._atomic import atomic_path
from reconad._version import __version__
from reconad.models.gmm import gmm_score

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



# --- images ---------------------------------------------------------------------------

_LUMA = (0.299, 0.587, 0.114)


def images_to_nchw(images: torch.Tensor, channels: int, luma: torch.Tensor) -> torch.Tensor:
    """Raw images ``(N, H, W)`` or ``(N, H, W, C)``, uint8 0..255 or float 0..1, to float
    ``(N, channels, H, W)`` as ``data.images.to_float_array`` does (scaling, 1 <-> 3
    channel conversion, layout). The division by 255 comes first, on the raw shape, and
    divides by a one-element tensor, not a scalar: ONNX Runtime's element-wise kernels
    are several times slower for a scalar or a trailing axis of length 1."""
    x = images
    if x.dtype == torch.uint8:
        x = x.to(torch.float32) / torch.full([1], 255.0, dtype=torch.float32)
    else:
        x = x.to(torch.float32)
    if x.dim() == 3:  # grayscale (N, H, W)
        x = x.unsqueeze(1)
        return x.repeat(1, 3, 1, 1) if channels == 3 else x
    if x.size(3) == 3 and channels == 1:
        return torch.matmul(x, luma).unsqueeze(1)
    if x.size(3) == 1:
        x = x.squeeze(3).unsqueeze(1)
        return x.repeat(1, 3, 1, 1) if channels == 3 else x
    return x.permute(0, 3, 1, 2).contiguous()


class ImageScorer(nn.Module):
    """Raw images to ``(score, label, anomaly_map)``: ``images_to_nchw``, then ``head``
    (a module mapping ``(N, C, H, W)`` in 0..1 to the score and the map), then the
    threshold."""

    def __init__(self, head: nn.Module, threshold: float, channels: int):
        super().__init__()
        self.head = head
        self.channels = channels
        self.register_buffer("threshold", torch.tensor(float(threshold), dtype=torch.float64))
        self.register_buffer("luma", torch.tensor(_LUMA, dtype=torch.float32))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        score, amap = self.head(images_to_nchw(images, self.channels, self.luma))
        label = (score.to(torch.float64) > self.threshold).to(torch.int64)
        return score, label, amap


class ImageScoreOnly(nn.Module):
    """As :class:`ImageScorer` without the map: raw images to ``(score, label)``; ``head``
    maps ``(N, C, H, W)`` to the score alone."""

    def __init__(self, head: nn.Module, threshold: float, channels: int):
        super().__init__()
        self.head = head
        self.channels = channels
        self.register_buffer("threshold", torch.tensor(float(threshold), dtype=torch.float64))
        self.register_buffer("luma", torch.tensor(_LUMA, dtype=torch.float32))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        score = self.head(images_to_nchw(images, self.channels, self.luma))
        label = (score.to(torch.float64) > self.threshold).to(torch.int64)
        return score, label


class ReconstructionHead(nn.Module):
    """Autoencoder: ``scoring.elementwise`` error, its per-sample aggregate (mean for
    ``mse``, else sum) and its sum over channels (the map)."""

    def __init__(self, network: nn.Module, score: str, with_map: bool):
        super().__init__()
        self.network, self.score, self.with_map = network, score, with_map

    def forward(self, x):
        err = scoring.elementwise(x, self.network(x), self.score)
        flat = err.flatten(1)
        score = flat.mean(1) if self.score == "mse" else flat.sum(1)
        return (score, err.sum(1)) if self.with_map else score


class VAEHead(nn.Module):
    """VAE (Gaussian or Bernoulli decoder): ``scoring.vae_per_sample`` and
    ``scoring.vae_pixel_map`` of the network's output for the chosen score term."""

    def __init__(self, network: nn.Module, score: str, beta: float, with_map: bool):
        super().__init__()
        self.network, self.score, self.beta, self.with_map = network, score, float(beta), with_map

    def forward(self, x):
        out = self.network(x)
        score = scoring.vae_per_sample(x, *out, self.score, beta=self.beta)
        if not self.with_map:
            return score
        return score, scoring.vae_pixel_map(x, *out, self.score, beta=self.beta).contiguous()


class GMMHead(nn.Module):
    """PCA + Gaussian mixture: ``gmm.gmm_score`` of the module's terms (no map)."""

    def __init__(self, network: nn.Module, score: str):
        super().__init__()
        self.network, self.score = network, score

    def forward(self, x):
        return gmm_score(self.network(x), self.score)


class GANHead(nn.Module):
    """f-AnoGAN: the encoder's code, the generator's image, ``score_terms``; the map is
    the squared difference summed over channels (as ``anomaly_map`` for GANs)."""

    def __init__(self, network: nn.Module, with_map: bool):
        super().__init__()
        self.network, self.with_map = network, with_map

    def forward(self, x):
        x_hat = self.network(x)
        score = self.network.score_terms(x, x_hat)
        return (score, (x - x_hat).square().sum(1)) if self.with_map else score


def _check_image_exportable(detector) -> None:
    """``ExportError`` with the reason for image models that cannot be exported."""
    from reconad import feature_detection

    if feature_detection.is_feature_model(detector.model):
        raise ExportError(f"model {detector.model!r} cannot be exported yet: its graph would need the "
                          "pretrained backbone, the antialiased resize of each image to its short side "
                          "(ONNX opset 17 has no antialiased resize), the feature pyramid, the head or "
                          "memory bank and the smoothing of the map; score it in Python, or export a "
                          "pixel model (conv_ae, conv_vae, gmm, ...)")
    if detector.patch_size is not None:
        raise ExportError("a patch-mode model cannot be exported: it scores a grid of patches over "
                          "images of any size; export a whole-image model")
    if detector.model == "anogan":
        raise ExportError("model 'anogan' cannot be exported: it finds each image's latent code "
                          "by gradient descent (Adam steps through the generator) when scoring, "
                          "which an inference graph cannot do; use 'fanogan', whose encoder gives "
                          "the code in one pass")


def _image_head(detector, score: str, with_map: bool) -> tuple[nn.Module, bool]:
    """The head module for ``detector``'s family and whether it gives a map."""
    from reconad.detectors import gan_image

    network = frozen_copy(detector.model_)
    if gan_image.is_gan(detector.model):
        return GANHead(network, with_map), with_map
    family = detector._family()
    if family == "gmm":
        return GMMHead(network, score), False
    if family == "vae":
        return VAEHead(network, score, detector.beta, with_map), with_map
    return ReconstructionHead(network, score, with_map), with_map


def _image_graph(detector, input_dtype: str | None, score: str | None = None, threshold: float = 0.0,
                 anomaly_map: bool = True) -> ScoringGraph:
    input_dtype = check_input_dtype(input_dtype, ("uint8", "float32"))
    _check_image_exportable(detector)
    c, h, w = detector.input_shape_
    own = detector._score_name()
    score = detector._score_name(score)
    if score != own and threshold == float(detector.threshold_):
        raise ExportError(f"score {score!r} differs from the detector's score {own!r}, whose threshold "
                          "is on another scale: pass a threshold for it, or set the score and "
                          "calibrate the detector before exporting "
                          f"(det.set_params(score={score!r}).calibrate(normal_images))")
    head, with_map = _image_head(detector, score, anomaly_map)
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, size=(2, h, w, c), dtype=np.uint8)
    net_example = torch.from_numpy(raw.astype(np.float32) / 255.0).permute(0, 3, 1, 2).contiguous()
    if c == 1:  # grayscale input is (N, H, W), as the arrays users hold
        raw = raw[..., 0]
    example = torch.from_numpy(raw if input_dtype == "uint8" else raw.astype(np.float32) / 255.0)
    wrapper = ImageScorer if with_map else ImageScoreOnly
    module = wrapper(head, threshold, c).eval()
    script_module = script(wrapper(trace_network(head, net_example), threshold, c),
                           f"model {detector.model!r}")
    outputs = ("score", "label", "anomaly_map") if with_map else ("score", "label")
    meta = {"model": detector.model, "score": score, "input_shape": list(example.shape[1:]),
            "channels": c}
    return ScoringGraph(module, script_module, example, outputs, meta)


def _register_builtin() -> None:
    from reconad import export_series, export_tabular  # noqa: F401  (they register themselves)
    from reconad.detectors.image import ImageDetector

    register_exporter(ImageDetector)(_image_graph)


_register_builtin()
