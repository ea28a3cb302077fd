"""The fit loop: batching, validation, best-weights restore, early stopping, progress."""

from __future__ import annotations

import contextlib
import contextvars
import copy
import math
import os
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from reconad.training import checkpoint as checkpoints
from reconad.training import distributed as ddp


def resolve_device(device: str) -> torch.device:
    """``"auto"`` picks CUDA when present, else the CPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {device!r}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but no CUDA GPU is available")
    if dev.type == "cuda" and dev.index is None and ddp.launched():
        dev = ddp.cuda_device_for_this_process()  # one GPU per torchrun process
    return dev


def seed_everything(seed: int | None) -> None:
    if seed is not None:
        torch.manual_seed(int(seed))
        np.random.seed(int(seed) % 2**32)


def split_validation(n: int, fraction: float, seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled indices for training and validation (at least one sample each when n >= 2)."""
    if not 0 <= fraction < 1:
        raise ValueError(f"validation_fraction must be in [0, 1), got {fraction}")
    order = np.random.RandomState(seed).permutation(n)
    n_val = int(round(n * fraction))
    if fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    return order[n_val:], order[:n_val]


@dataclass
class FitResult:
    history: dict[str, list[float]] = field(default_factory=lambda: {"train_loss": [], "val_loss": []})
    best_epoch: int = -1
    stopped_early: bool = False
    resumed_from_epoch: int | None = None


def progress_bar(verbose: int, label: str = "training"):
    """A rich progress bar (label, bar, done/total, a ``info`` field, time), or None when
    ``verbose`` is 0. Tasks need ``info=""``."""
    if not verbose:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), transient=False)


class TrainingForward(nn.Module):
    """A model seen through its ``forward_train``: the forward pass that gives everything
    its training loss needs (e.g. a VAE's sampled reconstruction and KL terms)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        return self.model.forward_train(x)


def training_forward(model: nn.Module) -> nn.Module:
    """The module whose forward pass the training loss is computed from: ``model`` itself,
    or :class:`TrainingForward` when the model defines ``forward_train``. The
    data-parallel wrapper wraps this module, so the loss gets the model's own terms from
    the wrapped forward pass (and their gradients are shared)."""
    return TrainingForward(model) if hasattr(model, "forward_train") else model


def batch_loss(net: nn.Module, loss_fn: Callable, xb: torch.Tensor) -> torch.Tensor:
    """The loss of one batch: ``loss_fn(net(xb), xb)``."""
    return loss_fn(net(xb), xb)


def batch_mean_loss(model: nn.Module, loss_fn: Callable, data: torch.Tensor, batch_size: int,
                    device: torch.device) -> float:
    """Mean loss over ``data`` in evaluation mode, weighted by batch size."""
    total, count = _shard_loss_sums(training_forward(model), loss_fn, data, batch_size, device)
    return total / max(count, 1)


def adam(params, lr: float, weight_decay: float = 0.0) -> torch.optim.Adam:
    """Adam with the fused kernel where this torch build has it (about 3x less optimiser
    time for small networks on the CPU), else the default implementation."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


@dataclass(frozen=True)
class FitSettings:
    """Defaults for ``fit_model`` arguments a detector does not pass itself."""

    distributed: bool | None = None
    checkpoint: str | os.PathLike | None = None


_SETTINGS: contextvars.ContextVar[FitSettings] = contextvars.ContextVar("fit_settings", default=FitSettings())


@contextlib.contextmanager
def fit_settings(*, distributed: bool | None = None,
                 checkpoint: str | os.PathLike | None = None) -> Iterator[FitSettings]:
    """Within the block, every ``fit_model`` call (so every detector's ``fit``) trains
    distributed (True; None: when started by ``torchrun``) and keeps a checkpoint in the
    folder ``checkpoint``, resuming from it when it holds an unfinished run.

    >>> from reconad.training.loop import fit_settings
    >>> with fit_settings(checkpoint="ckpt"):      # doctest: +SKIP
    ...     det.fit(X)
    """
    token = _SETTINGS.set(FitSettings(distributed=distributed, checkpoint=checkpoint))
    try:
        yield _SETTINGS.get()
    finally:
        _SETTINGS.reset(token)


