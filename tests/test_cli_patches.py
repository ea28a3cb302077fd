"""CLI: patch-mode training on an MVTec folder and evaluation with masks."""

import json
import subprocess
import sys

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from reconad.cli import app

runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "reconad.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def _tile(rng, h, w):
    cols = 128 + 40 * np.sin(np.arange(w) / 3.0 + rng.uniform(0, 6))
    return np.clip(cols[None, :] + rng.normal(0, 6, (h, w)), 0, 255).astype(np.uint8)


def test_mvtec_train_and_evaluate_with_masks(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "tile"
    for sub in ("train/good", "test/good", "test/spot", "ground_truth/spot"):
        (root / sub).mkdir(parents=True)
    for i in range(20):
        Image.fromarray(_tile(rng, 40 + i % 5, 48 + i % 7)).save(root / "train" / "good" / f"{i:03d}.png")
    for i in range(4):
        Image.fromarray(_tile(rng, 44, 52)).save(root / "test" / "good" / f"{i:03d}.png")
        img, mask = _tile(rng, 44, 52), np.zeros((44, 52), np.uint8)
        img[10 + i:18 + i, 20:28] = 255
        mask[10 + i:18 + i, 20:28] = 255
        Image.fromarray(img).save(root / "test" / "spot" / f"{i:03d}.png")
        Image.fromarray(mask).save(root / "ground_truth" / "spot" / f"{i:03d}_mask.png")
    model = tmp_path / "model"
    invoke("train", "--mvtec", root, "--out", model, "--model", "gmm", "--latent-dim", "2",
           "--pca-components", "8", "--patch-size", "12", "--patch-stride", "4", "--quiet")
    out = tmp_path / "eval"
    invoke("evaluate", "--model", model, "--mvtec", root, "--out", out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["roc_auc"] > 0.9 and metrics["pixel_roc_auc"] > 0.9 and 0 < metrics["aupro"] <= 1
    assert (out / "heatmaps.png").stat().st_size > 0

    # plain folders with a mask folder
    r = invoke("evaluate", "--model", model, "--normal", root / "test" / "good", "--anomalous",
               root / "test" / "spot", "--masks", root / "ground_truth" / "spot", "--out", tmp_path / "e2")
    assert "pixel ROC-AUC" in r.output

    r = run_cli("train", "--out", model)
    assert r.returncode == 2 and "--normal" in r.stderr
