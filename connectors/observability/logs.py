"""Logs for the person on call: one JSON object per line, and a periodic progress line.

JSON because log stores filter by field: every line names its connector, and lines about
one partition carry `topic` and `partition` (pass them with `extra=`), plus the trace and
span ids when tracing is on, so a log line leads to its trace. `LOG_FORMAT=text` gives
classic lines for a terminal, one event per line too: line breaks inside a message or an
exception (a transform's error text, a value quoted back) are escaped, so nothing logged
can forge a line of its own.

Client libraries (aiokafka, botocore, httpx, ... `THIRD_PARTY`) log at WARNING and above
only, unless `LOG_LEVEL=DEBUG`: their INFO lines (group joins, connections) would drown the
connector's own.

A broker outage makes aiokafka log the same error many times a second ("Unable connect to
node ...", "Topic ... not found in cluster metadata"); its loggers are rate-limited
(`RateLimit`): each message template at most once per 10 s per logger, and the next one let
through says how many like it were withheld.

The progress line (every `LOG_PROGRESS_INTERVAL_S`, 30 s by default) is written even when
nothing happens, so that "no errors in the log" can be told apart from "not running":

    progress: 12000 records committed in 30s (400.0/s), lag 35 over 3 partitions
    (most behind: zones[1] 20), last commit 0.2s ago
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

from connectors.config.observability import LogSettings
from connectors.core.records import TopicPartition
from connectors.observability import metrics, tracing

__all__ = [
    "JsonFormatter",
    "LogSettings",
    "Progress",
    "RateLimit",
    "TextFormatter",
    "lag_from_metrics",
    "one_line",
    "setup",
]

_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Every character `str.splitlines` breaks at, as the escape a reader recognises.
_LINE_BREAKS = {ord(c): repr(c)[1:-1] for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"}
#: Loggers whose repeated lines are rate-limited, and how often one template may pass.
RATE_LIMITED = ("aiokafka",)
RATE_LIMIT_INTERVAL_S = 10.0
#: Client libraries whose INFO lines (joins, connections, requests) would drown the
#: connector's own: WARNING and above only, unless LOG_LEVEL=DEBUG asks for everything.
THIRD_PARTY = (
    "aiokafka",
    "kafka",
    "botocore",
    "boto3",
    "s3transfer",
    "obstore",
    "httpx",
    "httpcore",
    "aiohttp",
    "urllib3",
    "redis",
    "opentelemetry",
    "grpc",
)


def one_line(text: str) -> str:
    """`text` with every line break escaped (`\\n`, `\\r`, ...), so it prints as one line."""
    return text.translate(_LINE_BREAKS)


class TextFormatter(logging.Formatter):
    """Classic `time LEVEL logger: message` lines, one per event: line breaks in the message,
    an exception or a stack are escaped rather than written."""

    def __init__(self) -> None:
        super().__init__(_TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return one_line(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, connector, and extras."""

    def __init__(self, connector: str) -> None:
        super().__init__()
        self._connector = connector

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "connector": self._connector,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        ids = tracing.current_ids()
        if ids is not None:
            line["trace_id"], line["span_id"] = ids
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def setup(level: str, connector: str, settings: LogSettings, stream: TextIO | None = None) -> None:
    """Route every logger to one handler on `stream` (stderr), replacing earlier ones."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    if settings.format == "json":
        handler.setFormatter(JsonFormatter(connector))
    else:
        handler.setFormatter(TextFormatter())
    handler.addFilter(SaslBytesWithheld())
    handler.addFilter(RateLimit(RATE_LIMITED, RATE_LIMIT_INTERVAL_S))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in THIRD_PARTY:
        logging.getLogger(name).setLevel(logging.NOTSET if level == "DEBUG" else logging.WARNING)


class SaslBytesWithheld(logging.Filter):
    """aiokafka logs every request and response at DEBUG, SASL ones included; with PLAIN
    their bytes are the password in clear. Those arguments are replaced, the line kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(map(_is_sasl, record.args)):
            record.args = tuple("<SASL bytes withheld>" if _is_sasl(a) else a for a in record.args)
        return True


def _is_sasl(value: object) -> bool:
    return type(value).__name__.startswith("SaslAuthenticate")


