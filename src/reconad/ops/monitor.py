"""Live monitoring: score each new row of a sensor stream causally and raise alerts.

``Monitor(detector).push(values, timestamps)`` takes the rows that have arrived (any
number, in order), scores each new step with the window that ends at it (the ``"last"``
combine: only past and present rows), and returns the alerts. An alert is raised when
``consecutive`` steps in a row exceed the threshold (once per episode, at the step that
completes the run). Rows are batched: one forward pass scores all the rows that arrived
together. The first ``window - 1`` rows only fill the history.

``Monitor.push_lines(lines)`` does the same for text lines of a delimited file (the first
line is its header); a malformed line (wrong number of fields, a value that is not a
number) is logged, counted in ``n_malformed`` and skipped; an empty sensor field is taken
from the previous row (counted in ``n_filled``). ``follow(path)`` yields the lines of a
file as it grows (or of standard input for ``"-"``), in batches of what is available.
"""

from __future__ import annotations

import codecs
import logging
import os
import sys
import time
from typing import Iterator

import numpy as np
import pandas as pd

from reconad.data.csv import sniff_delimiter
from reconad.data.series import apply_scaler
from reconad.scoring.windows import make_windows
from reconad.thresholds.episodes import EpisodeState, episodes
from reconad.thresholds.episodes import starts as episode_starts

log = logging.getLogger("reconad.ops.monitor")
log.addHandler(logging.NullHandler())


