import csv
import io
import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from reconad.cli import app

from conftest import write_pngs

runner = CliRunner()


def run_cli(*args):
    """Run the installed entry point in a subprocess, as a user would."""
    return subprocess.run([sys.executable, "-m", "reconad.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def folders(tmp_path_factory, mnist01):
    root = tmp_path_factory.mktemp("imgs")
    write_pngs(root / "train", mnist01["train_ones"][:300])
    write_pngs(root / "ones", mnist01["test_ones"][:40])
    write_pngs(root / "zeros", mnist01["test_zeros"][:40])
    return root


def test_help_everywhere():
    for cmd in ([], ["demo"], ["train"], ["score"], ["evaluate"]):
        result = runner.invoke(app, [*cmd, "--help"])
        assert result.exit_code == 0, result.output
        assert "Usage" in result.output


def test_train_score_evaluate(folders, tmp_path):
    model = tmp_path / "model"
    r = run_cli("train", "--normal", folders / "train", "--out", model, "--epochs", "8", "--batch-size", "16",
                "--width", "8", "--quiet")
    assert r.returncode == 0, r.stderr
    assert (model / "config.json").exists()

    out_csv = tmp_path / "scores.csv"
    r = run_cli("score", "--model", model, folders / "ones", folders / "zeros", "--out", out_csv)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(out_csv.read_text())))
    assert len(rows) == 80 and set(rows[0]) == {"file", "score", "label", "model_version"}
    zeros = np.array([float(r["score"]) for r in rows if "/zeros/" in r["file"]])
    ones = np.array([float(r["score"]) for r in rows if "/ones/" in r["file"]])
    assert zeros.mean() > ones.mean()

    r = run_cli("score", "--model", model, folders / "zeros" / "img_0000.png")
    assert r.returncode == 0 and r.stdout.startswith("file,score,label")

    out = tmp_path / "eval"
    r = run_cli("evaluate", "--model", model, "--normal", folders / "ones",
                "--anomalous", folders / "zeros", "--out", out)
    assert r.returncode == 0, r.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["roc_auc"] > 0.9 and metrics["n"] == 80
    for name in ("loss.png", "scores.png", "roc.png", "reconstructions.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_writes_everything(tmp_path):
    out = tmp_path / "demo"
    r = run_cli("demo", "--out", out, "--epochs", "1")
    assert r.returncode == 0, r.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 1135 + 980 and metrics["roc_auc"] > 0.95
    assert "roc_auc" in r.stdout and "confusion" in r.stdout
    for name in ("loss.png", "scores.png", "roc.png", "reconstructions.png", "report.txt", "model/config.json"):
        assert (out / name).exists()


@pytest.mark.parametrize("args, message", [
    (["score", "--model", "/nonexistent/model", "x.png"], "model folder not found"),
    (["train", "--normal", "/nonexistent/dir", "--out", "m"], "normal-image folder not found"),
])
def test_errors_are_one_line(args, message):
    r = run_cli(*args)
    assert r.returncode == 2
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_bad_image_file_is_one_line(folders, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\x00" * 20)
    model = tmp_path / "m"
    r = run_cli("train", "--normal", folders / "ones", "--out", model, "--epochs", "1", "--quiet")
    assert r.returncode == 0, r.stderr
    r = run_cli("score", "--model", model, bad)
    assert r.returncode == 2 and "cannot read image file" in r.stderr and "Traceback" not in r.stderr
