"""Alert channels: deliver alerts to a webhook, e-mail and a JSON-lines log, without losing any.

Every alert handed to :meth:`AlertDispatcher.submit` is first written to an *outbox*
folder on disk (one small JSON file per alert and channel, written atomically), and only
removed once its channel has accepted it. A receiver that is down is retried with
exponential back-off; alerts wait in the outbox meanwhile, and survive a restart of the
process. Delivery is at-least-once: every alert carries an ``alert_id`` so a receiver can
drop a repeat.

Grouping and rate limiting, per channel: the first alert of a burst waits
``group_seconds`` for the others, then all waiting alerts go out in *one* message; after a
message, the next one waits at least ``min_interval_seconds``. The log channel defaults to
no waiting (one line per alert, at once).

The outbox is bounded: each channel keeps at most ``outbox_limit`` alerts (10,000 by
default). When a channel's outbox is full (its receiver has been down a long time), the
``outbox_full`` policy decides: ``"drop_oldest"`` (the default) removes the oldest waiting
alert to make room, ``"drop_new"`` keeps the waiting ones and drops the new alert. Every
drop and every failed delivery is logged (the ``reconad.ops.alerts`` logger, and the
``log`` callable) and counted in :meth:`AlertDispatcher.status`. Channels are independent:
a channel that fails in any way (a receiver that does not speak HTTP, a full disk) is
retried with back-off and never keeps the others from delivering.

Configuration (one JSON file, see :func:`load_config`)::

    {
      "outbox": "alerts-outbox",
      "outbox_limit": 10000, "outbox_full": "drop_oldest",
      "group_seconds": 30,
      "min_interval_seconds": 300,
      "retry_initial_seconds": 2, "retry_max_seconds": 300, "retry_factor": 2,
      "channels": [
        {"type": "webhook", "url": "https://hooks.slack.com/services/...", "format": "slack"},
        {"type": "webhook", "url": "http://10.0.0.5:8080/alerts", "format": "generic"},
        {"type": "email", "host": "smtp.plant.local", "port": 25, "sender": "reconad@plant.local",
         "to": ["maintenance@plant.local"]},
        {"type": "log", "path": "alerts.jsonl"}
      ]
    }

An alert is a JSON-able dict. Known keys are used in message texts: ``kind``
(``"anomaly"`` by default, or ``"drift"``), ``timestamp``, ``score``, ``threshold``,
``top_sensors`` (or ``features``), ``model_version``, ``message``.
"""

from __future__ import annotations

import http.client
import itertools
import json
import logging
import os
import smtplib
import threading
import time
import urllib.error
import urllib.request
import uuid
from email.message import EmailMessage
from pathlib import Path
from typing import Callable, Iterable

from reconad._atomic import write_text
from reconad.persistence import read_json

CHANNEL_TYPES = ("webhook", "email", "log")
logger = logging.getLogger("reconad.ops.alerts")
OUTBOX_POLICIES = ("drop_oldest", "drop_new")
_TOP_LEVEL_KEYS = {"outbox", "outbox_limit", "outbox_full", "group_seconds", "min_interval_seconds", "retry_initial_seconds",
                   "retry_max_seconds", "retry_factor", "max_alerts_per_message", "poll_seconds",
                   "channels"}
DEFAULTS = {
    "outbox": "alerts-outbox",
    "group_seconds": 30.0,
    "min_interval_seconds": 300.0,
    "retry_initial_seconds": 2.0,
    "retry_max_seconds": 300.0,
    "retry_factor": 2.0,
    "max_alerts_per_message": 200,
    "poll_seconds": 1.0,
    "outbox_limit": 10000,
}


class DeliveryError(RuntimeError):
    """A channel could not deliver a message (receiver down, refused, timed out)."""


# --- message text ------------------------------------------------------------------------

