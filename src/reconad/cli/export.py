"""``reconad export``: a model as one ONNX or TorchScript graph."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from reconad.cli.common import MODEL_HELP, console


def export(
    model: Path = typer.Option(..., help=MODEL_HELP),
    format: str = typer.Option("onnx", "--format", help="onnx or torchscript."),
    out: Path = typer.Option(..., help="File to write."),
    input_dtype: Optional[str] = typer.Option(None, help="ONNX input type: uint8 (0..255) or float32 (0..1) "
                                              "for images (default uint8); float32 for series; "
                                              "float64 (default) or float32 for tables."),
    score: Optional[str] = typer.Option(None, help="Image models: another score term (e.g. elbo); "
                                        "needs --threshold."),
    threshold: Optional[float] = typer.Option(None, help="Threshold for the labels (default: the model's)."),
    anomaly_map: bool = typer.Option(True, "--map/--no-map", help="Image models: also output the anomaly map."),
):
    """Export a model as one graph: raw input in; score, label (and anomaly map) out."""
    from reconad.export import export as export_graph
    from reconad.ops.loading import load_model

    det = load_model(model)
    export_graph(det, out, format=format, input_dtype=input_dtype, score=score, threshold=threshold,
                 anomaly_map=anomaly_map)
    used = det.threshold_ if threshold is None else threshold
    console.print(f"wrote {out} ({format}; {det.kind} model {det.model_version_}; threshold {used:.6g})",
                  highlight=False)