class Monitor:
    """Causal, batched scoring of a stream with a fitted ``SeriesDetector``.

    Parameters
    ----------
    detector : fitted SeriesDetector
    consecutive, leave, release : int, int, float or None
        Steps over the threshold needed in a row for an alert; steps at or below
        ``release * threshold`` needed in a row to end it. None takes the detector's
        ``alert_enter``, ``alert_leave`` and ``alert_release``.
    top_k : int, default 3
        Sensors named in an alert (largest contributions first).
    threshold : float or None
        Overrides ``detector.threshold_``.
    threshold_rule : str, dict or None
        How the threshold follows the stream (see :mod:`reconad.thresholds.adaptive`):
        None or ``"fixed"`` keeps it; ``"rolling_quantile"`` or ``"pot"`` (or a dict with
        ``method`` and its settings) re-estimate it from recent normal-looking scores,
        within bounds. The steps of one ``push`` are judged by the threshold before it.

    Attributes
    ----------
    n_rows, n_scored, n_malformed, n_filled, n_alerts : counters
    last_scores : scores of the steps of the latest ``push`` (NaN while warming up)
    last_flags : whether each step of the latest ``push`` lies inside an alert episode
    """

    def __init__(self, detector, consecutive: int | None = None, top_k: int = 3, threshold: float | None = None,
                 threshold_rule: str | dict | None = None, leave: int | None = None,
                 release: float | None = None):
        from reconad.thresholds.adaptive import make_threshold

        detector._check_fitted()
        consecutive = getattr(detector, "alert_enter", 1) if consecutive is None else consecutive
        leave = getattr(detector, "alert_leave", 1) if leave is None else leave
        release = getattr(detector, "alert_release", 1.0) if release is None else release
        if int(consecutive) < 1 or int(leave) < 1:
            raise ValueError(f"consecutive and leave must be at least 1, got {consecutive} and {leave}")
        if not 0 < float(release) <= 1:
            raise ValueError(f"release must be in (0, 1], got {release}")
        self.detector = detector
        self.consecutive = int(consecutive)
        self.leave = int(leave)
        self.release = float(release)
        self.top_k = int(top_k)
        self.threshold = float(detector.threshold_ if threshold is None else threshold)
        self.columns = list(detector.columns_)
        self.window = int(detector.window)
        self.model_version = getattr(detector, "model_version_", None)
        self.threshold_rule = make_threshold(threshold_rule, detector.decision_scores_, self.threshold,
                                             log=log.info)
        self._history = np.empty((0, len(self.columns)), np.float32)
        self._last_raw: np.ndarray | None = None
        self._episode = EpisodeState()
        self.n_rows = self.n_scored = self.n_malformed = self.n_filled = self.n_alerts = 0
        self.last_scores = np.empty(0)
        self.last_flags = np.zeros(0, bool)
        self._header: list[str] | None = None
        self._delimiter: str | None = None
        self._line_no = 0

    # --- rows -------------------------------------------------------------------------
    def push(self, values, timestamps=None) -> list[dict]:
        """Score rows ``(m, F)`` (array, or DataFrame with the model's columns) that have
        just arrived; returns the alerts they raise."""
        if isinstance(values, pd.DataFrame):
            if timestamps is None and isinstance(values.index, pd.DatetimeIndex):
                timestamps = values.index
            missing = [c for c in self.columns if c not in values.columns]
            if missing:
                raise ValueError(f"rows lack the model's column(s) {', '.join(missing)}")
            values = values[self.columns].to_numpy(np.float64)
        raw = np.array(values, dtype=np.float64, ndmin=2)
        if raw.shape[1] != len(self.columns):
            raise ValueError(f"rows have {raw.shape[1]} values, the model expects {len(self.columns)}")
        m = len(raw)
        if m == 0:
            self.last_scores = np.empty(0)
            return []
        raw = self._fill(raw)
        first_row = self.n_rows
        self.n_rows += m
        stamps = [None] * m if timestamps is None else [str(t) for t in timestamps]
        scaled = apply_scaler(raw, self.detector.center_, self.detector.scale_)
        joined = np.concatenate([self._history, scaled])
        self._history = joined[-(self.window - 1):] if self.window > 1 else joined[:0]
        scores = np.full(m, np.nan)
        if len(joined) < self.window:
            self.last_scores, self.last_flags = scores, np.zeros(m, bool)
            return []
        wins = make_windows(joined, self.window)[-m:]  # windows ending at the new rows
        errors = self.detector.score_scaled_windows(wins)
        n_new = len(errors)
        scores[m - n_new:] = self.detector.reduce_sensors(errors)
        self.n_scored += n_new
        self.last_scores = scores
        alerts = self._alerts(scores, errors, stamps, first_row, m - n_new)
        self.threshold = float(self.threshold_rule.update(scores[m - n_new:]))
        return alerts

    def _fill(self, raw: np.ndarray) -> np.ndarray:
        """Missing values take the previous row's value (the training mean for the first)."""
        bad = ~np.isfinite(raw)
        if not bad.any():
            self._last_raw = raw[-1].copy()
            return raw
        self.n_filled += int(bad.sum())
        prev = self._last_raw if self._last_raw is not None else self.detector.center_.astype(np.float64)
        frame = pd.DataFrame(np.where(bad, np.nan, raw))
        frame = pd.concat([pd.DataFrame(prev[None, :]), frame], ignore_index=True).ffill()
        out = frame.to_numpy()[1:]
        self._last_raw = out[-1].copy()
        return out

    def _alerts(self, scores, errors, stamps, first_row, offset) -> list[dict]:
        was_on = self._episode.on
        flags, self._episode = episodes(scores, self.threshold, self.threshold * self.release,
                                        self.consecutive, self.leave, self._episode)  # NaN: warming up
        self.last_flags = flags
        alerts = []
        for i in episode_starts(flags, was_on):
            contrib = errors[i - offset]
            top = np.argsort(-contrib)[:self.top_k]
            alerts.append({
                "kind": "anomaly",
                "model_version": self.model_version,
                "timestamp": stamps[i],
                "row": first_row + int(i),
                "score": float(scores[i]),
                "threshold": self.threshold,
                "consecutive": self.consecutive,
                "top_sensors": [{"sensor": self.columns[j], "contribution": float(contrib[j])} for j in top],
            })
        self.n_alerts += len(alerts)
        for a in alerts:
            log.warning("alert at row %d (%s): score %.6g > %.6g; top: %s", a["row"], a["timestamp"],
                        a["score"], a["threshold"], ", ".join(t["sensor"] for t in a["top_sensors"]))
        return alerts

    # --- text lines -------------------------------------------------------------------
    def push_lines(self, lines) -> list[dict]:
        """Parse delimited text lines (the first line ever pushed is the header) and score
        the well-formed ones; malformed lines are logged, counted and skipped."""
        lines = [ln.rstrip("\r\n") for ln in lines]
        if self._header is None:
            while lines and not lines[0].strip():
                lines.pop(0)
                self._line_no += 1
            if not lines:
                return []
            self._set_header(lines[0])
            self._line_no += 1
            lines = lines[1:]
        values, stamps = [], []
        n = len(self._header)
        for ln in lines:
            self._line_no += 1
            if not ln.strip():
                continue
            fields = [f.strip() for f in ln.split(self._delimiter)]
            if len(fields) != n:
                self._malformed(ln, f"{len(fields)} fields, expected {n}")
                continue
            try:
                row = [float(fields[j]) if fields[j] != "" else np.nan for j in self._sensor_idx]
            except ValueError:
                self._malformed(ln, "a sensor value is not a number")
                continue
            values.append(row)
            stamps.append(fields[self._time_idx] if self._time_idx is not None else None)
        if not values:
            self.last_scores = np.empty(0)
            return []
        return self.push(np.asarray(values), stamps)

    def _set_header(self, line: str) -> None:
        self._delimiter = sniff_delimiter(line)
        header = [h.strip().lstrip("\ufeff") for h in line.split(self._delimiter)]
        missing = [c for c in self.columns if c not in header]
        if missing:
            raise ValueError(f"the stream's header lacks the model's column(s) {', '.join(missing)}; "
                             f"header: {', '.join(header)}")
        self._header = header
        self._sensor_idx = [header.index(c) for c in self.columns]
        others = [i for i, h in enumerate(header) if h not in self.columns]
        self._time_idx = others[0] if others else None

    def _malformed(self, line: str, why: str) -> None:
        self.n_malformed += 1
        log.warning("line %d skipped (%s): %.120s", self._line_no, why, line)

    def summary(self) -> dict:
        return {"rows": self.n_rows, "scored": self.n_scored, "malformed": self.n_malformed,
                "filled_values": self.n_filled, "alerts": self.n_alerts, "threshold": self.threshold}


def follow(path: str, follow: bool = True, poll: float = 0.2, idle_timeout: float | None = None,
           encoding: str = "utf-8", chunk: int = 1 << 20) -> Iterator[list[str]]:
    """Yield batches of complete text lines from ``path`` (``"-"``: standard input) as they
    arrive. A file is followed as it grows when ``follow`` is true (until ``idle_timeout``
    seconds pass without new data, if set); standard input is read to its end. A last
    line without a newline is yielded at the end."""
    stdin = path == "-"
    fd = sys.stdin.fileno() if stdin else os.open(path, os.O_RDONLY)
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    pending = ""
    idle_since = time.monotonic()
    try:
        while True:
            data = os.read(fd, chunk)
            if data:
                idle_since = time.monotonic()
                text = pending + decoder.decode(data)
                parts = text.split("\n")
                pending = parts.pop()
                if parts:
                    yield parts
                continue
            if stdin or not follow or (idle_timeout is not None and time.monotonic() - idle_since > idle_timeout):
                break
            time.sleep(poll)
        rest = pending + decoder.decode(b"", final=True)
        if rest.strip():
            yield [rest]
    finally:
        if not stdin:
            os.close(fd)