class RateLimit(logging.Filter):
    """At most one line per message template per `interval_s` for each logger under
    `prefixes` (DEBUG lines pass: whoever asked for them wants them all).

    The first line of a template passes and opens a window; the same template from the
    same logger is withheld until the window ends; the first one after it passes with
    "(N like it withheld in the last Xs)" appended and a `withheld` field, and opens the
    next window. A window that no later line closes is not reported: a flood that stops
    leaves its first line only. Templates, not formatted messages, are compared, so
    "Unable connect to node 1" and "... node 2" count as one.
    """

    #: Windows remembered at most; the oldest are forgotten beyond it.
    MAX_KEYS = 1000

    def __init__(
        self,
        prefixes: tuple[str, ...],
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._prefixes = prefixes
        self._interval_s = interval_s
        self._clock = clock
        self._windows: dict[tuple[str, str], tuple[float, int]] = {}

    def _limited(self, record: logging.LogRecord) -> bool:
        if record.levelno <= logging.DEBUG:
            return False
        name = record.name
        return any(name == p or name.startswith(p + ".") for p in self._prefixes)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._limited(record):
            return True
        key = (record.name, str(record.msg))
        now = self._clock()
        window = self._windows.get(key)
        if window is not None and now - window[0] < self._interval_s:
            self._windows[key] = (window[0], window[1] + 1)
            return False
        if window is not None and window[1]:
            withheld, since = window[1], now - window[0]
            record.msg = f"{record.msg} ({withheld} like it withheld in the last {since:.0f}s)"
            record.withheld = withheld
        self._windows.pop(key, None)
        self._windows[key] = (now, 0)
        if len(self._windows) > self.MAX_KEYS:
            del self._windows[next(iter(self._windows))]
        return True


def lag_from_metrics(connector: str) -> Callable[[], dict[TopicPartition, int]]:
    """Lag per partition as the health sampler last exported it (empty when it does not
    run, i.e. `METRICS_PORT=0`)."""

    def read() -> dict[TopicPartition, int]:
        lag: dict[TopicPartition, int] = {}
        for family in metrics.CONSUMER_LAG.collect():
            for sample in family.samples:
                labels = sample.labels
                if labels.get("connector") == connector:
                    lag[(labels["topic"], int(labels["partition"]))] = int(sample.value)
        return lag

    return read


class Progress:
    """The periodic progress line; the runner calls `count` per commit and `tick` per loop.

    Both are cheap enough for every batch: `tick` compares two floats until a line is due.
    """

    def __init__(
        self,
        connector: str,
        interval_s: float,
        *,
        lag: Callable[[], dict[TopicPartition, int]] | None = None,
        logger: logging.Logger | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._interval_s = interval_s
        self._lag = lag if lag is not None else lag_from_metrics(connector)
        self._log = logger or logging.getLogger("connectors.runtime.catch_up")
        self._clock = clock
        self._since = clock()
        self._due = self._since + interval_s
        self._records = 0
        self._last_commit: float | None = None

    def count(self, records: int) -> None:
        self._records += records
        self._last_commit = self._clock()

    def tick(self) -> None:
        if self._interval_s <= 0:
            return
        now = self._clock()
        if now < self._due:
            return
        fields = self._fields(now)
        self._log.info("%s", _describe(fields, now - self._since), extra=fields)
        self._since, self._due, self._records = now, now + self._interval_s, 0

    def _fields(self, now: float) -> dict[str, Any]:
        elapsed = max(now - self._since, 1e-9)
        lag = self._lag()
        fields: dict[str, Any] = {
            "records": self._records,
            "rate_per_s": round(self._records / elapsed, 1),
            "lag": sum(lag.values()) if lag else None,
            "partitions": len(lag),
            "last_commit_s_ago": (
                None if self._last_commit is None else round(now - self._last_commit, 1)
            ),
        }
        if lag:
            (topic, partition), most = max(lag.items(), key=lambda item: item[1])
            fields.update(topic=topic, partition=partition, lag_max=most)
        return fields


def _describe(f: dict[str, Any], elapsed: float) -> str:
    line = f"progress: {f['records']} records committed in {elapsed:.0f}s ({f['rate_per_s']}/s)"
    if f["lag"] is None:
        line += ", lag unknown (no offset samples yet)"
    else:
        line += f", lag {f['lag']} over {f['partitions']} partitions"
        if f["lag"]:
            line += f" (most behind: {f['topic']}[{f['partition']}] {f['lag_max']})"
    if f["last_commit_s_ago"] is None:
        return line + ", no commit yet"
    return line + f", last commit {f['last_commit_s_ago']}s ago"
