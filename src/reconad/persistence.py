"""A fitted detector on disk: a folder with ``config.json`` and ``weights.safetensors``.

``config.json`` holds the detector's class, its parameters, its fitted settings (input
shape, threshold, ...), the library versions, and the SHA-256 of the weights file.
``weights.safetensors`` holds every tensor: model weights under ``model.``, other fitted
arrays (scaler state, validation scores) under ``state.``. Nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from reconad._atomic import atomic_dir
from reconad._version import __version__

FORMAT = "reconad-model"
FORMAT_VERSION = 1
CONFIG = "config.json"
WEIGHTS = "weights.safetensors"


class ModelFileError(ValueError):
    """A model folder that is missing, incomplete, tampered with, or of an unknown version."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_folder(path: str | os.PathLike, config: dict, tensors: dict[str, torch.Tensor]) -> Path:
    """Write ``config`` and ``tensors`` to folder ``path`` atomically (replacing it)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ModelFileError(f"cannot save model: {path} exists and is not a folder")
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    with atomic_dir(path) as tmp:
        save_file(tensors, str(tmp / WEIGHTS))
        full = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "reconad_version": __version__,
            "torch_version": torch.__version__,
            "numpy_version": np.__version__,
            **config,
            "weights_sha256": _sha256(tmp / WEIGHTS),
        }
        (tmp / CONFIG).write_text(json.dumps(full, indent=2, allow_nan=True), encoding="utf-8")
    return path


def load_folder(path: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    """Read and verify a model folder; returns ``(config, tensors)``."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"model folder not found: {path}")
    if not path.is_dir():
        raise ModelFileError(f"not a model folder: {path}")
    cfg_path, w_path = path / CONFIG, path / WEIGHTS
    for p in (cfg_path, w_path):
        if not p.exists():
            raise ModelFileError(f"model folder {path} is incomplete: {p.name} is missing")
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{cfg_path} is not valid JSON ({exc}); the file is damaged") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ModelFileError(f"{cfg_path} is not a reconad model configuration")
    version = config.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise ModelFileError(
            f"model format version {version!r} cannot be read by reconad {__version__} "
            f"(reads versions 1..{FORMAT_VERSION}); upgrade reconad"
        )
    if _sha256(w_path) != config.get("weights_sha256"):
        raise ModelFileError(f"{w_path} does not match its checksum in {CONFIG}: "
                             "the file is truncated or was changed")
    try:
        tensors = load_file(str(w_path))
    except (SafetensorError, OSError) as exc:
        raise ModelFileError(f"cannot read {w_path}: {exc}") from None
    return config, tensors