def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def summary(alerts: list[dict]) -> str:
    """One short paragraph describing a group of alerts, for chat and e-mail."""
    kinds = sorted({a.get("kind", "anomaly") for a in alerts})
    kind = kinds[0] if len(kinds) == 1 else "/".join(kinds)
    n = len(alerts)
    word = "warning" if kind == "drift" else "alert"
    head = f"reconad: {n} {kind} {word}{'s' if n != 1 else ''}"
    times = [str(a["timestamp"]) for a in alerts if a.get("timestamp") is not None]
    if times:
        head += f" at {times[0]}" if len(times) == 1 else f" from {min(times)} to {max(times)}"
    versions = sorted({str(a["model_version"]) for a in alerts if a.get("model_version") is not None})
    if versions:
        head += f" (model {', '.join(versions)})"
    lines = [head]
    scored = [a for a in alerts if isinstance(a.get("score"), (int, float))]
    if scored:
        top = max(scored, key=lambda a: a["score"])
        line = f"highest score {_fmt(float(top['score']))}"
        if top.get("threshold") is not None:
            line += f" (threshold {_fmt(float(top['threshold']))})"
        if top.get("timestamp") is not None:
            line += f" at {top['timestamp']}"
        lines.append(line)
    names: dict[str, int] = {}
    for a in alerts:
        for s in a.get("top_sensors") or a.get("features") or []:
            name = s if isinstance(s, str) else (s.get("name") if isinstance(s, dict) else str(s))
            names[str(name)] = names.get(str(name), 0) + 1
    if names:
        ranked = sorted(names, key=lambda k: -names[k])[:5]
        lines.append("sensors: " + ", ".join(ranked))
    for a in alerts[:3]:
        if a.get("message"):
            lines.append(str(a["message"]))
    return "\n".join(lines)


# --- channels ----------------------------------------------------------------------------

class WebhookChannel:
    """POST a JSON body to a URL. ``format="slack"`` sends ``{"text": ...}`` (Slack, Mattermost,
    Rocket.Chat and other Slack-compatible incoming webhooks); ``"generic"`` sends
    ``{"source", "kind", "count", "text", "alerts": [...]}``. Any 2xx answer is success."""

    group_default = True

    def __init__(self, url: str, format: str = "generic", timeout_seconds: float = 10.0,
                 headers: dict | None = None):
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook url must start with http:// or https://, got {url!r}")
        if format not in ("slack", "generic"):
            raise ValueError(f"webhook format must be 'slack' or 'generic', got {format!r}")
        self.url = url
        self.format = format
        self.timeout_seconds = float(timeout_seconds)
        self.headers = dict(headers or {})

    def body(self, alerts: list[dict]) -> dict:
        text = summary(alerts)
        if self.format == "slack":
            return {"text": text}
        kinds = sorted({a.get("kind", "anomaly") for a in alerts})
        return {"source": "reconad", "kind": kinds[0] if len(kinds) == 1 else kinds,
                "count": len(alerts), "text": text, "alerts": alerts}

    def send(self, alerts: list[dict]) -> None:
        data = json.dumps(self.body(alerts)).encode("utf-8")
        req = urllib.request.Request(self.url, data=data, method="POST",
                                     headers={"Content-Type": "application/json", **self.headers})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_seconds) as resp:
                status = resp.status
        except urllib.error.HTTPError as exc:
            raise DeliveryError(f"webhook {self.url} answered HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise DeliveryError(f"webhook {self.url} unreachable: {exc}") from None
        except (http.client.HTTPException, ValueError) as exc:
            raise DeliveryError(f"webhook {self.url} did not answer in HTTP: {exc!r}") from None
        if not 200 <= status < 300:
            raise DeliveryError(f"webhook {self.url} answered HTTP {status}")


class EmailChannel:
    """Send one e-mail per message over SMTP (``smtplib``): a text summary and the alerts as
    JSON. ``starttls`` upgrades a plain connection; ``ssl`` connects with SMTPS; a login is
    used when ``username`` is given, with the password read from the environment variable
    named by ``password_env`` (never stored in the file)."""

    group_default = True

    def __init__(self, host: str, sender: str, to: list[str] | str, port: int = 25,
                 subject_prefix: str = "[reconad]", starttls: bool = False, ssl: bool = False,
                 username: str | None = None, password_env: str | None = None,
                 timeout_seconds: float = 10.0):
        if not host:
            raise ValueError("email channel needs a 'host'")
        if not sender:
            raise ValueError("email channel needs a 'sender' address")
        to = [to] if isinstance(to, str) else list(to or [])
        if not to:
            raise ValueError("email channel needs at least one 'to' address")
        self.host, self.port, self.sender, self.to = host, int(port), sender, to
        self.subject_prefix = subject_prefix
        self.starttls, self.ssl = bool(starttls), bool(ssl)
        self.username, self.password_env = username, password_env
        self.timeout_seconds = float(timeout_seconds)

    def message(self, alerts: list[dict]) -> EmailMessage:
        text = summary(alerts)
        msg = EmailMessage()
        msg["Subject"] = f"{self.subject_prefix} {text.splitlines()[0].removeprefix('reconad: ')}".strip()
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.to)
        body = text + "\n\nAlerts (JSON lines):\n" + "\n".join(json.dumps(a, sort_keys=True) for a in alerts)
        msg.set_content(body + "\n")
        return msg

    def send(self, alerts: list[dict]) -> None:
        msg = self.message(alerts)
        cls = smtplib.SMTP_SSL if self.ssl else smtplib.SMTP
        try:
            with cls(self.host, self.port, timeout=self.timeout_seconds) as smtp:
                if self.starttls:
                    smtp.starttls()
                if self.username:
                    smtp.login(self.username, os.environ.get(self.password_env or "", ""))
                smtp.send_message(msg)
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP {self.host}:{self.port}: {exc}") from None


