"""Run by ``torchrun`` from test_ddp_loss.py: for every catalogue model that trains
data-parallel, the loss of one training batch computed as ``fit_model`` computes it in a
group of processes (the detector's loss on the output of the ``DistributedDataParallel``
wrapper) and in one process (the bare model), from the same weights, batch and seed.

    torchrun --standalone --nproc_per_node=2 tests/ddp_loss_worker.py OUT.json

Rank 0 writes ``{case: [distributed loss, single-process loss]}``.
"""

import json
import sys

import torch

from catalogue_cases import case_id, data, detector
from reconad.models import catalogue
from reconad.training import distributed as ddp
from reconad.training.loop import batch_loss, training_forward


class Captured(Exception):
    """Stops ``fit`` where the network would be trained, keeping its training tensor."""

    def __init__(self, train):
        super().__init__("captured")
        self.train = train


def first_batch(det, normal) -> torch.Tensor:
    """The detector's first training batch, prepared by its own ``fit``."""
    def capture(train, val, **kwargs):
        raise Captured(train)

    det._fit_network = capture
    try:
        det.fit(normal)
    except Captured as c:
        return c.train[:8]
    raise AssertionError(f"{det.model!r}: fit did not reach the network training step")


def main() -> None:
    group = ddp.group(True, torch.device("cpu"))
    assert group.world == 2, group.world
    out = {}
    for entry in catalogue.entries():
        if not entry.data_parallel:
            continue
        det = detector(entry)
        batch = first_batch(det, data(entry.kind)[0])
        loss_fn, model = det._loss_fn(), det.model_
        model.train()
        losses = []
        for net in (group.wrap(training_forward(model)), training_forward(model)):
            torch.manual_seed(123)  # the same noise (sampled codes, dropout) for both
            losses.append(float(batch_loss(net, loss_fn, batch)))
        out[case_id(entry)] = losses
    if group.main:
        with open(sys.argv[1], "w") as fh:
            json.dump(out, fh, indent=1)
    ddp.shutdown()


if __name__ == "__main__":
    main()
