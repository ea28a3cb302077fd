"""The ``reconad`` command: the commands of this package, put together. Each command group
lives in its own module (train, score, evaluate, report, retrain, export, serve, drift,
tune, monitor, models, alerts); ``main`` turns bad input into one line on stderr."""

from __future__ import annotations

import sys

import typer

from reconad.cli import (alerts, drift, evaluate, export, monitor, registry, report, retrain, score, serve,
                         train, tune)
from reconad.cli.common import err_console

app = typer.Typer(help="reconad: anomaly detection in manufacturing by reconstruction, for images, "
                  "sensor series and tables.", no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False)

app.command()(train.demo)
app.command()(train.train)
app.command()(score.score)
app.command()(evaluate.evaluate)
app.command()(retrain.retrain)
app.add_typer(registry.models_app, name="models")
app.command()(drift.drift)
app.add_typer(alerts.alerts_app, name="alerts")
app.command()(tune.tune)
app.command()(monitor.monitor)
app.command("export")(export.export)
app.command("serve")(serve.serve)
app.command("report")(report.report)


def main() -> None:
    """Entry point: errors in the input become one line on stderr and exit code 2
    (scikit-learn's ``NotFittedError`` is a ``ValueError``)."""
    try:
        app()
    except (ValueError, TypeError, FileNotFoundError, FloatingPointError) as exc:
        err_console.print(f"error: {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
