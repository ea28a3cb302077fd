"""``reconad alerts``: send a test alert, show or flush the outbox."""

from __future__ import annotations

from pathlib import Path

import typer

from reconad.cli.common import console, err_console

alerts_app = typer.Typer(help="Alert channels: send a test alert, show or flush the outbox.", no_args_is_help=True)
ALERTS_CONFIG = typer.Option(..., "--config", help="Alert configuration (JSON).")


@alerts_app.command("test")
def alerts_test(config: Path = ALERTS_CONFIG,
                message: str = typer.Option("test alert from reconad", help="Text of the alert."),
                timeout: float = typer.Option(10.0, help="Seconds to keep retrying.")):
    """Send one test alert to every channel now (grouping and rate limits skipped)."""
    from reconad.ops.alerts import AlertDispatcher

    d = AlertDispatcher(config, background=False, log=lambda line: err_console.print(line, highlight=False))
    d.submit({"kind": "test", "message": message})
    ok = d.close(timeout=timeout)
    for st in d.status():
        state = "delivered" if st["pending"] == 0 else f"{st['pending']} waiting: {st['last_error']}"
        console.print(f"{st['channel']}: {state}", highlight=False)
    if not ok:
        raise typer.Exit(1)


@alerts_app.command("status")
def alerts_status(config: Path = ALERTS_CONFIG):
    """Alerts waiting in the outbox, per channel."""
    from reconad.ops.alerts import AlertDispatcher

    d = AlertDispatcher(config, background=False)
    for name, n in d.pending().items():
        console.print(f"{name}: {n} waiting in {d.outbox / name}", highlight=False)


@alerts_app.command("flush")
def alerts_flush(config: Path = ALERTS_CONFIG, timeout: float = typer.Option(30.0, help="Seconds to keep retrying.")):
    """Deliver every alert waiting in the outbox now, retrying with back-off up to TIMEOUT."""
    from reconad.ops.alerts import AlertDispatcher

    d = AlertDispatcher(config, background=False, log=lambda line: err_console.print(line, highlight=False))
    ok = d.close(timeout=timeout)
    console.print("outbox empty" if ok else f"still waiting: {d.pending()}", highlight=False)
    if not ok:
        raise typer.Exit(1)
