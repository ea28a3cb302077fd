"""The HTTP scoring service (FastAPI): :func:`create_app` and :func:`serve`."""

from reconad.serve.app import create_app, serve

__all__ = ["create_app", "serve"]
