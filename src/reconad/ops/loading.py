"""Open a saved model, wherever it is kept: the one loader of the command line, the scoring
service, Dask scoring, retraining and the monitor.

A model is named by one of

* a model folder (``config.json`` + ``weights.safetensors``, as ``det.save`` writes it);
* a registry folder: its current version;
* ``REGISTRY@VERSION``, e.g. ``model-registry@v0002``: that version of a registry.

``resolve`` turns the name into a :class:`ModelSource` (the absolute model folder, its
version, and ``name``: a name for this very version that stays valid when the registry's
current version moves on, as Dask workers need);
``load_model`` loads the detector and sets ``model_version_`` on it: the registry's version
name (``v0002``), or for a model folder outside a registry the first 12 hex digits of its
weights' checksum. Outputs record this version.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from reconad.models.catalogue import KINDS
from reconad.ops.registry import ModelRegistry, is_registry, model_version

VERSION_MARK = "@"


@dataclass(frozen=True)
class ModelSource:
    """Where a named model lives: its ``folder``, its ``version``, and the ``registry`` it
    came from (None for a plain model folder)."""

    folder: Path
    version: str
    registry: Path | None = None

    @property
    def name(self) -> str:
        """A name that opens this very model again, even after the registry's current
        version has moved on: ``REGISTRY@VERSION``, or the model folder."""
        return f"{self.registry}{VERSION_MARK}{self.version}" if self.registry else str(self.folder)


def _split_version(text: str) -> tuple[str, str] | None:
    """``"reg@v0002"`` -> ``("reg", "v0002")``; None when there is no ``@VERSION`` suffix."""
    head, mark, version = text.rpartition(VERSION_MARK)
    if not mark or not head or not version or "/" in version or os.sep in version:
        return None
    return head, version


def resolve(model: str | os.PathLike) -> ModelSource:
    """The model folder and version that ``model`` names (see the module docstring)."""
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"a model is named by a folder path, got {type(model).__name__}")
    path = Path(model)
    if not path.exists():
        split = _split_version(os.fspath(model))
        if split is not None:
            head, version = split
            if not Path(head).exists():
                raise FileNotFoundError(f"model registry folder not found: {head}")
            if not is_registry(head):
                raise ValueError(f"{head} is not a model registry (no registry.json), so "
                                 f"{VERSION_MARK}{version} names nothing; give the folder alone")
            reg = ModelRegistry(head)
            return ModelSource(reg.path(version).resolve(), version, Path(head).resolve())
        raise FileNotFoundError(f"model folder not found: {path}")
    if is_registry(path):
        cur = ModelRegistry(path).current()
        if cur is None:
            raise ValueError(f"registry {path} has no current version; promote one first "
                             f"(reconad models promote VERSION --registry {path}), or name one as "
                             f"{path}{VERSION_MARK}VERSION")
        return ModelSource(ModelRegistry(path).path(cur["version"]).resolve(), cur["version"], path.resolve())
    return ModelSource(path.resolve(), model_version(path))


def load_model(model: str | os.PathLike):
    """The detector that ``model`` names, with ``model_version_`` set."""
    from reconad.detectors.base import load

    source = resolve(model)
    det = load(source.folder)           # checks the folder, with load's messages
    det.model_version_ = source.version
    return det


def declared_kind(detector) -> str:
    """The kind of data ``detector`` declares (its class attribute ``kind``); a
    ``TypeError`` for a detector that declares none."""
    kind = getattr(detector, "kind", None)
    if kind not in KINDS:
        raise TypeError(f"{type(detector).__name__} declares no kind of data (a class attribute "
                        f"kind = {' | '.join(map(repr, KINDS))}), so what it takes is unknown")
    return kind
