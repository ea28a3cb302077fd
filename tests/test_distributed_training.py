"""Data-parallel training with 2 CPU processes (gloo) started by torchrun."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from reconad import ImageDetector, load
from sklearn.metrics import roc_auc_score as roc_auc
from reconad.training.loop import fit_model

from conftest import write_pngs

HERE = Path(__file__).resolve().parent


def torchrun(*args, expect_ok=True):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           *map(str, args)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=HERE)
    if expect_ok:
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def test_two_processes_score_like_one(tmp_path, mnist01):
    train = tmp_path / "train"
    write_pngs(train, mnist01["train_ones"][:256])
    settings = dict(model="conv_ae", width=8, latent_dim=16, epochs=3, batch_size=32, random_state=0)
    single = ImageDetector(**settings, verbose=0).fit(sorted(str(p) for p in train.iterdir()))

    model = tmp_path / "model"
    r = torchrun("-m", "reconad.cli", "train", "--distributed", "--normal", train, "--out", model,
                 "--model", "conv_ae", "--width", 8, "--latent-dim", 16, "--epochs", 3,
                 "--batch-size", 32, "--seed", 0, "--quiet")
    assert r.stdout.count("saved ") == 1 and "2 processes" in r.stdout  # only rank 0 writes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "train"]
    ddp = load(model)

    x = np.concatenate([mnist01["test_ones"][:150], mnist01["test_zeros"][:150]])
    y = np.r_[np.zeros(150), np.ones(150)]
    s1, s2 = single.decision_function(x), ddp.decision_function(x)
    assert np.corrcoef(s1, s2)[0, 1] >= 0.99
    assert abs(roc_auc(y, s1) - roc_auc(y, s2)) <= 0.01
    assert len(ddp.history_["val_loss"]) == 3


def test_interrupted_run_resumes_from_its_checkpoint(tmp_path):
    ref, out, ckpt = tmp_path / "ref.safetensors", tmp_path / "out.safetensors", tmp_path / "ckpt"
    torchrun("ddp_worker.py", ref)
    crashed = torchrun("ddp_worker.py", out, "--checkpoint", ckpt, "--crash-in-epoch", 3, expect_ok=False)
    assert crashed.returncode != 0 and not out.exists()
    saved = json.loads((ckpt / "config.json").read_text())
    assert saved["epoch"] == 2  # epochs 0, 1, 2 done before the crash in epoch 3

    torchrun("ddp_worker.py", out, "--checkpoint", ckpt)
    info = json.loads(Path(str(out) + ".json").read_text())
    reference = json.loads(Path(str(ref) + ".json").read_text())
    assert info["resumed_from_epoch"] == 2 and info["world"] == 2
    assert info["history"] == reference["history"]
    a, b = load_file(ref), load_file(out)
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=0)


def test_checkpoint_of_another_run_is_refused(tmp_path):
    data = torch.randn(40, 5)
    model = torch.nn.Linear(5, 5)

    def loss_fn(out, xb):
        return (out - xb).square().mean()

    common = dict(batch_size=8, lr=1e-2, device=torch.device("cpu"), seed=0, verbose=0,
                  checkpoint=tmp_path / "ckpt")
    fit_model(model, loss_fn, data, None, epochs=2, **common)
    again = fit_model(torch.nn.Linear(5, 5), loss_fn, data, None, epochs=2, **common)
    assert again.resumed_from_epoch == 1 and len(again.history["train_loss"]) == 2
    with pytest.raises(ValueError, match="different run.*epochs"):
        fit_model(torch.nn.Linear(5, 5), loss_fn, data, None, epochs=3, **common)


def test_distributed_without_launcher_says_how(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ValueError, match="torchrun"):
        fit_model(torch.nn.Linear(3, 3), lambda out, x: out.sum(), torch.randn(8, 3), None, epochs=1,
                  batch_size=4, lr=1e-3, device=torch.device("cpu"), seed=0, verbose=0, distributed=True)
