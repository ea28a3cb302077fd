import json

import numpy as np
import pytest

from reconad import ImageDetector, load

from conftest import write_pngs


@pytest.mark.parametrize("bad, message", [
    (np.full((4, 28, 28), np.nan, np.float32), "NaN or infinite"),
    (np.full((4, 28, 28), np.inf, np.float32), "NaN or infinite"),
    (np.zeros((28, 28), np.uint8), "3 dimensions"),
    (np.zeros((2, 2, 28, 28, 1), np.uint8), "3 dimensions"),
    (np.zeros((0, 28, 28), np.uint8), "empty"),
    ([], "empty"),
    (np.full((4, 28, 28), 2.0, np.float32), "0..1"),
    (np.zeros((4, 28, 28), np.int64), "uint8"),
    (np.zeros((4, 28, 28, 5), np.uint8), "channels"),
])
def test_bad_arrays_for_fit_and_score(small_detector, bad, message):
    with pytest.raises((ValueError, TypeError), match=message):
        ImageDetector(epochs=1, verbose=0).fit(bad)
    with pytest.raises((ValueError, TypeError), match=message):
        small_detector.decision_function(bad)


def test_wrong_image_size(small_detector):
    with pytest.raises(ValueError, match="32x32 but the model was trained on 28x28"):
        small_detector.decision_function(np.zeros((2, 32, 32), np.uint8))


def test_unreadable_and_non_image_files(small_detector, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(ValueError, match="cannot read image file"):
        small_detector.decision_function([str(text)])
    with pytest.raises(FileNotFoundError, match="not found"):
        small_detector.decision_function([str(tmp_path / "missing.png")])
    with pytest.raises(ValueError, match="no image files"):
        (tmp_path / "empty").mkdir()
        small_detector.decision_function([str(tmp_path / "empty")])


def test_unknown_names_fail_before_training(mnist01):
    with pytest.raises(ValueError, match="unknown model"):
        ImageDetector(model="resnet").fit(mnist01["train_ones"][:10])
    with pytest.raises(ValueError, match="unknown score"):
        ImageDetector(score="psnr").fit(mnist01["train_ones"][:10])
    with pytest.raises(TypeError, match="tutorial_cae"):
        ImageDetector(model="tutorial_cae", width=3, epochs=1, verbose=0).fit(mnist01["train_ones"][:10])


def test_missing_model_folder(tmp_path):
    with pytest.raises(ValueError, match="model folder not found"):
        load(tmp_path / "nope")


def test_truncated_tampered_and_future_models(small_detector, tmp_path):
    path = small_detector.save(tmp_path / "m")
    weights = path / "weights.safetensors"
    blob = weights.read_bytes()

    weights.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="truncated or was changed"):
        load(path)

    tampered = bytearray(blob)
    tampered[-10] ^= 0xFF
    weights.write_bytes(bytes(tampered))
    with pytest.raises(ValueError, match="truncated or was changed"):
        load(path)

    weights.write_bytes(blob)
    cfg = json.loads((path / "config.json").read_text())
    cfg["format_version"] = 99
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="format version 99"):
        load(path)

    (path / "config.json").write_text("{ broken")
    with pytest.raises(ValueError, match="not valid JSON"):
        load(path)

    (path / "config.json").unlink()
    with pytest.raises(ValueError, match="config.json is missing"):
        load(path)


def test_save_replaces_atomically(small_detector, tmp_path):
    path = tmp_path / "m"
    small_detector.save(path)
    small_detector.save(path)  # overwrite in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    load(path)


def test_mixed_size_files(tmp_path, mnist01):
    write_pngs(tmp_path / "a", mnist01["test_ones"][:2])
    from PIL import Image
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(tmp_path / "a" / "big.png")
    with pytest.raises(ValueError, match="differ in size"):
        ImageDetector().fit([str(tmp_path / "a")])


def test_whole_image_training_too_large_for_the_machine_is_refused_before_decoding(tmp_path, monkeypatch):
    """Photos of 1024 x 1024 in the default whole-image autoencoder need tens of GB a batch:
    refused with the need, what is free and the ways out, before any image is decoded; the
    same photos in patch mode, and small images whole, train."""
    from types import SimpleNamespace

    from PIL import Image
    from typer.testing import CliRunner

    from reconad.cli.app import app
    from reconad.data import images as image_io
    from reconad.training import memory

    monkeypatch.setattr(memory.psutil, "virtual_memory", lambda: SimpleNamespace(available=8 * memory.GB))
    rng = np.random.default_rng(0)
    folder = tmp_path / "train" / "good"
    folder.mkdir(parents=True)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (1024, 1024, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    paths = sorted(str(p) for p in folder.glob("*.png"))

    decoded = []
    real_read = image_io.read_image
    monkeypatch.setattr(image_io, "read_image", lambda *a, **k: decoded.append(a[0]) or real_read(*a, **k))
    with pytest.raises(ValueError, match=r"conv_ae on whole images of 1024x1024 .* GB of memory, more than "
                                         r"the 8\.0 GB free.*--patch-size.*feature_knn"):
        ImageDetector(epochs=1, verbose=0).fit(paths)
    assert decoded == []
    # arrays: the same check, on their shape
    with pytest.raises(ValueError, match="more than the 8.0 GB free"):
        ImageDetector(epochs=1, verbose=0).fit(np.zeros((3, 1024, 1024, 3), np.uint8))
    for gan in ("anogan", "fanogan"):  # traced through their own training step
        with pytest.raises(ValueError, match=f"{gan} on whole images of 1024x1024"):
            ImageDetector(model=gan, epochs=1, verbose=0).fit(np.zeros((3, 1024, 1024, 3), np.uint8))
    # the command line: one line and exit code 2
    (tmp_path / "test" / "good").mkdir(parents=True)
    Image.fromarray(np.zeros((1024, 1024, 3), np.uint8)).save(tmp_path / "test" / "good" / "0.png")
    out = CliRunner().invoke(app, ["train", "--mvtec", str(tmp_path), "--out", str(tmp_path / "model")])
    assert isinstance(out.exception, ValueError) and "--patch-size" in str(out.exception)
    # what fits is not refused: the same photos as patches, small images whole
    det = ImageDetector(epochs=1, verbose=0, patch_size=32, patches_per_image=8).fit(paths)
    assert np.isfinite(det.threshold_)
    ImageDetector(epochs=1, verbose=0).fit(np.zeros((40, 28, 28), np.uint8))
