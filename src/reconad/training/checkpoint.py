"""Training checkpoints: the state of an unfinished fit, saved after every epoch, so that
an interrupted run resumes where it stopped.

A checkpoint is a model folder (``persistence``: ``config.json`` with a checksum and
``weights.safetensors``) holding the model and optimizer tensors, the best weights so far,
the random generator and the loss history. It is written to a temporary name and renamed,
so a run killed while writing leaves the previous checkpoint intact. Nothing is unpickled.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from reconad import persistence

KIND = "training-checkpoint"


def save(path: str | os.PathLike, *, run: dict, epoch: int, model: torch.nn.Module,
         optimizer: torch.optim.Optimizer, generator: torch.Generator, best_state: dict | None,
         progress: dict) -> None:
    """Save the state after ``epoch`` (0-based, completed). ``run`` describes the run (sizes
    and settings) and must match on resume; ``progress`` is JSON-able (history, best, ...)."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    if best_state is not None:
        tensors.update({f"best.{k}": v for k, v in best_state.items()})
    opt = optimizer.state_dict()
    scalars: dict[str, dict] = {}
    for pid, state in opt["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{pid}.{key}"] = value
            else:
                scalars.setdefault(str(pid), {})[key] = value
    tensors["rng.generator"] = generator.get_state()
    config = {"kind": KIND, "run": run, "epoch": epoch, "progress": progress,
              "optimizer": {"param_groups": opt["param_groups"], "scalars": scalars},
              "has_best": best_state is not None}
    persistence.save_folder(path, config, tensors)


def load(path: str | os.PathLike, *, run: dict, model: torch.nn.Module,
         optimizer: torch.optim.Optimizer, generator: torch.Generator) -> dict | None:
    """Restore a checkpoint into ``model``, ``optimizer`` and ``generator``; returns
    ``{"epoch", "progress", "best_state"}``, or None when there is no checkpoint yet.
    Raises ``ValueError`` when the checkpoint belongs to a different run."""
    path = Path(path)
    if not (path / persistence.CONFIG).exists():
        return None
    config, tensors = persistence.load_folder(path, detector=False)
    if config.get("kind") != KIND:
        raise ValueError(f"{path} is not a training checkpoint")
    if config.get("run") != run:
        saved = config.get("run") or {}
        diff = sorted(k for k in set(saved) | set(run) if saved.get(k) != run.get(k))
        raise ValueError(f"the checkpoint in {path} was written by a different run (differs in "
                         f"{', '.join(diff)}); delete it or choose another checkpoint folder")

    def part(prefix: str) -> dict:
        return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

    model.load_state_dict(part("model."))
    opt_state: dict = {}
    for key, value in part("optimizer.").items():
        pid, name = key.split(".", 1)
        opt_state.setdefault(int(pid), {})[name] = value
    for pid, values in config["optimizer"]["scalars"].items():
        opt_state.setdefault(int(pid), {}).update(values)
    optimizer.load_state_dict({"state": opt_state, "param_groups": config["optimizer"]["param_groups"]})
    generator.set_state(tensors["rng.generator"])
    return {"epoch": int(config["epoch"]), "progress": config["progress"],
            "best_state": part("best.") if config["has_best"] else None}
