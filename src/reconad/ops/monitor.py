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
file as it grows (or of standard input for ``"-"``), in batches of what is available;
``Tail`` does the same and keeps its place (byte offset and inode), notices a file that was
truncated or replaced (rotated) as ``tail -F`` does, and can start from a saved place.
``watch`` runs a monitor over a file with a checkpoint (see there).

A reading too large for the model (up to float's maximum) is scaled to a bounded value and
scores as a (huge) anomaly; a score that is still not finite is logged, counted in
``n_overflow`` and taken as the largest score. Nothing stops the stream or hides later rows.

An alert's ``alert_id`` is derived from the model version, the series name and the time
step (timestamp, else row number): the same step of the same stream gives the same id, so
a receiver can drop a repeat. ``Monitor.state()`` / ``Monitor.restore(state)`` carry
everything later scores depend on (history rows, run length, counters, threshold rule)
as JSON, for a checkpoint.
"""

from __future__ import annotations

import codecs
import hashlib
import json
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
                 threshold_rule: str | dict | None = None, series: str | None = None, leave: int | None = None,
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
        if int(top_k) < 1:
            raise ValueError(f"top_k (sensors named in an alert) must be at least 1, got {top_k}")
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
        self.series = series
        self.n_rows = self.n_scored = self.n_malformed = self.n_filled = self.n_alerts = 0
        self.n_overflow = 0
        self.last_time: str | None = None
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
        new_scores = np.asarray(self.detector.reduce_sensors(errors), dtype=np.float64)
        bad = ~np.isfinite(new_scores)
        if bad.any():
            self.n_overflow += int(bad.sum())
            log.warning("%d score(s) overflowed (rows %s); taken as the largest score",
                        int(bad.sum()), ", ".join(str(first_row + m - n_new + int(i)) for i in np.flatnonzero(bad)[:5]))
            new_scores[bad] = np.finfo(np.float64).max
            errors = np.where(np.isfinite(errors), errors, np.finfo(np.float32).max)
        scores[m - n_new:] = new_scores
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
            step = stamps[i] if stamps[i] is not None else first_row + int(i)
            alerts.append({
                "alert_id": alert_id(self.model_version, self.series, step),
                "kind": "anomaly",
                "model_version": self.model_version,
                "series": self.series,
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
            if stamps[-1] is not None:
                self.last_time = stamps[-1]
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

    def new_file(self) -> None:
        """The stream goes on in a new file (rotated or truncated): its first line is a
        header again. The history of rows is kept."""
        self._header = None

    def summary(self) -> dict:
        return {"rows": self.n_rows, "scored": self.n_scored, "malformed": self.n_malformed,
                "filled_values": self.n_filled, "overflow": self.n_overflow, "alerts": self.n_alerts,
                "threshold": self.threshold}

    # --- checkpoint -------------------------------------------------------------------
    _COUNTERS = ("n_rows", "n_scored", "n_malformed", "n_filled", "n_overflow", "n_alerts", "_line_no")
    _RULE_STATE = ("_buf", "_since_refit", "threshold_", "n_seen_", "n_admitted_", "at_bound_", "_logged")

    def state(self) -> dict:
        """Everything later scores depend on, as JSON-able values."""
        rule = {}
        for k in self._RULE_STATE:
            if hasattr(self.threshold_rule, k):
                v = getattr(self.threshold_rule, k)
                rule[k] = v.tolist() if isinstance(v, np.ndarray) else v
        return {
            "columns": self.columns, "window": self.window, "model_version": self.model_version,
            "history": self._history.tolist(),
            "last_raw": None if self._last_raw is None else self._last_raw.tolist(),
            "threshold": self.threshold, "header": self._header, "delimiter": self._delimiter,
            "counters": {k: getattr(self, k) for k in self._COUNTERS}, "threshold_rule": rule,
            "episode": {"on": self._episode.on, "above": self._episode.above, "below": self._episode.below},
            "last_time": self.last_time,
        }

    def restore(self, state: dict) -> None:
        """Continue from ``state()`` of a monitor of the same model and settings."""
        if state.get("columns") != self.columns or state.get("window") != self.window:
            raise ValueError("the checkpoint belongs to a model with other columns or another window")
        self._history = np.asarray(state["history"], dtype=np.float32).reshape(-1, len(self.columns))
        self._last_raw = None if state["last_raw"] is None else np.asarray(state["last_raw"], np.float64)
        self.threshold = float(state["threshold"])
        for k, v in state["counters"].items():
            if k in self._COUNTERS:
                setattr(self, k, int(v))
        for k, v in state.get("threshold_rule", {}).items():
            if k in self._RULE_STATE and hasattr(self.threshold_rule, k):
                setattr(self.threshold_rule, k, np.asarray(v, np.float64) if k == "_buf" else v)
        self.last_time = state.get("last_time")
        ep = state.get("episode") or {}
        self._episode = EpisodeState(bool(ep.get("on", False)), int(ep.get("above", state["counters"].get("_run", 0))),
                                     int(ep.get("below", 0)))
        if state.get("header"):
            self._set_header(state["delimiter"].join(state["header"]))


def alert_id(model_version, series, step) -> str:
    """A stable id for the alert of ``series`` at ``step`` (timestamp or row) by a model."""
    key = json.dumps([str(model_version), str(series), str(step)], ensure_ascii=False)
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:24]


def check_encoding(encoding: str) -> str:
    """The codec's name, or a clear error for an unknown or unsuitable encoding."""
    try:
        name = codecs.lookup(encoding).name
    except (LookupError, TypeError):
        raise ValueError(f"unknown text encoding {encoding!r} (e.g. utf-8, cp932, shift_jis, latin-1)") from None
    if name.startswith(("utf-16", "utf-32")):
        raise ValueError(f"encoding {encoding!r} is not supported for streams; use utf-8 or a one-byte "
                         "newline encoding such as cp932")
    return name


def _rotated_away(path: str, inode: int | None) -> str | None:
    """The file in the folder of ``path`` that has ``inode`` when ``path`` itself no longer
    has it (it was rotated, e.g. to ``path.1``, while nobody followed it)."""
    if inode is None:
        return None
    try:
        if os.stat(path).st_ino == inode:
            return None
        folder = os.path.dirname(os.path.abspath(path))
        for entry in os.scandir(folder):
            if entry.is_file(follow_symlinks=False) and entry.inode() == inode:
                return entry.path
    except OSError:
        return None
    return None


class Tail:
    """Complete lines of a growing file, with its place kept as ``tail -F`` keeps it.

    ``offset`` is the byte just after the last complete line handed out, ``inode`` the
    file it belongs to. When the file shrinks below ``offset`` (truncated) it is read again
    from its start; when the path names another file (rotated: moved away and a new one
    made) the rest of the old file is read, then the new one from its start. Each batch of
    ``lines()`` comes with ``new_file`` True when it is the first of a file read from its start
    after a truncation or rotation.
    """

    def __init__(self, path: str, encoding: str = "utf-8", offset: int = 0, inode: int | None = None,
                 poll: float = 0.2, chunk: int = 1 << 20):
        self.path = str(path)
        self.encoding = check_encoding(encoding)
        self.poll, self.chunk = poll, chunk
        self._fd = os.open(_rotated_away(self.path, inode) or self.path, os.O_RDONLY)
        st = os.fstat(self._fd)
        self.inode = st.st_ino
        self.offset = 0
        if inode is not None and inode == st.st_ino and 0 <= offset <= st.st_size:
            self.offset = int(offset)
            if os.path.exists(self.path) and os.stat(self.path).st_ino != inode:
                log.info("%s was rotated while stopped; finishing the old file first", self.path)
        elif inode is not None:
            log.warning("%s is not the file of the checkpoint (truncated while stopped, or rotated out "
                        "of its folder); reading it from its start", self.path)
        os.lseek(self._fd, self.offset, os.SEEK_SET)
        self._pending = b""

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _reopen(self, why: str) -> None:
        log.warning("%s was %s; reading the new file from its start", self.path, why)
        self.close()
        self._fd = os.open(self.path, os.O_RDONLY)
        self.inode = os.fstat(self._fd).st_ino
        self.offset = 0
        self._pending = b""

    def _replaced(self) -> bool:
        try:
            return os.stat(self.path).st_ino != self.inode
        except FileNotFoundError:
            return False

    def lines(self, follow: bool = True, idle_timeout: float | None = None) -> Iterator[tuple[list[str], bool]]:
        """Yield ``(lines, new_file)``; after each batch, ``offset`` is where it ended."""
        idle_since = time.monotonic()
        new_file = False
        try:
            while True:
                data = os.read(self._fd, self.chunk)
                if data:
                    idle_since = time.monotonic()
                    text = self._pending + data
                    cut = text.rfind(b"\n") + 1
                    self._pending = text[cut:]
                    if cut:
                        lines = text[:cut].decode(self.encoding, errors="replace").split("\n")[:-1]
                        self.offset += cut                      # text starts at the old offset
                        yield lines, new_file
                        new_file = False
                    continue
                if os.fstat(self._fd).st_size < self.offset + len(self._pending):
                    self._reopen("truncated")
                    new_file = True
                    continue
                if self._replaced():
                    self._reopen("rotated (replaced by a new file)")
                    new_file = True
                    continue
                if not follow or (idle_timeout is not None and time.monotonic() - idle_since > idle_timeout):
                    break
                time.sleep(self.poll)
            if self._pending.strip():
                rest = self._pending.decode(self.encoding, errors="replace")
                self.offset += len(self._pending)
                self._pending = b""
                yield [rest], new_file
        finally:
            self.close()


def follow_lines(path: str, follow: bool = True, poll: float = 0.2, idle_timeout: float | None = None,
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


# --- a stream with a checkpoint ---------------------------------------------------------------
CHECKPOINT_FORMAT = "reconad-monitor-checkpoint"


def read_checkpoint(path) -> dict | None:
    """The checkpoint at ``path`` (None when there is none yet); a damaged one is an error."""
    from pathlib import Path

    path = Path(path)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ValueError(f"checkpoint {path} is damaged ({exc}); remove it to start from the beginning") from None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT or not isinstance(data.get("monitor"), dict):
        raise ValueError(f"{path} is not a monitor checkpoint")
    return data


def check_alert_file(path) -> None:
    """Refuse to append alerts to a file that is not a JSON-lines file of alerts (such as an
    alert channel configuration, a JSON object over several lines)."""
    from pathlib import Path

    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return
    if path.is_dir():
        raise ValueError(f"the alerts output {path} is a folder")
    with open(path, "rb") as fh:
        first = fh.readline(1 << 16)
    try:
        alert = json.loads(first)
    except ValueError:
        alert = None
    if not isinstance(alert, dict) or "kind" not in alert:
        raise ValueError(f"{path} exists and is not a JSON-lines file of alerts (an alert configuration is "
                         "given with --alert-config); choose another output file")


def alert_ids_in(path, tail_bytes: int = 8 << 20) -> set[str]:
    """Ids of the alerts in the last ``tail_bytes`` of a JSON-lines alert file."""
    ids: set[str] = set()
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(fh.tell() - tail_bytes, 0))
            for line in fh.read().splitlines():
                try:
                    alert = json.loads(line)
                except ValueError:
                    continue
                if isinstance(alert, dict) and isinstance(alert.get("alert_id"), str):
                    ids.add(alert["alert_id"])
    except FileNotFoundError:
        pass
    return ids


def watch(monitor: Monitor, source: str, emit, *, follow: bool = True, idle_timeout: float | None = None,
          encoding: str = "utf-8", checkpoint=None, seen_ids: set[str] | None = None) -> None:
    """Push the lines of ``source`` (a file, or ``"-"``) into ``monitor`` and call ``emit(alert)``
    for each alert whose id is not in ``seen_ids``. With ``checkpoint`` (a file path) the place in
    the file and the monitor's state are written there atomically after each batch's alerts
    were emitted, and a later run resumes from it: each row is scored once, and an alert
    repeated after a crash has the id of the first (and is skipped when ``seen_ids`` has it)."""
    from reconad._atomic import write_text

    seen = set() if seen_ids is None else seen_ids
    if source == "-":
        check_encoding(encoding)
        batches = ((lines, False) for lines in follow_lines(source, follow=follow, idle_timeout=idle_timeout,
                                                             encoding=encoding))
        tail = None
    else:
        saved = read_checkpoint(checkpoint) if checkpoint is not None else None
        offset, inode = 0, None
        if saved is not None:
            if saved.get("input") != os.path.abspath(source):
                raise ValueError(f"checkpoint {checkpoint} belongs to {saved.get('input')}, not {source}")
            monitor.restore(saved["monitor"])
            offset, inode = int(saved["offset"]), saved.get("inode")
            log.info("resuming %s at byte %d (row %d)", source, offset, monitor.n_rows)
        tail = Tail(source, encoding=encoding, offset=offset, inode=inode)
        if saved is not None and tail.offset == 0 and offset:
            monitor.new_file()
        batches = tail.lines(follow=follow, idle_timeout=idle_timeout)
    for lines, new_file in batches:
        if new_file:
            monitor.new_file()
        for alert in monitor.push_lines(lines):
            if alert["alert_id"] in seen:
                continue
            seen.add(alert["alert_id"])
            emit(alert)
        if tail is not None and checkpoint is not None:
            write_text(checkpoint, json.dumps({
                "format": CHECKPOINT_FORMAT, "input": os.path.abspath(source), "inode": tail.inode,
                "offset": tail.offset, "last_time": monitor.last_time, "monitor": monitor.state()}))


follow = follow_lines
