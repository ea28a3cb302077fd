"""``reconad models``: the model registry (list, register, promote, roll back)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from reconad.cli.common import console

models_app = typer.Typer(help="The model registry: list, register, promote, roll back. A registry "
                         "version is named REGISTRY@VERSION wherever a model is taken, e.g. "
                         "reconad score --model model-registry@v0002 ...", no_args_is_help=True)
REGISTRY_OPTION = typer.Option(Path("model-registry"), "--registry", help="Registry folder.")


@models_app.command("list")
def models_list(registry: Path = REGISTRY_OPTION,
                as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """List the versions; the current one is marked with *."""
    from reconad.ops.registry import ModelRegistry

    versions = ModelRegistry(registry).list()
    if as_json:
        sys.stdout.write(json.dumps(versions, indent=2) + "\n")
        return
    if not versions:
        console.print(f"no versions in {registry}")
        return
    for v in versions:
        data = (v["data_fingerprint"] or "-").removeprefix("sha256:")[:12]
        threshold = f"{v['threshold']:.6g}" if v["threshold"] is not None else "-"
        console.print(f"{'*' if v['current'] else ' '} {v['version']}  {v['created'][:16].replace('T', ' ')}  "
                      f"{v['detector']}  threshold {threshold}  data {data}  parent {v['parent'] or '-'}",
                      highlight=False, soft_wrap=True)
    console.print("(* current; details with --json)", highlight=False)


@models_app.command("register")
def models_register(model: Path = typer.Option(..., help="Saved model folder."),
                    registry: Path = REGISTRY_OPTION,
                    data: Optional[List[Path]] = typer.Option(None, "--data", help="Its training data (for the fingerprint)."),
                    metrics: Optional[Path] = typer.Option(None, help="JSON file of metrics (e.g. evaluate's metrics.json)."),
                    note: Optional[str] = typer.Option(None, help="A note to keep with the version."),
                    promote: bool = typer.Option(False, help="Make it the current version.")):
    """Add a saved model to the registry as the next version."""
    from reconad.ops.registry import ModelRegistry, data_fingerprint, read_metrics

    values = read_metrics(metrics) if metrics is not None else None
    reg = ModelRegistry(registry)
    entry = reg.register(model, data_fingerprint=data_fingerprint(data) if data else None,
                         metrics=values, note=note)
    if promote:
        reg.promote(entry["version"])
    console.print(f"registered {model} as {entry['version']} in {registry}" + (" (current)" if promote else ""))


@models_app.command("promote")
def models_promote(version: str = typer.Argument(..., help="Version to make current, e.g. v0002."),
                   registry: Path = REGISTRY_OPTION):
    """Make a version the current one."""
    from reconad.ops.registry import ModelRegistry

    v = ModelRegistry(registry).promote(version)
    console.print(f"current model in {registry}: {v['version']} (threshold {v['threshold']:.6g})")


@models_app.command("rollback")
def models_rollback(registry: Path = REGISTRY_OPTION):
    """Go back to the version that was current before the last promotion."""
    from reconad.ops.registry import ModelRegistry

    v = ModelRegistry(registry).rollback()
    console.print(f"rolled back: current model in {registry} is {v['version']} (threshold {v['threshold']:.6g})")