class LogChannel:
    """Append one JSON line per alert to a file (flushed and synced before it counts as sent)."""

    group_default = False

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def send(self, alerts: list[dict]) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write("".join(json.dumps(a, sort_keys=True) + "\n" for a in alerts))
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise DeliveryError(f"cannot write alert log {self.path}: {exc}") from None


# --- configuration -----------------------------------------------------------------------

def _number(cfg: dict, key: str, where: str, minimum: float = 0.0) -> float:
    v = cfg[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < minimum:
        raise ValueError(f"{where}: {key} must be a number >= {minimum}, got {v!r}")
    return float(v)


def _build_channel(spec: dict, base: Path | None):
    spec = dict(spec)
    kind = spec.pop("type", None)
    spec.pop("name", None)
    for key in ("group_seconds", "min_interval_seconds"):
        spec.pop(key, None)
    try:
        if kind == "webhook":
            return WebhookChannel(**spec)
        if kind == "email":
            return EmailChannel(**spec)
        if kind == "log":
            path = Path(spec.pop("path", "alerts.jsonl"))
            if spec:
                raise TypeError(f"unexpected keys {sorted(spec)}")
            return LogChannel(path if path.is_absolute() or base is None else base / path)
    except TypeError as exc:
        raise ValueError(f"{kind} channel: {exc}") from None
    raise ValueError(f"unknown channel type {kind!r}; choose one of {', '.join(CHANNEL_TYPES)}")


def parse_config(config: dict, base: str | os.PathLike | None = None) -> dict:
    """Check an alert configuration and fill in defaults; relative paths are taken from
    ``base`` (the configuration file's folder). Returns a new dict with ``channels`` as a
    list of ``{"name", "channel", "group_seconds", "min_interval_seconds"}``."""
    if not isinstance(config, dict):
        raise TypeError(f"alert configuration must be a dict, got {type(config).__name__}")
    unknown = set(config) - _TOP_LEVEL_KEYS
    if unknown:
        raise ValueError(f"unknown alert configuration keys: {', '.join(sorted(unknown))}")
    base = Path(base) if base is not None else None
    cfg = {**DEFAULTS, **config}
    for key in DEFAULTS:
        if key != "outbox":
            minimum = {"retry_factor": 1.0, "max_alerts_per_message": 1.0, "poll_seconds": 0.01,
                       "outbox_limit": 1.0}.get(key, 0.0)
            _number(cfg, key, "alert configuration", minimum=minimum)
    cfg.setdefault("outbox_full", "drop_oldest")
    if cfg["outbox_full"] not in OUTBOX_POLICIES:
        raise ValueError(f"outbox_full must be one of {', '.join(OUTBOX_POLICIES)}, got {cfg['outbox_full']!r}")
    outbox = Path(cfg["outbox"])
    cfg["outbox"] = outbox if outbox.is_absolute() or base is None else base / outbox
    specs = cfg.get("channels")
    if not isinstance(specs, list) or not specs:
        raise ValueError("alert configuration needs a non-empty 'channels' list")
    channels, names = [], set()
    for i, spec in enumerate(specs):
        if not isinstance(spec, dict):
            raise ValueError(f"channel {i} must be an object, got {spec!r}")
        channel = _build_channel(spec, base)
        name = str(spec.get("name") or spec.get("type"))
        if name in names:
            name = f"{name}{i}"
        if not name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"channel name {name!r} may only hold letters, digits, '-' and '_'")
        names.add(name)
        grouped = channel.group_default
        entry = {"name": name, "channel": channel,
                 "group_seconds": spec.get("group_seconds", cfg["group_seconds"] if grouped else 0.0),
                 "min_interval_seconds": spec.get("min_interval_seconds",
                                                  cfg["min_interval_seconds"] if grouped else 0.0)}
        _number(entry, "group_seconds", f"channel {name}")
        _number(entry, "min_interval_seconds", f"channel {name}")
        channels.append(entry)
    cfg["channels"] = channels
    return cfg


