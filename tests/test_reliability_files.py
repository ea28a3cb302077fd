"""Files a hostile user hands over: an output path that is not a model, image bombs,
16-bit images, tampered or odd configurations, saves killed half way."""

import functools
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import time
import zlib
import struct

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from reconad import load
from reconad.cli import app
from reconad.data.images import decode_image, read_image, to_float_array
from reconad import persistence

from conftest import write_pngs

runner = CliRunner()


@functools.lru_cache(maxsize=None)
def bomb_png(size: int, full: bool = True) -> bytes:
    """A grayscale PNG of size x size black pixels, a few hundred KB at most (``full``
    False: only the header says so, the pixel data is cut short)."""
    raw_row = b"\x00" + b"\x00" * size
    comp = zlib.compressobj(9)
    data = b"".join(comp.compress(raw_row) for _ in range(size if full else 4)) + comp.flush()

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


# --- --out ---------------------------------------------------------------------------------

def test_train_out_onto_its_own_data_is_refused(tmp_path, mnist01):
    good = tmp_path / "good"
    files = write_pngs(good, mnist01["train_ones"][:20])
    res = runner.invoke(app, ["train", "--normal", str(good), "--out", str(good), "--epochs", "1", "--quiet"])
    assert res.exit_code != 0
    assert "not a reconad model" in str(res.exception)
    assert all(f.exists() for f in files)


def test_replacing_a_model_needs_overwrite(tmp_path, mnist01, small_detector):
    good = tmp_path / "good"
    write_pngs(good, mnist01["train_ones"][:20])
    model = small_detector.save(tmp_path / "m")
    args = ["train", "--normal", str(good), "--out", str(model), "--epochs", "1", "--quiet", "--width", "4"]
    res = runner.invoke(app, args)
    assert res.exit_code != 0 and "--overwrite" in str(res.exception)
    assert load(model).get_params()["width"] == 8
    res = runner.invoke(app, args + ["--overwrite"])
    assert res.exit_code == 0, res.output
    assert load(model).get_params()["width"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good", "m"]


def test_library_save_never_replaces_a_folder_that_is_not_a_model(tmp_path, small_detector):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "keep.txt").write_text("x")
    with pytest.raises(ValueError, match="not a reconad model"):
        small_detector.save(tmp_path / "data")
    assert (tmp_path / "data" / "keep.txt").read_text() == "x"


# --- image bombs ---------------------------------------------------------------------------

def test_image_bomb_refused_from_header_by_reader(tmp_path):
    blob = bomb_png(12000)
    assert len(blob) < 1_000_000
    path = tmp_path / "bomb.png"
    path.write_bytes(blob)
    start = time.perf_counter()
    with pytest.raises(ValueError, match="refused before decoding"):
        read_image(path)
    path.write_bytes(bomb_png(20000, full=False))
    with pytest.raises(ValueError, match="refused before decoding"):
        read_image(path)
    with pytest.raises(ValueError, match="refused before decoding"):
        decode_image(blob, max_pixels=28 * 28)
    assert time.perf_counter() - start < 0.5


def test_whole_image_model_refuses_large_image_before_decoding(tmp_path, small_detector):
    path = tmp_path / "big.png"
    path.write_bytes(bomb_png(8000))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(ValueError, match="8000x8000"):
        small_detector.decision_function([str(path)])
    assert time.perf_counter() - start < 0.5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000   # KiB


