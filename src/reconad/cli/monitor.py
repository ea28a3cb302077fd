"""``reconad monitor``: score a live sensor stream causally and raise alerts."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from reconad.cli.common import MODEL_HELP, err_console


def monitor(
    model: Path = typer.Option(..., help="A series model: " + MODEL_HELP[0].lower() + MODEL_HELP[1:]),
    input: str = typer.Option(..., "--input", help="CSV file to follow as it grows, or - for standard input."),
    alerts: Optional[Path] = typer.Option(None, "--out", "--alerts", help="JSON-lines file the alerts are "
                                          "appended to (default: standard output)."),
    checkpoint: Optional[Path] = typer.Option(None, help="File that keeps the place in the input and the "
                                              "monitor's state; a rerun resumes from it."),
    log: Optional[Path] = typer.Option(None, help="Log file (the log also goes to standard error)."),
    consecutive: Optional[int] = typer.Option(None, help="Steps over the threshold in a row needed for an "
                                              "alert (default: the model's alert rule, alert_enter)."),
    top: int = typer.Option(3, help="Sensors named in each alert."),
    follow: bool = typer.Option(True, help="Keep reading a file as it grows (Ctrl-C stops)."),
    idle_timeout: Optional[float] = typer.Option(None, help="Stop following after this many idle seconds."),
    encoding: str = typer.Option("utf-8", help="Text encoding of the stream (e.g. cp932)."),
    alert_config: Optional[Path] = typer.Option(None, help="Alert channels (JSON: webhook, e-mail, log); "
                                                "each alert is also sent there."),
    threshold_rule: Optional[str] = typer.Option(None, help="fixed (default), rolling_quantile, pot, or JSON "
                                                 "such as '{\"method\": \"pot\", \"risk\": 1e-3}'."),
):
    """Score a live sensor stream causally; one JSON line per alert, with the model version."""
    from reconad.ops.loading import load_model

    det = load_model(model)
    if det.kind != "series":
        raise ValueError(f"{model} is a {det.kind} model; monitor follows a sensor stream with a series model")
    if input != "-" and not Path(input).is_file():
        raise FileNotFoundError(f"input file not found: {input}")
    summary = _run(det, input, alerts=alerts, log_file=log, consecutive=consecutive, top=top,
                   follow=follow, idle_timeout=idle_timeout, encoding=encoding,
                   alert_config=alert_config, threshold_rule=threshold_rule, checkpoint=checkpoint)
    err_console.print(f"rows {summary['rows']}, scored {summary['scored']}, malformed {summary['malformed']}, "
                      f"alerts {summary['alerts']} (model {det.model_version_})", highlight=False)


def _run(det, source: str, *, alerts: Path | None, log_file: Path | None, consecutive: int | None, top: int,
         follow: bool, idle_timeout: float | None, encoding: str, alert_config: Path | None,
         threshold_rule: str | None, checkpoint: Path | None = None) -> dict:
    from reconad.ops.monitor import Monitor, alert_ids_in, check_alert_file, check_encoding, watch
    from reconad.thresholds.adaptive import parse_rule

    check_encoding(encoding)
    if alerts is not None:
        check_alert_file(alerts)
    rule = parse_rule(threshold_rule)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    logger = logging.getLogger("reconad.ops.monitor")
    logger.setLevel(logging.INFO)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    for h in handlers:
        h.setFormatter(fmt)
        logger.addHandler(h)
    dispatcher = None
    if alert_config is not None:
        from reconad.ops.alerts import AlertDispatcher

        dispatcher = AlertDispatcher(alert_config, defaults={"model_version": det.model_version_})
    seen = alert_ids_in(alerts) if alerts is not None else set()
    sink = open(alerts, "a", encoding="utf-8") if alerts is not None else sys.stdout
    series = "-" if source == "-" else str(Path(source).resolve())
    mon = Monitor(det, consecutive=consecutive, top_k=top, threshold_rule=rule, series=series)
    logger.info("monitoring %s with model %s, threshold %.6g, %d consecutive step(s) to start an alert, "
                "%d at or below %.6g to end it", source, det.model_version_, mon.threshold, mon.consecutive,
                mon.leave, mon.threshold * mon.release)

    def emit(alert: dict) -> None:
        sink.write(json.dumps(alert, ensure_ascii=False) + "\n")
        sink.flush()
        if sink is not sys.stdout:
            os.fsync(sink.fileno())
        if dispatcher is not None:
            dispatcher.submit(alert)

    try:
        watch(mon, source, emit, follow=follow, idle_timeout=idle_timeout, encoding=encoding,
              checkpoint=checkpoint, seen_ids=seen)
    except KeyboardInterrupt:
        logger.info("stopped")
    finally:
        summary = mon.summary()
        logger.info("summary: %s", json.dumps(summary))
        if sink is not sys.stdout:
            sink.close()
        if dispatcher is not None and not dispatcher.close(timeout=10):
            logger.warning("some alerts are not delivered yet; they wait in %s", dispatcher.outbox)
        for h in handlers:
            logger.removeHandler(h)
            h.close()
    return summary
