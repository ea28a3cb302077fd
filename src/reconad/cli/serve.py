"""``reconad serve``: a model behind an HTTP scoring service."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from reconad.cli.common import MODEL_HELP, console


def serve(
    model: Path = typer.Option(..., help=MODEL_HELP),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0: every network)."),
    port: int = typer.Option(8000),
    token: Optional[str] = typer.Option(None, envvar="RECONAD_TOKEN",
                                        help="Require 'Authorization: Bearer TOKEN' (or set RECONAD_TOKEN)."),
    max_request_mb: float = typer.Option(10.0, help="Largest request body in MiB."),
    max_batch: int = typer.Option(1024, help="Most samples in one request."),
    threads: int = typer.Option(1, help="Torch threads for scoring (1 suits many small requests)."),
    alert_config: Optional[Path] = typer.Option(None, help="Alert channels (JSON): samples labelled "
                                                "anomalous are sent there too."),
    engine: str = typer.Option("auto", help="Image models: onnx (the exported graph in ONNX Runtime), "
                               "python (the detector), or auto (onnx when it can)."),
    batch_wait_ms: float = typer.Option(0.0, help="Image models: also wait this long for more requests "
                                        "to batch (0: batch only those already waiting)."),
):
    """Serve a model over HTTP: POST /score, GET /health, GET /model, /docs. Answers name
    the model version."""
    try:
        from reconad.serve.app import serve as run_service
    except ImportError as exc:
        raise ValueError(str(exc)) from None
    from reconad.ops.loading import resolve

    if max_batch < 1 or max_request_mb <= 0 or threads < 1:
        raise ValueError("--max-batch, --max-request-mb and --threads must be positive")
    source = resolve(model)  # a clear error for a missing model before the service starts
    console.print(f"serving {model} (version {source.version}) on http://{host}:{port} (API page: /docs)"
                  f"{'; bearer token required' if token else ''}", highlight=False)
    run_service(model, host=host, port=port, token=token or None,
                max_request_bytes=int(max_request_mb * 1024 * 1024), max_batch=max_batch, threads=threads,
                alert_config=alert_config, engine=engine, batch_wait_ms=batch_wait_ms)
