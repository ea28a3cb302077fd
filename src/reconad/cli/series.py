"""The series side of the ``reconad`` command: train, score, evaluate and monitor sensor
CSV files. ``cli.py`` calls these when the input is a CSV file or ``--kind series``."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pandas as pd

SERIES_SUFFIXES = {".csv", ".tsv", ".txt"}


def is_series_input(paths, kind: str) -> bool:
    """``--kind series``, or every path is a delimited text file."""
    if kind not in ("auto", "image", "series"):
        raise ValueError(f"unknown --kind {kind!r}; choose auto, image or series")
    if kind != "auto":
        return kind == "series"
    paths = [Path(p) for p in paths]
    return bool(paths) and all(p.is_file() and p.suffix.lower() in SERIES_SUFFIXES for p in paths)


def _columns(text: str | None) -> list[str] | None:
    return [c.strip() for c in text.split(",") if c.strip()] if text else None


def _read(path: Path, encoding: str | None, label_column: str | None = None):
    from reconad.data.csv import read_csv

    frame = read_csv(path, encoding=encoding)
    labels = None
    if label_column:
        if label_column not in frame.columns:
            raise ValueError(f"label column {label_column!r} not in {path}")
        labels = frame[label_column].to_numpy().astype(int)
    return frame, labels


def _sensor_frame(frame: pd.DataFrame, columns: list[str] | None, drop: list[str]) -> pd.DataFrame:
    if columns:
        return frame
    return frame.drop(columns=[c for c in drop if c in frame.columns])


def slow_sensors_option(text: str):
    """``--slow-sensors``: ``auto``, ``none`` or comma-separated column names."""
    text = text.strip()
    if text.lower() in ("auto", "none", ""):
        return None if text.lower() in ("none", "") else "auto"
    return _columns(text)


def train(normal: list[Path], out: Path, *, columns: str | None, drop: str | None, encoding: str | None,
          **params) -> str:
    from reconad.detectors import SeriesDetector

    cols = _columns(columns)
    drop_cols = _columns(drop) or []
    segments = [_sensor_frame(_read(p, encoding)[0], cols, drop_cols) for p in normal]
    det = SeriesDetector(columns=cols, **params).fit(segments)
    det.save(out)
    return (f"saved {out} (series, {det.n_features_} sensors: {', '.join(det.columns_)}; window "
            f"{det.window}; threshold {det.threshold_:.6g}; best epoch {det.best_epoch_ + 1}; "
            f"{det.n_filled_} missing values filled)")


def score(det, paths: list[Path], encoding: str | None) -> tuple[str, int, int]:
    """CSV text of file, timestamp (or row), score, label for every step of every file."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["file", "time", "score", "label"])
    n = n_anom = 0
    for p in paths:
        frame, _ = _read(p, encoding)
        frame = frame[det.columns_] if set(det.columns_) <= set(frame.columns) else frame
        s = det.decision_function(frame)
        labels = (s > det.threshold_).astype(int)
        times = frame.index.astype(str) if isinstance(frame.index, pd.DatetimeIndex) else range(len(s))
        writer.writerows((str(p), t, f"{v:.8g}", int(l)) for t, v, l in zip(times, s, labels))
        n += len(s)
        n_anom += int(labels.sum())
    return buf.getvalue(), n, n_anom


def evaluate(det, path: Path, label_column: str, out: Path, encoding: str | None) -> dict:
    from reconad.evaluation import metrics
    from reconad.evaluation import plots
    from reconad._atomic import write_text

    frame, y = _read(path, encoding, label_column)
    sensors = frame[det.columns_] if set(det.columns_) <= set(frame.columns) else frame
    scores = det.decision_function(sensors)
    result = metrics.series_evaluate(y, scores, det.threshold_, max_buffer=2 * int(det.window))
    result.update({"model": det.model, "window": int(det.window), "combine": det.combine})
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "metrics.json", json.dumps(result, indent=2))
    write_text(out / "report.txt", metrics.classification_report(y, scores, det.threshold_) +
               f"\nVUS-PR {result['vus_pr']:.4f}   FAR {result['far']:.4f}   MAR {result['mar']:.4f}   "
               f"point-adjusted F1 {result['f1_point_adjusted']:.4f}\n")
    plots.series_plot(sensors, scores, det.threshold_, out / "series.png", y_true=y,
                      y_pred=scores > det.threshold_)
    plots.loss_curve(det.history_, out / "loss.png", det.best_epoch_)
    return result


def monitor(det, source: str, *, alerts: Path | None, log_file: Path | None, consecutive: int | None, top: int,
            follow: bool, idle_timeout: float | None, encoding: str, alert_config: Path | None = None,
            threshold_rule: str | None = None) -> dict:
    from reconad.ops.monitor import Monitor, follow as follow_lines

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

        dispatcher = AlertDispatcher(alert_config, defaults={"model_version": getattr(det, "model_version_", None)})
    sink = open(alerts, "a", encoding="utf-8") if alerts is not None else sys.stdout
    rule = json.loads(threshold_rule) if threshold_rule and threshold_rule.lstrip().startswith("{") else threshold_rule
    mon = Monitor(det, consecutive=consecutive, top_k=top, threshold_rule=rule)
    logger.info("monitoring %s with threshold %.6g, %d consecutive step(s) to start an alert, %d at or below "
                "%.6g to end it", source, mon.threshold, mon.consecutive, mon.leave, mon.threshold * mon.release)
    try:
        for lines in follow_lines(source, follow=follow, idle_timeout=idle_timeout, encoding=encoding):
            for alert in mon.push_lines(lines):
                sink.write(json.dumps(alert, ensure_ascii=False) + "\n")
                if dispatcher is not None:
                    dispatcher.submit(alert)
            sink.flush()
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

