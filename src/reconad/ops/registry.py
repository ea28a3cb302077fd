"""A model registry: a folder of numbered model versions, one of them current.

Layout::

    REGISTRY/
      registry.json          index: versions, the current one, the promotion history
      versions/v0001/        a copy of the saved model (config.json, weights.safetensors)
      versions/v0001/meta.json   version, created, training-data fingerprint, metrics, threshold

Each version's ``config.json`` carries ``"model_version": "v0001"``, so a detector loaded
from it knows its version (``det.model_version_``) and every score and alert can record
it. Every write is atomic (temporary name, then rename). One process at a time should
change a registry; any number may read it.

Examples
--------
>>> reg = ModelRegistry("model-registry")                        # doctest: +SKIP
>>> v = reg.register("model", data_fingerprint=data_fingerprint(["normal/"]),
...                  metrics={"roc_auc": 0.99})                  # doctest: +SKIP
>>> reg.promote(v["version"])                                    # doctest: +SKIP

Opening a model (a model folder, a registry for its current version, or
``REGISTRY@VERSION``) is :mod:`reconad.ops.loading`'s job:
``load_model("model-registry")``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

from reconad import persistence
from reconad._atomic import atomic_dir, write_text

INDEX = "registry.json"
META = "meta.json"


def data_fingerprint(paths) -> str:
    """SHA-256 over the names (relative to each given path) and bytes of every file under
    ``paths`` (files or folders), in sorted order: the same data gives the same print."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    h = hashlib.sha256()
    n = 0
    for root in map(Path, paths):
        if not root.exists():
            raise FileNotFoundError(f"training data not found: {root}")
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for f in files:
            rel = f.relative_to(root).as_posix() if root.is_dir() else f.name
            h.update(rel.encode("utf-8") + b"\0")
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            h.update(b"\0")
            n += 1
    if n == 0:
        raise ValueError(f"no files found under {', '.join(map(str, paths))}")
    return f"sha256:{h.hexdigest()}"


def model_version(model) -> str:
    """The version of a saved model folder or a loaded detector: the registry's version name
    when it came from a registry, else the first 12 hex digits of its weights' checksum."""
    if not isinstance(model, (str, os.PathLike)):
        version = getattr(model, "model_version_", None)
        if version is None:
            raise ValueError("this detector has no version: save it, or load it from a file or a registry")
        return str(version)
    if not Path(model).exists():
        raise persistence.ModelFileError(f"model folder not found: {model}")
    cfg_path = Path(model) / persistence.CONFIG
    if not cfg_path.is_file():
        raise persistence.ModelFileError(f"not a model folder (no {persistence.CONFIG}): {model}")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise persistence.ModelFileError(f"{cfg_path} is not valid JSON ({exc})") from None
    return str(cfg.get("model_version") or str(cfg.get("weights_sha256", ""))[:12])


def is_registry(path) -> bool:
    return (Path(path) / INDEX).is_file()


class ModelRegistry:
    """Numbered model versions in a folder, with one current version and a history to roll
    back along. See the module docstring for the layout."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise ValueError(f"registry path {self.folder} exists and is not a folder")

    # -- index ----------------------------------------------------------------------------
    def _read(self) -> dict:
        index = self.folder / INDEX
        if not index.exists():
            return {"format": "reconad-registry", "format_version": 1, "versions": [], "current": None,
                    "history": []}
        try:
            data = json.loads(index.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{index} is not valid JSON ({exc}); the registry index is damaged") from None
        if data.get("format") != "reconad-registry":
            raise ValueError(f"{index} is not a reconad registry index")
        return data

    def _write(self, data: dict) -> None:
        write_text(self.folder / INDEX, json.dumps(data, indent=2))

    # -- public ---------------------------------------------------------------------------
    def list(self) -> list[dict]:
        """All versions, oldest first; each with ``current`` True or False."""
        data = self._read()
        return [{**v, "current": v["version"] == data["current"]} for v in data["versions"]]

    def get(self, version: str) -> dict:
        for v in self.list():
            if v["version"] == version:
                return v
        known = ", ".join(v["version"] for v in self.list()) or "none"
        raise ValueError(f"no version {version!r} in registry {self.folder} (versions: {known})")

    def path(self, version: str | None = None) -> Path:
        """The model folder of ``version`` (default: the current one)."""
        if version is None:
            cur = self.current()
            if cur is None:
                raise ValueError(f"registry {self.folder} has no current version")
            version = cur["version"]
        self.get(version)
        return self.folder / "versions" / version

    def current(self) -> dict | None:
        cur = self._read()["current"]
        return None if cur is None else self.get(cur)

    def register(self, model_path, data_fingerprint: str | None = None, metrics: dict | None = None,
                 note: str | None = None, parent: str | None = None) -> dict:
        """Copy a saved model into the registry as the next version (not yet current)."""
        model_path = Path(model_path)
        config, _ = persistence.load_folder(model_path)     # refuses a damaged model
        if metrics is not None and not isinstance(metrics, dict):
            raise TypeError(f"metrics must be a dict, got {type(metrics).__name__}")
        data = self._read()
        number = max((int(v["version"][1:]) for v in data["versions"]), default=0) + 1
        version = f"v{number:04d}"
        fitted = config.get("fitted", {})
        meta = {
            "version": version,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "detector": config.get("detector"),
            "params": config.get("params", {}),
            "threshold": fitted.get("threshold_"),
            "threshold_method": fitted.get("threshold_method_"),
            "data_fingerprint": data_fingerprint,
            "metrics": metrics or {},
            "weights_sha256": config.get("weights_sha256"),
            "source": str(model_path.resolve()),
            "parent": parent,
            "note": note,
        }
        with atomic_dir(self.folder / "versions" / version) as tmp:
            for f in (persistence.CONFIG, persistence.WEIGHTS):
                shutil.copy2(model_path / f, tmp / f)
            cfg = json.loads((tmp / persistence.CONFIG).read_text(encoding="utf-8"))
            cfg["model_version"] = version
            (tmp / persistence.CONFIG).write_text(json.dumps(cfg, indent=2, allow_nan=True), encoding="utf-8")
            (tmp / META).write_text(json.dumps(meta, indent=2, allow_nan=True), encoding="utf-8")
        data["versions"].append(meta)
        self._write(data)
        return {**meta, "current": False}

    def promote(self, version: str) -> dict:
        """Make ``version`` the current one (the one before is kept for ``rollback``)."""
        self.get(version)
        data = self._read()
        if data["current"] == version:
            return self.get(version)
        if data["current"] is not None:
            data["history"].append(data["current"])
        data["current"] = version
        data.setdefault("log", []).append({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                           "action": "promote", "version": version})
        self._write(data)
        return self.get(version)

    def rollback(self) -> dict:
        """Go back to the version that was current before the last promotion."""
        data = self._read()
        if not data["history"]:
            raise ValueError(f"nothing to roll back to in registry {self.folder}: "
                             f"{'no version was promoted before ' + data['current'] if data['current'] else 'no current version'}")
        previous = data["history"].pop()
        data.setdefault("log", []).append({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                           "action": "rollback", "from": data["current"], "version": previous})
        data["current"] = previous
        self._write(data)
        return self.get(previous)
