"""The ``reconad`` command line (typer)."""

from reconad.cli.app import app, main

__all__ = ["app", "main"]