def _shard_loss_sums(forward: nn.Module, loss_fn: Callable, data: torch.Tensor, batch_size: int,
                     device: torch.device) -> tuple[float, int]:
    """Loss summed over ``data`` (batch mean times batch size) and the count, in eval mode;
    ``forward``: the model's training forward (``training_forward``)."""
    forward.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            xb = data[start:start + batch_size].to(device)
            total += float(batch_loss(forward, loss_fn, xb)) * len(xb)
            count += len(xb)
    return total, count


def _parameter_checksum(model: nn.Module) -> float:
    with torch.no_grad():
        return float(sum(p.double().sum() for p in model.parameters()))


def fit_model(
    model: nn.Module,
    loss_fn: Callable[[object, torch.Tensor], torch.Tensor],
    train: torch.Tensor,
    val: torch.Tensor | None,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float = 0.0,
    patience: int | None = None,
    device: torch.device,
    seed: int | None,
    verbose: int = 1,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    distributed: bool | None = None,
    checkpoint: str | os.PathLike | None = None,
    on_epoch: Callable[[int], float | None] | None = None,
    keep_best: bool = True,
) -> FitResult:
    """Train ``model`` with Adam on ``loss_fn(output, batch)``; keep the weights with the best
    validation loss (training loss when there is no validation data) and restore them.
    Early stopping after ``patience`` epochs without improvement when ``patience`` is set.

    ``distributed`` (default: from ``fit_settings``, else True when ``torchrun`` started
    several processes) trains data-parallel with ``DistributedDataParallel``: every process
    draws the same shuffled order, takes every ``world``-th sample of each batch of
    ``batch_size`` (so ``batch_size`` is the global batch and the batches are those of a
    single process), and the gradients, losses and the early-stopping decision are agreed
    with ``all_reduce``.

    ``output`` is the model's forward pass on the batch (its ``forward_train`` when it has
    one, see ``training_forward``), run through the ``DistributedDataParallel`` wrapper
    when training data-parallel: the loss sees the model's own outputs, never the wrapper,
    and gets the same value with one process or many.
    ``checkpoint`` (a folder; default from ``fit_settings``) is written by rank 0 after
    every epoch, and a run that finds an unfinished checkpoint of the same run resumes from
    it. ``on_epoch(epoch)`` is called after every epoch's update of the kept weights (for
    a model that keeps more than one best state, e.g. one per ensemble member); such a
    caller passes ``keep_best=False``, and the weights of the last epoch are left for it
    instead of a copy of the best epoch's (the best epoch and early stopping are still
    tracked); a number it returns is shown as the validation loss where ``val`` is None.
    Without either, the progress shows the training loss alone."""
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    settings = _SETTINGS.get()
    distributed = settings.distributed if distributed is None else distributed
    checkpoint = settings.checkpoint if checkpoint is None else checkpoint
    group = ddp.group(distributed, device)
    if group.world > 1 and batch_size < 2 * group.world:
        raise ValueError(f"batch_size {batch_size} is the global batch: with {group.world} processes "
                         f"it must be at least {2 * group.world}")
    if len(train) < 2 and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise ValueError(f"{len(train)} training sample(s) left after holding out the validation ones; this "
                         "model (with batch norm) needs at least 2: give more normal data")
    model.to(device)
    forward = training_forward(model)
    net = group.wrap(forward)
    opt = adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(int(seed) if seed is not None else torch.seed())
    result = FitResult()
    best, best_state, waited, first_epoch = math.inf, None, 0, 0
    run = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
           "patience": patience, "seed": seed, "n_train": len(train),
           "n_val": 0 if val is None else len(val),
           "parameters": sum(p.numel() for p in model.parameters())}
    if checkpoint is not None:
        resumed = checkpoints.load(checkpoint, run=run, model=model, optimizer=opt, generator=gen)
        if resumed is not None:
            first_epoch = resumed["epoch"] + 1
            progress = resumed["progress"]
            result.history = progress["history"]
            result.best_epoch = progress["best_epoch"]
            result.stopped_early = progress["stopped_early"]
            best, waited = progress["best"], progress["waited"]
            best_state = resumed["best_state"]
            result.resumed_from_epoch = resumed["epoch"]
            if result.stopped_early:
                first_epoch = epochs
    n_batches = math.ceil(len(train) / batch_size)
    min_batch = 2 * group.world  # a batch of one breaks batch norm and adds only noise
    progress = progress_bar(verbose if group.main else 0)
    task = progress.add_task("fit", total=epochs, completed=first_epoch, info="") if progress else None
    if progress:
        progress.start()
    try:
        for epoch in range(first_epoch, epochs):
            net.train()
            order = torch.randperm(len(train), generator=gen)
            if group.world > 1 and augment is not None:
                aug_gen = torch.Generator().manual_seed(
                    hash((int(seed) if seed is not None else 0, group.rank, epoch)) % 2**63)
            else:
                aug_gen = gen
            total = 0.0
            for b in range(n_batches):
                idx = order[b * batch_size:(b + 1) * batch_size]
                if len(idx) < min_batch and len(train) >= 2:
                    continue
                share = 1.0
                if group.world > 1:
                    n_global = len(idx)
                    idx = idx[group.rank::group.world]
                    share = group.world * len(idx) / n_global  # weights the mean to the global one
                xb = train[idx]
                if augment is not None:
                    xb = augment(xb, aug_gen)
                xb = xb.to(device)
                opt.zero_grad(set_to_none=True)
                loss = batch_loss(net, loss_fn, xb)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"training loss became {float(loss)} at epoch {epoch + 1}; "
                                             "lower the learning rate")
                (loss * share if share != 1.0 else loss).backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            if group.world > 1:
                total, = group.sum(total)
                if not group.same_everywhere(_parameter_checksum(model)):
                    raise RuntimeError("the processes' weights diverged: every parameter the loss "
                                       "uses must take part in the model's forward pass")
            train_loss = total / len(train)
            if val is not None and len(val):
                val_total, val_count = _shard_loss_sums(forward, loss_fn, val[group.rank::group.world],
                                                        batch_size, device)
                val_total, val_count = group.sum(val_total, val_count)
                val_loss = val_total / max(val_count, 1)
            else:
                val_loss = train_loss
            result.history["train_loss"].append(train_loss)
            result.history["val_loss"].append(val_loss)
            if val_loss < best:
                best, waited, result.best_epoch = val_loss, 0, epoch
                if keep_best:
                    best_state = copy.deepcopy(model.state_dict())
            else:
                waited += 1
            watched = on_epoch(epoch) if on_epoch is not None else None
            if progress:
                shown = val_loss if val is not None and len(val) else watched
                progress.update(task, advance=1,
                                info=f"loss {train_loss:.5f}" + ("" if shown is None else f"  val {shown:.5f}"))
            stop = group.any(patience is not None and waited >= patience)
            if stop:
                result.stopped_early = True
            if checkpoint is not None and group.main:
                checkpoints.save(checkpoint, run=run, epoch=epoch, model=model, optimizer=opt,
                                 generator=gen, best_state=best_state,
                                 progress={"history": result.history, "best_epoch": result.best_epoch,
                                           "stopped_early": result.stopped_early, "best": best,
                                           "waited": waited})
            if checkpoint is not None:
                group.barrier()  # the checkpoint of this epoch is complete before anyone goes on
            if stop:
                break
    finally:
        if progress:
            progress.stop()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return result

