"""Whether a network's training fits in this machine's memory, told before any work starts.

A network trained on whole samples keeps, for every batch, each layer's output for the
backward pass and a gradient of it, and it holds its weights with their gradients and Adam's
two moments. For photos that is far more than a PC has: the default convolutional
autoencoder on images of 1024 x 1024 pixels, in batches of 64, needs some 50 GB, and the
operating system ends the process after minutes of work. So the need is estimated first: the
network is built on torch's ``meta`` device (shapes only, no memory, no arithmetic), one
sample goes through it, and the outputs of its layers are counted.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import psutil
import torch

GB = 1024 ** 3


def _tensors(output) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, (list, tuple)):
        return [t for item in output for t in _tensors(item)]
    return []


def training_bytes(build: Callable[[], torch.nn.Module], input_shape: tuple[int, ...], batch_size: int,
                   n_samples: int, step: Callable[[torch.nn.Module, torch.Tensor], object] | None = None) -> int | None:
    """Bytes a fit needs: the samples as float32; the weights four times (weights, gradients,
    Adam's two moments); for one batch, every layer's output twice (kept for the backward
    pass, and its gradient). ``step(net, x)`` runs what one training step computes for a sample
    ``x`` (default: ``net(x)``). None where the network cannot be traced on the ``meta`` device."""
    counted = [0]

    def count(module, inputs, output):
        counted[0] += sum(t.numel() for t in _tensors(output))

    try:
        with torch.device("meta"):
            net = build()
            leaves = [m for m in net.modules() if next(m.children(), None) is None]
            hooks = [m.register_forward_hook(count) for m in leaves]
            try:
                net.train()
                (step or (lambda n, x: n(x)))(net, torch.empty((1, *input_shape)))
            finally:
                for hook in hooks:
                    hook.remove()
    except (RuntimeError, NotImplementedError, TypeError, ValueError):
        return None
    weights = sum(p.numel() for p in net.parameters())
    return 4 * (n_samples * math.prod(input_shape) + 4 * weights + 2 * int(batch_size) * counted[0])


def check_training_memory(needed: int | None, what: str, advice: str) -> None:
    """Raise ``ValueError`` naming the need, what is free and ``advice`` when ``needed`` bytes
    exceed the memory this machine has available now (input too large for this machine)."""
    if needed is None:
        return
    free = psutil.virtual_memory().available
    if needed > free:
        raise ValueError(f"training {what} would need about {needed / GB:.1f} GB of memory, more than "
                          f"the {free / GB:.1f} GB free on this machine; {advice}")
