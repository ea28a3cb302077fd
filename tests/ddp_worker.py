"""Run by ``torchrun`` from test_distributed_training.py: fits a small dense autoencoder
with ``training.fit_model`` on fixed random data.

    torchrun --standalone --nproc_per_node=2 tests/ddp_worker.py OUT.safetensors \
        [--checkpoint DIR] [--crash-in-epoch K]

``--crash-in-epoch K`` kills rank 1 at its first step of epoch K (0-based), as a power cut
would; rank 0 writes the final weights and the epoch the run resumed from. ``fit_model``
is not told to train distributed: it finds the torchrun environment by itself.
"""

import argparse
import json
import os

import torch
from safetensors.torch import save_file
from torch import nn

from reconad.training import distributed as ddp
from reconad.training.loop import fit_model

EPOCHS, BATCH, N_BATCHES = 6, 16, 6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--checkpoint")
    ap.add_argument("--crash-in-epoch", type=int)
    args = ap.parse_args()
    torch.manual_seed(0)
    data = torch.randn(BATCH * N_BATCHES + 24, 6) @ torch.randn(6, 10)
    train, val = data[:BATCH * N_BATCHES], data[BATCH * N_BATCHES:]
    model = nn.Sequential(nn.Linear(10, 4), nn.Tanh(), nn.Linear(4, 10))
    steps = 0

    def loss_fn(out, xb):
        nonlocal steps
        if torch.is_grad_enabled():  # a training step, not validation
            if args.crash_in_epoch is not None and ddp.rank() == 1 and steps == args.crash_in_epoch * N_BATCHES:
                os._exit(17)
            steps += 1
        return (out - xb).square().mean()

    result = fit_model(model, loss_fn, train, val, epochs=EPOCHS, batch_size=BATCH, lr=1e-2,
                       device=torch.device("cpu"), seed=0, verbose=0,
                       checkpoint=args.checkpoint)
    if ddp.is_main_process():
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, args.out)
        with open(args.out + ".json", "w") as fh:
            json.dump({"resumed_from_epoch": result.resumed_from_epoch, "history": result.history,
                       "world": ddp.world_size()}, fh)
    ddp.shutdown()


if __name__ == "__main__":
    main()
