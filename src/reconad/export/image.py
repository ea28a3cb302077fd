"""``ImageDetector`` as one scoring graph: raw images in (uint8 or float, grayscale or
colour), a score, a label and optionally a per-pixel map out; see :mod:`reconad.export.graph`."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from reconad.detectors.image import ImageDetector
from reconad.export.graph import (ExportError, ScoringGraph, check_input_dtype, frozen_copy,
                                  register_exporter, script, trace_network)
from reconad.models.catalogue import entry
from reconad.models.gmm import gmm_score
from reconad.scoring import terms as scoring

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
    """``ExportError`` for a patch-mode model (the catalogue's ``exportable`` flag is
    checked for every detector by ``scoring_graph``)."""
    if detector.patch_size is not None:
        raise ExportError("a patch-mode model cannot be exported: it scores a grid of patches over "
                          "images of any size; export a whole-image model")


def _image_head(detector, score: str, with_map: bool) -> tuple[nn.Module, bool]:
    """The head module for ``detector``'s family and whether it gives a map."""
    network = frozen_copy(detector.model_)
    if entry("image", detector.model).family == "gan":
        return GANHead(network, with_map), with_map
    family = detector._family()
    if family == "gmm":
        return GMMHead(network, score), False
    if family == "vae":
        return VAEHead(network, score, detector.beta, with_map), with_map
    return ReconstructionHead(network, score, with_map), with_map


@register_exporter(ImageDetector)
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
