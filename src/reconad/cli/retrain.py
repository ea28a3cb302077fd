"""``reconad retrain``: fit a copy of a saved model on new normal data."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from reconad.cli.common import MODEL_HELP, console


def retrain(
    model: Path = typer.Option(..., help=MODEL_HELP),
    data: List[Path] = typer.Option(..., "--data", help="New normal training data: image files or folders, "
                                    "or CSV files (series, tables)."),
    out: Path = typer.Option(..., help="Model folder to write."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Change one setting: NAME=VALUE (repeatable)."),
    registry: Optional[Path] = typer.Option(None, help="Register the new model in this registry folder."),
    promote: bool = typer.Option(False, help="Make the registered model the current version."),
    quiet: bool = typer.Option(False, help="No progress bar."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the model already at --out."),
):
    """Fit a copy of a saved detector, with the same configuration, on new normal data."""
    from reconad.ops.loading import load_model
    from reconad.ops.retrain import parse_overrides, retrain as do_retrain

    if promote and registry is None:
        raise ValueError("--promote needs --registry")
    params = load_model(model).get_params(deep=False)
    overrides = parse_overrides(set_, params)
    if quiet and "verbose" in params:
        overrides.setdefault("verbose", 0)
    from reconad.persistence import check_output

    check_output(out, overwrite)
    result = do_retrain(model, data, out, overrides=overrides, registry=registry, promote=promote)
    m = result["metrics"]
    console.print(f"saved {out} (retrained from {result['parent_version']}; threshold "
                  f"{m['previous_threshold']:.6g} -> {m['threshold']:.6g}; {m['fit_seconds']:.0f} s; "
                  f"data {result['data_fingerprint'].removeprefix('sha256:')[:12]})", highlight=False, soft_wrap=True)
    if "version" in result:
        console.print(f"registered as {result['version']} in {registry}"
                      + (" and made current" if promote else f"; promote with: reconad models promote "
                         f"{result['version']} --registry {registry}"), highlight=False, soft_wrap=True)
