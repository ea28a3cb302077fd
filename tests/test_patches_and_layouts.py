"""Patch mode, anomaly maps, localisation metrics and folder layouts."""

import numpy as np
import pytest
import torch
from PIL import Image

from reconad import ImageDetector, load
from reconad.scoring import patches
from reconad.data import layouts
from reconad.evaluation.metrics import aupro, localization_metrics
from reconad.models.inference import SubPixelTransposedConv, fast_inference_copy


def _texture(rng, h, w):
    """Smooth stripes with noise: a simple normal surface."""
    cols = 0.5 + 0.15 * np.sin(np.arange(w) / 3.0 + rng.uniform(0, 6))
    return np.clip(cols[None, :] + rng.normal(0, 0.03, (h, w)), 0, 1).astype(np.float32)


def test_scores_to_map_is_mean_of_covering_patches():
    rng = np.random.default_rng(0)
    h, w, size, stride = 13, 17, 5, 3
    rows, cols = patches.grid_shape(h, w, size, stride)
    grid = rng.random((rows, cols))
    total, count = np.zeros((rows * stride + size, cols * stride + size)), np.zeros((rows * stride + size, cols * stride + size))
    for i in range(rows):
        for j in range(cols):
            total[i * stride:i * stride + size, j * stride:j * stride + size] += grid[i, j]
            count[i * stride:i * stride + size, j * stride:j * stride + size] += 1
    expected = total[:h, :w] / count[:h, :w]
    np.testing.assert_allclose(patches.scores_to_map(grid, size, stride, h, w), expected)


def test_grid_batches_match_direct_crops():
    img = torch.rand(1, 20, 23)
    got = torch.cat(list(patches.iter_grid_batches(img, 8, 4, batch_size=7)))
    rows, cols = patches.grid_shape(20, 23, 8, 4)
    assert got.shape == (rows * cols, 1, 8, 8)
    padded = patches.pad_to_grid(img, 8, 4)
    torch.testing.assert_close(got[cols + 2], padded[:, 4:12, 8:16])


def test_map_has_input_size_and_peaks_on_planted_defect(tmp_path):
    rng = np.random.default_rng(0)
    train = [_texture(rng, int(rng.integers(40, 56)), int(rng.integers(40, 64))) for _ in range(30)]
    det = ImageDetector(model="gmm", latent_dim=2, model_kwargs={"pca_components": 8}, patch_size=12,
                        stride=4, patches_per_image=40, verbose=0).fit(train)
    normal = _texture(rng, 50, 61)
    defect = normal.copy()
    defect[30:36, 40:46] = 1.0
    maps = det.anomaly_map([normal, defect, defect[:45, :52]], stride=2)
    assert [m.shape for m in maps] == [(50, 61), (50, 61), (45, 52)]
    peak = np.unravel_index(np.argmax(maps[1]), maps[1].shape)
    assert 24 <= peak[0] <= 41 and 34 <= peak[1] <= 51
    scores = det.decision_function([normal, defect])
    assert scores[1] > scores[0] and scores[1] > det.threshold_
    top = ImageDetector(**{**det.get_params(), "patch_aggregate": "topk", "top_k": 3})
    assert top.fit(train).decision_function([defect]).shape == (1,)
    det.save(tmp_path / "m")
    np.testing.assert_allclose(load(tmp_path / "m").anomaly_map([defect], stride=2)[0], maps[1], rtol=1e-6)