def test_cli_score_refuses_bomb_with_a_message(tmp_path, small_detector):
    model = small_detector.save(tmp_path / "m")
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "bomb.png").write_bytes(bomb_png(20000, full=False))
    r = subprocess.run([sys.executable, "-m", "reconad.cli", "score", "--model", str(model),
                        str(tmp_path / "imgs")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "refused before decoding" in r.stderr and "Traceback" not in r.stderr


def test_service_refuses_bomb_fast(small_detector):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient
    from reconad.serve import create_app

    client = TestClient(create_app(small_detector, engine="python"), raise_server_exceptions=False)
    blob = bomb_png(12000)
    start = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    r = client.post("/score", content=blob, headers={"content-type": "image/png"})
    assert r.status_code == 422 and "refused before decoding" in r.json()["detail"]
    files = [("files", (f"b{i}.png", blob, "image/png")) for i in range(20)]
    r = client.post("/score", files=files)
    assert r.status_code == 422
    assert time.perf_counter() - start < 1.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 300_000   # KiB


# --- 16-bit images -------------------------------------------------------------------------

def test_16_bit_images_scaled_by_bit_depth(tmp_path):
    grad = np.linspace(0, 4095, 64).astype(np.uint16).reshape(8, 8)        # a 12-bit gradient
    path = tmp_path / "g16.png"
    Image.fromarray(grad).save(path)
    assert Image.open(path).mode.startswith("I")
    got = to_float_array([str(path)])[0, 0]
    np.testing.assert_allclose(got, grad / 65535.0, atol=1e-6)
    assert len(np.unique(got)) == 64                                        # nothing clipped
    dec = decode_image(path.read_bytes())
    np.testing.assert_allclose(dec[..., 0], grad / 65535.0, atol=1e-6)
    np.testing.assert_allclose(to_float_array(grad[None])[0, 0], grad / 65535.0, atol=1e-6)
    # mixed with an 8-bit file
    Image.fromarray((np.arange(64, dtype=np.uint8) * 4).reshape(8, 8)).save(tmp_path / "g8.png")
    both = to_float_array([str(tmp_path / "g16.png"), str(tmp_path / "g8.png")])
    assert both.shape == (2, 1, 8, 8) and both.max() <= 1.0
    np.testing.assert_allclose(both[1, 0], (np.arange(64) * 4).reshape(8, 8) / 255.0, atol=1e-6)


def test_service_scales_16_bit_uploads(small_detector, mnist01):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient
    from reconad.serve import create_app

    img8 = mnist01["test_ones"][0]
    img16 = img8.astype(np.uint16) * 257                                     # same image, 16 bits
    buf = io.BytesIO()
    Image.fromarray(img16).save(buf, format="PNG")
    client = TestClient(create_app(small_detector, engine="python"), raise_server_exceptions=False)
    r = client.post("/score", content=buf.getvalue(), headers={"content-type": "image/png"})
    assert r.status_code == 200, r.text
    assert r.json()["scores"][0] == pytest.approx(float(small_detector.decision_function(img8[None])[0]), rel=1e-4)


# --- config.json ---------------------------------------------------------------------------

def _edit_config(path, edit):
    cfg = json.loads((path / "config.json").read_text())
    edit(cfg)
    cfg.pop("config_sha256", None)                  # as written by hand or by an older version
    (path / "config.json").write_text(json.dumps(cfg))


def test_config_changes_are_caught_by_the_checksum(small_detector, tmp_path):
    path = small_detector.save(tmp_path / "m")
    cfg = json.loads((path / "config.json").read_text())
    assert len(cfg["config_sha256"]) == 64
    cfg["fitted"]["threshold_"] = 1e9
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="configuration was changed"):
        load(path)


@pytest.mark.parametrize("edit, words", [
    (lambda c: c["fitted"].update(threshold_=float("nan")), "finite number"),
    (lambda c: c["fitted"].update(threshold_="high"), "finite number"),
    (lambda c: c.update(params=[1, 2]), "'params' must be a dict"),
    (lambda c: c.update(fitted=None), "'fitted' must be a dict"),
    (lambda c: c.pop("detector"), "'detector' is missing"),
    (lambda c: c["params"].update(width="wide"), "inconsistent"),
    (lambda c: c["params"].update(nope=1), "inconsistent"),
    (lambda c: c["fitted"].update(input_shape_="28x28"), "inconsistent"),
    (lambda c: c["params"].update(deep=json.loads("[" * 50 + "]" * 50)), "nested"),
])
def test_wrong_configs_are_refused_with_a_message(small_detector, tmp_path, edit, words):
    path = small_detector.save(tmp_path / "m")
    _edit_config(path, edit)
    with pytest.raises(ValueError, match=words):
        load(path)


def test_very_deep_config_is_refused(small_detector, tmp_path):
    path = small_detector.save(tmp_path / "m")
    (path / "config.json").write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(ValueError, match="nested too deeply|not a reconad model"):
        load(path)


def test_models_saved_before_the_config_checksum_still_load(small_detector, tmp_path, mnist01):
    path = small_detector.save(tmp_path / "m")
    _edit_config(path, lambda c: None)             # an older folder: no config_sha256
    det = load(path)
    np.testing.assert_allclose(det.decision_function(mnist01["test_ones"][:5]),
                               small_detector.decision_function(mnist01["test_ones"][:5]), rtol=1e-5)
    blob = (path / "weights.safetensors").read_bytes()
    (path / "weights.safetensors").write_bytes(blob[:-20])
    with pytest.raises(ValueError, match="truncated or was changed"):
        load(path)                                  # the old checksum is still verified


# --- interrupted saves ---------------------------------------------------------------------

def test_save_killed_between_the_renames_rolls_back(small_detector, tmp_path):
    path = small_detector.save(tmp_path / "m")
    # what a save killed between its two renames leaves: the old model aside, the new beside
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    os.replace(path, tmp_path / f".m.{dead}.abc.old")
    shutil.copytree(tmp_path / f".m.{dead}.abc.old", tmp_path / f".m.{dead}.def.tmp")
    load(path)                                      # the next load puts the old one back
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_killed_saves_leave_no_temporaries_after_the_next_save(small_detector, tmp_path):
    path = tmp_path / "m"
    small_detector.save(path)
    code = ("import os, sys, signal; from reconad import load; det = load(sys.argv[1]); "
            "import reconad.persistence as p; real = p.save_file\n"
            "def slow(*a, **k):\n    real(*a, **k); os.kill(os.getpid(), signal.SIGKILL)\n"
            "p.save_file = slow; det.save(sys.argv[1])")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for _ in range(2):
        r = subprocess.run([sys.executable, "-c", code, str(path)], env=env, capture_output=True, timeout=120)
        assert r.returncode == -9
    # each save first removes what the killed ones before it left: only the last one's remains
    assert len(list(tmp_path.iterdir())) == 2
    small_detector.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    load(path)
