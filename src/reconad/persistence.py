"""A fitted detector on disk: a folder with ``config.json`` and ``weights.safetensors``.

``config.json`` holds the detector's class, its parameters, its fitted settings (input
shape, threshold, ...), the library versions, the SHA-256 of the weights file, and the
SHA-256 of the configuration itself (``config_sha256``, over its canonical JSON without
that key). Folders written before ``config_sha256`` existed still load: their weights are
verified, and their configuration is checked against the schema like any other.
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

from reconad._atomic import atomic_dir, recover
from reconad._version import __version__

FORMAT = "reconad-model"
FORMAT_VERSION = 1
CONFIG = "config.json"
WEIGHTS = "weights.safetensors"


class ModelFileError(ValueError):
    """A model folder that is missing, incomplete, tampered with, or of an unknown version."""


def read_json(path: str | os.PathLike, what: str, error: type[Exception] = ValueError):
    """The JSON value in the file ``path``; a file that is not valid JSON, or is nested too
    deeply to parse, raises ``error`` with a message that names the file as a ``what``."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path} is not valid JSON ({exc}); the {what} is damaged") from None
    except RecursionError:
        raise error(f"{path} is nested too deeply to parse as JSON; the {what} is damaged") from None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def config_checksum(config: dict) -> str:
    """SHA-256 of the canonical JSON of ``config`` without its ``config_sha256`` key."""
    body = {k: v for k, v in config.items() if k != "config_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=True, ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sealed(config: dict) -> dict:
    """``config`` with its ``config_sha256`` (set it last, after every other change)."""
    return {**config, "config_sha256": config_checksum(config)}


def write_config(path: str | os.PathLike, config: dict) -> None:
    """Write ``config`` (sealed with its checksum) to ``path`` (a ``config.json``)."""
    plain = json.loads(json.dumps(config, allow_nan=True))   # the checksum covers what is read back
    Path(path).write_text(json.dumps(sealed(plain), indent=2, allow_nan=True), encoding="utf-8")


def is_model_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder whose ``config.json`` says it is a reconad model."""
    cfg = Path(path) / CONFIG
    try:
        return json.loads(cfg.read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError, RecursionError):
        return False


def check_output(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Refuse an output path that would replace something other than a reconad model, or
    a model unless ``overwrite``. A missing path or an empty folder is fine."""
    path = Path(path)
    recover(path)
    if not os.path.lexists(path):
        return path
    if not path.is_dir():
        raise ModelFileError(f"output {path} exists and is not a folder; refusing to replace it")
    if not any(path.iterdir()):
        return path
    if not is_model_folder(path):
        raise ModelFileError(f"output folder {path} exists and is not a reconad model; refusing to "
                             "replace it (choose another --out)")
    if not overwrite:
        raise ModelFileError(f"output folder {path} already holds a model; pass --overwrite to replace it")
    return path


def save_folder(path: str | os.PathLike, config: dict, tensors: dict[str, torch.Tensor]) -> Path:
    """Write ``config`` and ``tensors`` to folder ``path`` atomically (replacing it)."""
    path = Path(path)
    recover(path)
    if path.exists() and not path.is_dir():
        raise ModelFileError(f"cannot save model: {path} exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not is_model_folder(path):
        raise ModelFileError(f"cannot save model: folder {path} exists and is not a reconad model; "
                             "refusing to replace it")
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
        write_config(tmp / CONFIG, full)
    return path


def load_folder(path: str | os.PathLike, detector: bool = True) -> tuple[dict, dict[str, torch.Tensor]]:
    """Read and verify a model folder; returns ``(config, tensors)``. ``detector`` False
    skips the detector schema (for other folders of this format, e.g. training checkpoints);
    the checksums are verified in any case."""
    path = Path(path)
    recover(path)
    if not path.exists():
        raise ModelFileError(f"model folder not found: {path}")
    if not path.is_dir():
        raise ModelFileError(f"not a model folder: {path}")
    cfg_path, w_path = path / CONFIG, path / WEIGHTS
    for p in (cfg_path, w_path):
        if not p.exists():
            raise ModelFileError(f"model folder {path} is incomplete: {p.name} is missing")
    config = read_json(cfg_path, "model configuration", ModelFileError)
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ModelFileError(f"{cfg_path} is not a reconad model configuration")
    version = config.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise ModelFileError(
            f"model format version {version!r} cannot be read by reconad {__version__} "
            f"(reads versions 1..{FORMAT_VERSION}); upgrade reconad"
        )
    if "config_sha256" in config and config_checksum(config) != config["config_sha256"]:
        raise ModelFileError(f"{cfg_path} does not match its checksum: the configuration was changed "
                             "or damaged")
    problem = config_problem(config) if detector else None
    if problem:
        raise ModelFileError(f"{cfg_path} is not a valid model configuration: {problem}")
    if _sha256(w_path) != config.get("weights_sha256"):
        raise ModelFileError(f"{w_path} does not match its checksum in {CONFIG}: "
                             "the file is truncated or was changed")
    try:
        tensors = load_file(str(w_path))
    except (SafetensorError, OSError) as exc:
        raise ModelFileError(f"cannot read {w_path}: {exc}") from None
    return config, tensors


# --- the schema of config.json ---------------------------------------------------------------
_MAX_DEPTH = 12
_JSON_SCALARS = (str, int, float, bool, type(None))


def _depth(value, level: int = 0) -> int:
    if level > _MAX_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level


def config_problem(config: dict) -> str | None:
    """What is wrong with a model configuration (None when it fits the schema): the keys
    every model has, their types, a finite threshold, and a bounded nesting depth."""
    import math

    need = {"detector": str, "params": dict, "fitted": dict, "weights_sha256": str}
    for key, kind in need.items():
        if key not in config:
            return f"key {key!r} is missing"
        if not isinstance(config[key], kind):
            return f"{key!r} must be a {kind.__name__}, got {type(config[key]).__name__}"
    for key in ("reconad_version", "torch_version", "numpy_version", "model_version"):
        if key in config and not isinstance(config[key], (str, type(None))):
            return f"{key!r} must be a string, got {type(config[key]).__name__}"
    if len(config["weights_sha256"]) != 64:
        return "'weights_sha256' is not a SHA-256 hex digest"
    if _depth(config) > _MAX_DEPTH:
        return f"it is nested more than {_MAX_DEPTH} levels deep"
    for name in config["params"]:
        if not isinstance(name, str) or not name.isidentifier():
            return f"parameter name {name!r} is not an identifier"
    fitted = config["fitted"]
    for key in ("threshold_", "threshold_method_"):
        if key not in fitted:
            return f"fitted setting {key!r} is missing"
    t = fitted["threshold_"]
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
        return f"the threshold must be a finite number, got {t!r}"
    if not isinstance(fitted["threshold_method_"], str):
        return "'threshold_method_' must be a string"
    return None