def test_patch_scores_and_maps_at_the_scoring_stride_take_one_pass(tmp_path, monkeypatch):
    """In patch mode, scores and maps at the model's own stride come from one pass over the
    patch grid and equal the two separate calls; at another stride, two passes; and
    ``reconad evaluate`` maps at the model's stride unless told otherwise."""
    from typer.testing import CliRunner

    from reconad.cli.app import app
    from reconad.detectors.image_families import Reconstruction

    rng = np.random.default_rng(2)
    train = [_texture(rng, 48, 56) for _ in range(20)]
    det = ImageDetector(model="conv_ae", epochs=2, latent_dim=4, width=8, patch_size=16, stride=8,
                        patches_per_image=16, verbose=0).fit(train)
    images = [_texture(rng, 48, 56) for _ in range(3)]
    images[1][20:26, 30:36] = 1.0
    expected = det.decision_function(images), det.anomaly_map(images, stride=8, sigma=1.5)
    passes = []
    real = Reconstruction.patch_grids
    monkeypatch.setattr(Reconstruction, "patch_grids",
                        lambda self, d, ims, score, stride: passes.append(stride) or real(self, d, ims, score, stride))
    scores, maps = det.scores_and_maps(images, stride=8, sigma=1.5)
    assert passes == [8]
    np.testing.assert_array_equal(scores, expected[0])
    np.testing.assert_array_equal(maps, expected[1])
    passes.clear()
    det.scores_and_maps(images, stride=4)
    assert sorted(passes) == [4, 8]
    # the command line: maps at the model's stride by default
    det.save(tmp_path / "m")
    for name, folder in (("good", 0), ("bad", 1)):
        (tmp_path / name).mkdir()
        for i, im in enumerate(images[folder:folder + 2]):
            Image.fromarray((im * 255).astype(np.uint8)).save(tmp_path / name / f"{i}.png")
    passes.clear()
    out = CliRunner().invoke(app, ["evaluate", "--model", str(tmp_path / "m"), "--normal", str(tmp_path / "good"),
                                   "--anomalous", str(tmp_path / "bad"), "--out", str(tmp_path / "e")])
    assert out.exit_code == 0, out.output
    assert set(passes) == {8}


def test_patch_vae_trains_and_maps_images_of_any_size():
    rng = np.random.default_rng(1)
    train = [_texture(rng, 40, int(rng.integers(40, 50))) for _ in range(8)]
    det = ImageDetector(model="conv_vae", latent_dim=4, width=4, depth=2, epochs=1, patch_size=16, stride=8,
                        patches_per_image=8, verbose=0).fit(train)
    maps = det.anomaly_map(train[:2], score="elbo", stride=4)
    assert [m.shape for m in maps] == [im.shape for im in train[:2]]
    grids = det.patch_scores(train[:1])
    assert grids[0].shape == patches.grid_shape(*train[0].shape, 16, 8)
    with pytest.raises(ValueError, match="smaller than patch_size"):
        det.decision_function([np.zeros((10, 30), np.float32)])


