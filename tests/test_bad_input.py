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
