"""Fitting and scoring for ``ImageDetector(model="anogan" | "fanogan")``."""

from __future__ import annotations

import numpy as np
import torch

from reconad.data.images import to_float_array
from reconad.training.gan import fit_encoder, fit_gan
from reconad.models.catalogue import entries
from reconad.training.loop import resolve_device, seed_everything, split_validation


def is_gan(model: str) -> bool:
    return any(e.name == model and e.family == "gan" for e in entries("image"))


def fit(det, X):
    """Train the GAN (and the f-AnoGAN encoder) on normal images; threshold from the
    held-out images' scores. Returns ``det``."""
    data = to_float_array(X)
    if len(data) < 2:
        raise ValueError(f"need at least 2 normal images to fit, got {len(data)}")
    det.input_shape_ = tuple(int(v) for v in data.shape[1:])
    det.device_ = resolve_device(det.device)
    seed_everything(det.random_state)
    det.model_ = det._build()
    tr_idx, val_idx = split_validation(len(data), det.validation_fraction, det.random_state)
    tensor = torch.from_numpy(data)
    train, val = tensor[tr_idx], tensor[val_idx] if len(val_idx) else None
    history = fit_gan(det.model_, train, epochs=det.epochs, batch_size=det.batch_size, lr=det.lr,
                      device=det.device_, seed=det.random_state)
    det.best_epoch_ = det.epochs - 1
    if det.model == "fanogan":
        result = fit_encoder(det.model_, train, val, epochs=det.epochs, batch_size=det.batch_size,
                             lr=det.lr, device=det.device_, seed=det.random_state, verbose=det.verbose)
        history.update(result.history)
        det.best_epoch_ = result.best_epoch
    det.history_ = history
    held_out = val if val is not None else train
    det._set_threshold_from(scores(det, held_out.numpy()))
    return det


def scores(det, data: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Anomaly score per image, in batches (AnoGAN searches each batch's codes together)."""
    det.model_.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            xb = torch.from_numpy(data[start:start + batch_size]).to(det.device_)
            out.append(det.model_.anomaly_score(xb).cpu().numpy())
    return np.concatenate(out).astype(np.float64)