def test_patch_grid_scores_match_the_training_network():
    """The grid is scored by a fast copy (batch norm folded, channels-last); its scores
    equal those of the trained network on the same crops, which stays untouched."""
    from torch import nn

    rng = np.random.default_rng(2)
    train = [_texture(rng, 48, 52) for _ in range(8)]
    det = ImageDetector(model="paper_vae", latent_dim=4, width=4, depth=3, epochs=2, patch_size=24, stride=8,
                        patches_per_image=16, verbose=0, random_state=0).fit(train)
    bns = [m for m in det.model_.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(float(b.running_var.std()) > 0 for b in bns)  # non-trivial statistics to fold
    fast = fast_inference_copy(det.model_)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    image = train[0].copy()
    image[20:26, 30:36] = 1.0
    grid = det.patch_scores([image], score="elbo", stride=4)[0]
    crops = torch.cat(list(patches.iter_grid_batches(torch.from_numpy(image)[None], 24, 4)))
    det.model_.eval()
    with torch.no_grad():
        direct = det._strategy().score_fn(det, "elbo")(crops, det.model_(crops)).numpy()
    np.testing.assert_allclose(grid.ravel(), direct, rtol=1e-5)
    assert any(isinstance(m, nn.BatchNorm2d) for m in det.model_.modules())
    assert det.model_.features[0].weight.is_contiguous()
    assert any(isinstance(m, SubPixelTransposedConv) for m in fast.modules())  # the output layer
    assert not any(isinstance(m, SubPixelTransposedConv) for m in det.model_.modules())


@pytest.mark.parametrize("kernel, padding, output_padding, size", [
    (4, 1, 0, (12, 12)),        # the paper VAE's layers
    (3, 1, 1, (7, 9)),          # conv_ae / conv_vae, even output
    (3, 1, 0, (7, 9)),          # odd output
    (4, 1, 1, (5, 6)),
    (5, 2, 1, (4, 4)),
    ((3, 4), (1, 2), (0, 1), (5, 6)),
    (4, 1, 0, (1, 1)),
])
def test_sub_pixel_convolution_equals_transposed_convolution(kernel, padding, output_padding, size):
    torch.manual_seed(0)
    deconv = torch.nn.ConvTranspose2d(6, 3, kernel, stride=2, padding=padding, output_padding=output_padding)
    sub = SubPixelTransposedConv(deconv)
    for x in (torch.randn(4, 6, *size), torch.randn(4, 6, *size).contiguous(memory_format=torch.channels_last)):
        expected = deconv(x)
        got = sub(x)
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_sub_pixel_convolution_keeps_the_layers_dtype_and_device():
    torch.manual_seed(0)
    deconv = torch.nn.ConvTranspose2d(4, 2, 4, stride=2, padding=1).double()
    sub = SubPixelTransposedConv(deconv)
    assert sub.conv.weight.dtype == torch.float64 and sub.conv.weight.device == deconv.weight.device
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(sub(x), deconv(x), rtol=1e-12, atol=1e-12)


def test_localization_metrics_perfect_and_random():
    rng = np.random.default_rng(0)
    masks = [np.zeros((20, 20), bool) for _ in range(3)]
    masks[0][2:6, 2:6] = True
    masks[1][10:12, 5:15] = True
    perfect = [m.astype(float) + rng.random(m.shape) * 0.1 for m in masks]
    m = localization_metrics(masks, perfect)
    assert m["pixel_roc_auc"] == pytest.approx(1.0) and m["aupro"] == pytest.approx(1.0, abs=1e-6)
    noise = [rng.random(k.shape) for k in masks]
    assert 0.0 <= aupro(masks, noise) < 0.3


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pixel_roc_auc_counts_ties_as_roc_auc_score_does(dtype):
    """The pixel ROC-AUC, counted against the sorted defect-free scores, equals scikit-learn's
    over all pixels, with many tied scores and maps of different sizes."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    masks, maps = [], []
    for h, w in ((30, 50), (41, 17), (64, 64)):
        k = np.zeros((h, w), bool)
        k[h // 4:h // 2, w // 3:w // 2 + 3] = True
        masks.append(k)
        maps.append(np.round(rng.normal(size=(h, w)) + 1.2 * k, 1).astype(dtype))  # rounded: ties
    expected = roc_auc_score(np.concatenate([k.ravel() for k in masks]), np.concatenate([m.ravel() for m in maps]))
    assert localization_metrics(masks, maps)["pixel_roc_auc"] == pytest.approx(expected, abs=1e-12)


def test_aupro_of_float32_maps_is_that_of_their_float64_values_without_a_wider_copy():
    """AUPRO's thresholds compared with float32 scores as the lowest float32 at or above each:
    the same value as for the maps' exact float64 copies, and no float64 copy of the sorted
    defect-free scores (the peak allocation stays well below the maps' own size)."""
    import tracemalloc

    rng = np.random.default_rng(3)
    masks, maps = [], []
    for i in range(6):
        k = np.zeros((400, 500), bool)
        if i % 2:
            k[50 + 40 * i:120 + 40 * i, 60:200] = True
            k[300:305, 100:400] = True  # a thin second region
        masks.append(k)
        maps.append(np.round(rng.normal(size=k.shape) + 1.5 * k, 2).astype(np.float32))  # ties
    wide = aupro(masks, [m.astype(np.float64) for m in maps])
    tracemalloc.start()
    narrow = aupro(masks, maps)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert narrow == wide
    assert 0.3 < narrow < 1.0
    # the sorted defect-free scores (float32) take about the maps' size; a float64 copy of them twice that
    assert peak < 2 * sum(m.nbytes for m in maps)


def _png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_mvtec_layout(tmp_path):
    img = np.full((8, 8), 128, np.uint8)
    for i in range(3):
        _png(tmp_path / "train" / "good" / f"{i:03d}.png", img)
    _png(tmp_path / "test" / "good" / "000.png", img)
    _png(tmp_path / "test" / "crack" / "000.png", img)
    _png(tmp_path / "test" / "crack" / "001.png", img)
    _png(tmp_path / "ground_truth" / "crack" / "000_mask.png", np.eye(8, dtype=np.uint8) * 255)
    train, test = layouts.mvtec(tmp_path)
    assert len(train) == 3
    assert test.labels == [1, 1, 0] and test.types == ["crack", "crack", "good"]
    assert test.masks[0].name == "000_mask.png" and test.masks[1] is None and not test.has_masks
    mask = layouts.read_mask(test.masks[0], (8, 8))
    assert mask.dtype == bool and mask.sum() == 8


def test_masks_of_0_and_1_palettes_and_compression_noise_read_alike(tmp_path):
    """Masks written as 0/255, as 0/1, as palette indices or as a JPEG (faint noise around
    the defect) give the same defect pixels; an all-zero mask gives none."""
    truth = np.zeros((32, 32), bool)
    truth[8:20, 10:26] = True
    Image.fromarray(truth.astype(np.uint8) * 255).save(tmp_path / "255.png")
    Image.fromarray(truth.astype(np.uint8)).save(tmp_path / "01.png")
    palette = Image.fromarray(truth.astype(np.uint8), mode="L").convert("P")
    palette.putpalette([0, 0, 0, 128, 0, 0] + [0] * 762)  # index 1: dark red
    palette.save(tmp_path / "palette.png")
    Image.fromarray(truth.astype(np.uint8) * 255).save(tmp_path / "noisy.jpg", quality=60)
    for name in ("255.png", "01.png", "palette.png"):
        np.testing.assert_array_equal(layouts.read_mask(tmp_path / name, (32, 32)), truth, err_msg=name)
    noisy = layouts.read_mask(tmp_path / "noisy.jpg", (32, 32))
    assert (noisy == truth).mean() > 0.98
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "none.png")
    assert not layouts.read_mask(tmp_path / "none.png", (32, 32)).any()


def test_plain_layout_with_mask_folder_and_masks_beside_images(tmp_path):
    img = np.full((8, 8), 128, np.uint8)
    _png(tmp_path / "ok" / "a.png", img)
    _png(tmp_path / "bad" / "b.png", img)
    _png(tmp_path / "masks" / "b.png", img)
    data = layouts.plain(tmp_path / "ok", tmp_path / "bad", tmp_path / "masks")
    assert data.labels == [0, 1] and data.masks[0] is None and data.masks[1].parent.name == "masks"
    assert data.has_masks
    # magnetic-tile style: X.jpg with its mask X.png in the same folder
    Image.fromarray(img).save(tmp_path / "beside" / "c.jpg") if (tmp_path / "beside").mkdir() is None else None
    _png(tmp_path / "beside" / "c.png", img)
    beside = layouts.plain(tmp_path / "ok", tmp_path / "beside")
    assert [f.name for f in beside.files] == ["a.png", "c.jpg"] and beside.masks[1].name == "c.png"
    with pytest.raises(FileNotFoundError, match="mask folder not found"):
        layouts.plain(tmp_path / "ok", tmp_path / "bad", tmp_path / "nope")


def test_heatmaps_of_large_photos_are_drawn_averaged_down_with_thin_defects_kept(tmp_path, monkeypatch):
    """``heatmap_overlays`` draws an image larger than ``DISPLAY_SIDE`` averaged over blocks,
    its map likewise, and its mask with a block marked where any pixel is (a one-pixel scratch
    stays visible); images may come one at a time from a generator."""
    from reconad.evaluation import plots

    drawn = []
    real_imshow = plots.plt.Axes.imshow

    def imshow(ax, data, *args, **kwargs):
        drawn.append(np.shape(data))
        return real_imshow(ax, data, *args, **kwargs)

    monkeypatch.setattr(plots.plt.Axes, "imshow", imshow)
    rng = np.random.default_rng(0)
    photo = rng.random((2100, 1500, 3)).astype(np.float32)
    mask = np.zeros((2100, 1500), bool)
    mask[1000, 200:900] = True  # one pixel wide
    small = rng.random((40, 60)).astype(np.float32)
    maps = [rng.random((2100, 1500)).astype(np.float32), small]
    plots.heatmap_overlays((im for im in (photo, small)), maps, tmp_path / "h.png",
                           masks=[mask, None], scores=[1.0, 0.5], labels=[1, 0])
    assert (tmp_path / "h.png").exists()
    assert drawn == [(420, 300, 3), (420, 300), (40, 60), (40, 60)]  # 2100 / 5 = 420 <= DISPLAY_SIDE
    shown_mask = plots._blocks(mask, 5, np.any)
    assert shown_mask.shape == (420, 300) and shown_mask[200, 40:180].all() and shown_mask.sum() == 140
    np.testing.assert_allclose(plots._blocks(photo, 5, np.mean)[0, 0], photo[:5, :5].mean((0, 1)), rtol=1e-5)
