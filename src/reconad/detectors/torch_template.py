"""``TorchDetector``: the fit template and the batched scoring loop of every detector
that trains a torch network.

``fit`` of a subclass turns its input into samples (an array ``(N, ...)`` or a list) and
calls ``_fit_samples``, which runs the same steps for every kind of data:

1. at least two samples; the device; the seeds; the validation split; on the CPU, at most as
   many torch threads as other processes leave cores free (``training.threads``);
2. ``_training_data(samples, train_idx, val_idx)``: build ``model_`` and the training and
   validation tensors (default: the samples as they are);
3. ``_train(train, val)``: fit the network (default: ``_fit_network``, which runs
   ``fit_model`` on ``_loss_fn()``);
4. ``_threshold_from_fit(samples, held_out)``: the threshold from the held-out samples'
   scores (default: ``_held_out_scores``, by ``threshold_method``).

Scoring goes through ``_batched``, the one loop that feeds samples to the network in
batches without gradients (with at most as many torch threads as free cores, as the fit).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from reconad.detectors.base import BaseDetector
from reconad.training.loop import fit_model, resolve_device, seed_everything, split_validation
from reconad.training.threads import cpu_threads


def subset(samples, idx: np.ndarray):
    """``samples[idx]`` for an array, tensor or list."""
    if isinstance(samples, (np.ndarray, torch.Tensor)):
        return samples[idx]
    return [samples[i] for i in idx]


def as_batch(part) -> torch.Tensor:
    """A float32 tensor copy of a slice of an array (in the slice's memory order), or the
    stack of a list of equally shaped tensors."""
    if isinstance(part, (list, tuple)):
        return torch.stack(list(part))
    return torch.from_numpy(np.array(part, dtype=np.float32))


def split_tensors(samples: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray):
    """The training and validation tensors (None when ``val_idx`` is empty) of an array."""
    tensor = torch.from_numpy(samples)
    return tensor[train_idx], (tensor[val_idx] if len(val_idx) else None)


class TorchDetector(BaseDetector):
    """Base of the detectors that fit a torch network; see the module docstring."""

    #: what one sample is, for messages ("images", "rows", ...)
    _sample_noun = "samples"

    # --- the fit template -------------------------------------------------------------
    def _fit_samples(self, samples: np.ndarray | Sequence):
        """Run the fit steps on ``samples``; returns ``self``."""
        if len(samples) < 2:
            raise ValueError(f"need at least 2 normal {self._sample_noun} to fit, got {len(samples)}")
        self.device_ = resolve_device(self.device)
        seed_everything(self.random_state)
        train_idx, val_idx = split_validation(len(samples), self.validation_fraction, self.random_state)
        with cpu_threads(self.device_, self.verbose):
            train, val = self._training_data(samples, train_idx, val_idx)
            self._train(train, val)
            held_out = subset(samples, val_idx if len(val_idx) else train_idx)
            self._threshold_from_fit(samples, held_out)
        return self

    def _training_data(self, samples, train_idx: np.ndarray, val_idx: np.ndarray):
        """Build ``model_``; the training tensor and the validation one (None when empty)."""
        self.model_ = self._build()
        return split_tensors(samples, train_idx, val_idx)

    def _train(self, train: torch.Tensor, val: torch.Tensor | None) -> None:
        self._fit_network(train, val)

    def _epochs(self) -> int:
        """Training epochs: the ``epochs`` setting (a detector whose models differ in what
        they need resolves None to its model's)."""
        return int(self.epochs)

    def _fit_network(self, train: torch.Tensor, val: torch.Tensor | None, *, batch_size: int | None = None,
                     epochs: int | None = None, lr: float | None = None, on_epoch=None,
                     keep_best: bool = True) -> None:
        """Fit ``model_`` with Adam on ``_loss_fn()``; sets ``history_`` and ``best_epoch_``.
        ``batch_size``, ``epochs`` and ``lr`` default to the detector's attributes;
        ``on_epoch``, ``keep_best``: see ``fit_model``."""
        result = fit_model(self.model_, self._loss_fn(), train, val, epochs=int(epochs or self._epochs()),
                           batch_size=int(batch_size or self.batch_size), lr=lr or self.lr,
                           weight_decay=self.weight_decay, patience=self.patience, device=self.device_,
                           seed=self.random_state, verbose=self.verbose, on_epoch=on_epoch,
                           keep_best=keep_best)
        self.history_ = result.history
        self.best_epoch_ = result.best_epoch

    def _threshold_from_fit(self, samples, held_out) -> None:
        self._set_threshold_from(self._held_out_scores(held_out))

    # --- hooks ------------------------------------------------------------------------
    def _build(self) -> torch.nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def _loss_fn(self) -> Callable[[torch.nn.Module, torch.Tensor], torch.Tensor]:  # pragma: no cover
        """``loss(output, batch)``, ``output`` the network's training forward pass on the
        batch; see ``fit_model``."""
        raise NotImplementedError

    def _held_out_scores(self, held_out) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    # --- scoring ----------------------------------------------------------------------
    def _batched(self, samples, fn: Callable[[torch.Tensor], torch.Tensor], batch_size: int = 256,
                 layout: torch.memory_format = torch.contiguous_format) -> np.ndarray:
        """``fn`` of the samples in batches of ``batch_size``, on ``device_``, without
        gradients, concatenated as one array (its first axis the samples'); ``layout``:
        the memory format of the batches (channels-last for 2-D convolutions)."""
        out = []
        with torch.no_grad(), cpu_threads(self.device_):
            for start in range(0, len(samples), batch_size):
                xb = as_batch(samples[start:start + batch_size]).to(self.device_)
                if layout != torch.contiguous_format:
                    xb = xb.contiguous(memory_format=layout)
                out.append(fn(xb).cpu().numpy())
        return np.concatenate(out)

    # --- persistence of the network ---------------------------------------------------
    def _network_tensors(self) -> dict[str, torch.Tensor]:
        """``model_``'s weights, named ``model.<parameter>`` in the saved file."""
        return {f"model.{k}": v for k, v in self.model_.state_dict().items()}

    def _restore_network(self, tensors: dict[str, torch.Tensor]) -> None:
        """Build ``model_`` on ``device_`` from the ``model.*`` tensors of a saved file."""
        self.device_ = resolve_device(self.device)
        self.model_ = self._build()
        self.model_.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
        self.model_.to(self.device_).eval()