def load_config(path: str | os.PathLike) -> dict:
    """Read an alert configuration JSON file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"alert configuration not found: {path}")
    raw = read_json(path, "alert configuration")
    if not isinstance(raw, dict):
        raise ValueError(f"{path} is not an alert configuration (a JSON object with 'channels')")
    return parse_config(raw, base=path.parent)


# --- the dispatcher ----------------------------------------------------------------------

class _ChannelState:
    def __init__(self, entry: dict, folder: Path):
        self.name = entry["name"]
        self.channel = entry["channel"]
        self.group_seconds = float(entry["group_seconds"])
        self.min_interval = float(entry["min_interval_seconds"])
        self.folder = folder
        self.last_sent = float("-inf")
        self.failures = 0
        self.next_try = float("-inf")
        self.last_error: str | None = None
        self.dropped = 0
        folder.mkdir(parents=True, exist_ok=True)
        self.n_pending = len(self.pending_files())

    def pending_files(self) -> list[Path]:
        return sorted(p for p in self.folder.glob("*.json") if not p.name.startswith("."))


class AlertDispatcher:
    """Deliver alerts to the configured channels through an on-disk outbox.

    Parameters
    ----------
    config : dict, path of a JSON file, or the result of :func:`parse_config`
    background : bool, default True
        Deliver from a background thread every ``poll_seconds``; with False nothing is sent
        until :meth:`poll` or :meth:`flush` is called (useful in scripts and tests).
    clock : callable, default ``time.time``
        Seconds now; grouping, rate limits and back-off are measured on it.
    log : callable or None
        Called with one line of text for every delivery, failure and retry decision.
    defaults : dict or None
        Keys added to every alert that lacks them, e.g. ``{"model_version": det.model_version_,
        "line": "line 3"}``.

    Examples
    --------
    >>> d = AlertDispatcher({"outbox": "/tmp/ob", "channels": [{"type": "log", "path": "/tmp/a.jsonl"}]},
    ...                     background=False)
    >>> d.submit({"timestamp": "2024-05-01T10:00:00", "score": 3.2, "threshold": 1.5})
    >>> d.flush()
    True
    """

    def __init__(self, config, *, background: bool = True, clock: Callable[[], float] | None = None,
                 log: Callable[[str], None] | None = None, defaults: dict | None = None):
        self.defaults = dict(defaults or {})
        if isinstance(config, (str, os.PathLike)):
            cfg = load_config(config)
        elif isinstance(config, dict) and config.get("channels") and isinstance(
                config["channels"][0], dict) and "channel" in config["channels"][0]:
            cfg = config
        else:
            cfg = parse_config(config)
        self.config = cfg
        self.outbox = Path(cfg["outbox"])
        self.clock = clock or time.time
        self._log_fn = log
        self.retry_initial = float(cfg["retry_initial_seconds"])
        self.retry_max = float(cfg["retry_max_seconds"])
        self.retry_factor = float(cfg["retry_factor"])
        self.max_per_message = int(cfg["max_alerts_per_message"])
        self.poll_seconds = float(cfg["poll_seconds"])
        self.outbox_limit = int(cfg.get("outbox_limit", DEFAULTS["outbox_limit"]))
        self.outbox_full = cfg.get("outbox_full", "drop_oldest")
        self.channels = [_ChannelState(e, self.outbox / e["name"]) for e in cfg["channels"]]
        self._seq = itertools.count()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._run, name="reconad-alerts", daemon=True)
            self._thread.start()

    def log(self, line: str, level: int = logging.INFO) -> None:
        """One line to the ``reconad.ops.alerts`` logger and to the ``log`` callable."""
        logger.log(level, "%s", line)
        if self._log_fn is not None:
            self._log_fn(line)

    # -- public ---------------------------------------------------------------------------
    def submit(self, alert: dict) -> dict:
        """Put one alert in the outbox of every channel; returns the stored alert (with
        ``alert_id`` and ``submitted_at`` added when missing). Never blocks on a receiver."""
        if not isinstance(alert, dict):
            raise TypeError(f"an alert must be a dict, got {type(alert).__name__}")
        alert = {"kind": "anomaly", **self.defaults, **alert}
        alert.setdefault("alert_id", uuid.uuid4().hex)
        alert.setdefault("submitted_at", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        try:
            text = json.dumps(alert, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"alert is not JSON-serialisable: {exc}") from None
        # file name: submission clock (for grouping and order), a sequence number, the id
        stamp = f"{int(self.clock() * 1000):015d}-{next(self._seq):08d}-{alert['alert_id'][:12]}"
        for ch in self.channels:
            with self._lock:
                if ch.n_pending >= self.outbox_limit and not self._make_room(ch, alert):
                    continue
                try:
                    write_text(ch.folder / f"{stamp}.json", text)
                except OSError as exc:
                    ch.dropped += 1
                    self.log(f"alerts: {ch.name}: cannot store alert {alert['alert_id']} in the outbox "
                             f"({exc}); dropped", logging.ERROR)
                    continue
                ch.n_pending += 1
        self._wake.set()
        return alert

    def _make_room(self, ch: _ChannelState, alert: dict) -> bool:
        """The outbox of ``ch`` is full: apply the policy; True when the new alert may go in."""
        files = ch.pending_files()
        ch.n_pending = len(files)
        if ch.n_pending < self.outbox_limit:
            return True
        ch.dropped += 1
        if self.outbox_full == "drop_new":
            self.log(f"alerts: {ch.name}: outbox full ({self.outbox_limit} waiting); new alert "
                     f"{alert['alert_id']} dropped ({ch.dropped} dropped so far)", logging.WARNING)
            return False
        for old in files[: ch.n_pending - self.outbox_limit + 1]:
            old.unlink(missing_ok=True)
            ch.n_pending -= 1
        self.log(f"alerts: {ch.name}: outbox full ({self.outbox_limit} waiting); oldest alert dropped "
                 f"({ch.dropped} dropped so far)", logging.WARNING)
        return True

    def poll(self) -> int:
        """One delivery pass over all channels, respecting grouping, rate limits and back-off.
        Returns the number of alerts delivered (counted per channel)."""
        return sum(self._deliver_safely(ch, force=False) for ch in self.channels)

    def flush(self, timeout: float = 0.0) -> bool:
        """Send every waiting alert now, ignoring grouping and rate limits; keep retrying
        with back-off for up to ``timeout`` seconds. True when the outbox is empty."""
        deadline = time.monotonic() + timeout
        while True:
            for ch in self.channels:
                self._deliver_safely(ch, force=True)
            if not any(self.pending().values()):
                return True
            wait = min((ch.next_try for ch in self.channels if ch.pending_files()), default=0.0) - self.clock()
            if time.monotonic() + max(wait, 0.0) > deadline:
                return False
            time.sleep(max(wait, 0.005))

    def pending(self) -> dict[str, int]:
        """Alerts waiting in the outbox, per channel."""
        return {ch.name: len(ch.pending_files()) for ch in self.channels}

    def status(self) -> list[dict]:
        """Per channel: pending alerts, consecutive failures, the last error."""
        return [{"channel": ch.name, "pending": len(ch.pending_files()), "failures": ch.failures,
                 "last_error": ch.last_error, "dropped": ch.dropped} for ch in self.channels]

    def close(self, timeout: float = 5.0) -> bool:
        """Stop the background thread after one last flush (up to ``timeout`` seconds).
        Undelivered alerts stay in the outbox for the next dispatcher. True when none wait."""
        if self._thread is not None:
            self._stop.set()
            self._wake.set()
            self._thread.join()
            self._thread = None
        return self.flush(timeout=timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- internals ------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception as exc:  # never let the worker die; the outbox keeps the alerts
                self.log(f"alerts: unexpected error in delivery: {exc!r}")
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def _deliver_safely(self, ch: _ChannelState, force: bool) -> int:
        """``_deliver``, with any error of the channel taken as a failed try (retried with
        back-off), so that one channel never stops the others."""
        try:
            return self._deliver(ch, force)
        except Exception as exc:   # a channel's bug or an odd receiver: a failed try, logged
            self._failed(ch, self.clock(), f"unexpected error {exc!r}", len(ch.pending_files()), None)
            return 0

    def _failed(self, ch: _ChannelState, now: float, why: str, waiting: int, n: int | None) -> None:
        ch.failures += 1
        delay = min(self.retry_initial * self.retry_factor ** (ch.failures - 1), self.retry_max)
        ch.next_try = now + delay
        ch.last_error = why
        what = f"delivery of {n}" if n is not None else "delivery"
        self.log(f"alerts: {ch.name}: {what} failed ({why}); {waiting} waiting; retry {ch.failures} "
                 f"in {delay:.3g} s", logging.WARNING)

    def _deliver(self, ch: _ChannelState, force: bool) -> int:
        with self._lock:
            files = ch.pending_files()
            if not files:
                return 0
            now = self.clock()
            if now < ch.next_try:
                return 0
            if not force:
                oldest = int(files[0].name.split("-", 1)[0]) / 1000.0
                if now - oldest < ch.group_seconds or now - ch.last_sent < ch.min_interval:
                    return 0
            batch, alerts = files[: self.max_per_message], []
            for p in batch:
                try:
                    alerts.append(json.loads(p.read_text(encoding="utf-8")))
                except (OSError, json.JSONDecodeError) as exc:
                    self.log(f"alerts: {ch.name}: unreadable outbox file {p.name} kept aside ({exc})")
                    p.replace(p.with_name("." + p.name + ".bad"))
            batch = [p for p in batch if p.exists()]
            if not alerts:
                return 0
            try:
                ch.channel.send(alerts)
            except DeliveryError as exc:
                self._failed(ch, now, str(exc), len(files), len(alerts))
                return 0
            for p in batch:
                p.unlink(missing_ok=True)
            ch.n_pending = max(ch.n_pending - len(batch), 0)
            if ch.failures:
                self.log(f"alerts: {ch.name}: receiver back after {ch.failures} failed tries")
            ch.failures, ch.next_try, ch.last_error = 0, float("-inf"), None
            ch.last_sent = now
            self.log(f"alerts: {ch.name}: sent {len(alerts)} alert(s) in one message")
            return len(alerts)


def dispatch_all(config, alerts: Iterable[dict], timeout: float = 30.0) -> bool:
    """Submit ``alerts`` and flush them (for one-off scripts). True when all were delivered."""
    d = AlertDispatcher(config, background=False)
    for a in alerts:
        d.submit(a)
    return d.close(timeout=timeout)
