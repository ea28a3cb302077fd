"""A model registry: a folder of numbered model versions, one of them current.

Layout::

    REGISTRY/
      registry.json          index: versions, the current one, the promotion history
      versions/v0001/        a copy of the saved model (config.json, weights.safetensors)
      versions/v0001/meta.json   version, created, training-data fingerprint, metrics, threshold

Each version's ``config.json`` carries ``"model_version": "v0001"``, so a detector loaded
from it knows its version (``det.model_version_``) and every score and alert can record
it. Every write is atomic (temporary name, then rename), and every change (register,
promote, roll back) reads, changes and writes the index under a file lock
(``registry.json.lock``), so processes that change one registry at once do not get the
same version number or lose each other's promotions. A version's files are checked
against their checksums before it is promoted, and the index is checked when read.

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

from filelock import FileLock, Timeout

from reconad import persistence
from reconad._atomic import atomic_dir, write_text

INDEX = "registry.json"
META = "meta.json"
LOCK = "registry.json.lock"
LOCK_TIMEOUT_S = 60.0


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


def read_metrics(path) -> dict:
    """The scalar metrics of a JSON file that holds an object (e.g. evaluate's metrics.json)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"metrics file not found: {path}")
    values = persistence.read_json(path, "metrics file")
    if not isinstance(values, dict):
        raise ValueError(f"metrics file {path} must hold a JSON object of name: value, "
                         f"got a {type(values).__name__}")
    return {str(k): v for k, v in values.items() if isinstance(v, (int, float, str, bool))}


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
    def _lock(self) -> FileLock:
        """The lock every read-modify-write of the index holds."""
        self.folder.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.folder / LOCK), timeout=LOCK_TIMEOUT_S)

    def _locked(self):
        lock = self._lock()
        try:
            lock.acquire()
        except Timeout:
            raise ValueError(f"registry {self.folder} is locked by another process for more than "
                             f"{LOCK_TIMEOUT_S:.0f} s ({self.folder / LOCK})") from None
        return lock

    def _read(self) -> dict:
        index = self.folder / INDEX
        if not index.exists():
            return {"format": "reconad-registry", "format_version": 1, "versions": [], "current": None,
                    "history": []}
        data = persistence.read_json(index, "registry index")
        problem = _index_problem(data)
        if problem:
            raise ValueError(f"{index} is not a valid reconad registry index: {problem}")
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
        with self._locked():
            return self._register(model_path, config, data_fingerprint, metrics, note, parent)

    def _register(self, model_path: Path, config: dict, data_fingerprint, metrics, note, parent) -> dict:
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
            persistence.write_config(tmp / persistence.CONFIG, cfg)
            (tmp / META).write_text(json.dumps(meta, indent=2, allow_nan=True), encoding="utf-8")
        data["versions"].append(meta)
        self._write(data)
        return {**meta, "current": False}

    def verify(self, version: str) -> None:
        """Raise ``ValueError`` unless the files of ``version`` match their checksums."""
        folder = self.path(version)
        try:
            persistence.load_folder(folder)
        except persistence.ModelFileError as exc:
            raise ValueError(f"version {version} of registry {self.folder} is damaged: {exc}") from None
        meta = self.get(version)
        cfg = json.loads((folder / persistence.CONFIG).read_text(encoding="utf-8"))
        if meta.get("weights_sha256") and cfg.get("weights_sha256") != meta["weights_sha256"]:
            raise ValueError(f"version {version} of registry {self.folder} has other weights than "
                             "were registered")

    def promote(self, version: str) -> dict:
        """Make ``version`` the current one (the one before is kept for ``rollback``); its
        files are verified first."""
        with self._locked():
            self.verify(version)
            data = self._read()
            if data["current"] == version:
                return self.get(version)
            self._promote(data, version)
        return self.get(version)

    def _promote(self, data: dict, version: str) -> None:
        if data["current"] is not None:
            data["history"].append(data["current"])
        data["current"] = version
        data.setdefault("log", []).append({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                           "action": "promote", "version": version})
        self._write(data)

    def rollback(self) -> dict:
        """Go back to the version that was current before the last promotion."""
        with self._locked():
            return self._rollback()

    def _rollback(self) -> dict:
        data = self._read()
        if not data["history"]:
            raise ValueError(f"nothing to roll back to in registry {self.folder}: "
                             f"{'no version was promoted before ' + data['current'] if data['current'] else 'no current version'}")
        previous = data["history"].pop()
        self.verify(previous)
        data.setdefault("log", []).append({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                           "action": "rollback", "from": data["current"], "version": previous})
        data["current"] = previous
        self._write(data)
        return self.get(previous)


def _index_problem(data) -> str | None:
    """What is wrong with a registry index (None when it is well formed)."""
    if not isinstance(data, dict):
        return f"it is a JSON {type(data).__name__}, not an object"
    if data.get("format") != "reconad-registry":
        return "its 'format' is not 'reconad-registry'"
    for key, kind in (("versions", list), ("history", list)):
        if not isinstance(data.get(key), kind):
            return f"{key!r} is missing or not a list"
    names = []
    for v in data["versions"]:
        if not isinstance(v, dict) or not isinstance(v.get("version"), str) \
                or not v["version"].startswith("v") or not v["version"][1:].isdigit():
            return f"a version entry is not an object with a name like 'v0001': {str(v)[:80]}"
        names.append(v["version"])
    if len(set(names)) != len(names):
        return "a version is listed twice"
    if data.get("current") is not None and data["current"] not in names:
        return f"the current version {data['current']!r} is not among the versions"
    if any(h not in names for h in data["history"]):
        return "the history names a version that is not listed"
    if "log" in data and not isinstance(data["log"], list):
        return "'log' is not a list"
    return None
