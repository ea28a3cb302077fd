"""The same loss with one process or many: for every catalogue model that trains
data-parallel, the loss of a training batch through the ``DistributedDataParallel``
wrapper (2 gloo processes) equals the single-process loss, extra terms such as a VAE's KL
divergence included."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from catalogue_cases import case_id
from reconad.models import catalogue

HERE = Path(__file__).resolve().parent
PARALLEL = [e for e in catalogue.entries() if e.data_parallel]


@pytest.fixture(scope="module")
def losses(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "losses.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "ddp_loss_worker.py", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=HERE)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return json.loads(out.read_text())


def test_every_data_parallel_model_is_checked(losses):
    assert sorted(losses) == sorted(case_id(e) for e in PARALLEL)
    assert {"series-lstm_vae", "table-vae", "image-conv_vae"} <= set(losses)


@pytest.mark.parametrize("entry", PARALLEL, ids=case_id)
def test_first_step_loss_is_the_single_process_loss(losses, entry):
    distributed, single = losses[case_id(entry)]
    assert distributed == pytest.approx(single, rel=1e-6, abs=1e-7)
