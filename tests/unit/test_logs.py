"""Log lines: one event is one line in either format, and aiokafka's floods are rate-limited."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest

from connectors.config.observability import LogSettings
from connectors.observability import logs
from connectors.observability.logs import JsonFormatter, RateLimit, TextFormatter

FORGED = "bad value\nfatal: FORGED\r\n2030-01-01 00:00:00,000 ERROR connectors: FORGED"


@pytest.fixture
def root() -> Iterator[logging.Logger]:
    """The root logger, restored after `logs.setup` replaced its handlers."""
    logger = logging.getLogger()
    handlers, level = list(logger.handlers), logger.level
    try:
        yield logger
    finally:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        for handler in handlers:
            logger.addHandler(handler)
        logger.setLevel(level)


def record(
    name: str = "connectors.runtime.runner",
    msg: str = "dead-lettering %s: %s",
    args: tuple[object, ...] = ("t[0]@1", FORGED),
    level: int = logging.WARNING,
) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def fail(error: Exception) -> None:
    raise error


def raised() -> logging.LogRecord:
    try:
        fail(ValueError(FORGED))
    except ValueError:
        found = record(msg="transform failed", args=())
        found.exc_info = sys.exc_info()
        return found


def test_text_lines_escape_line_breaks_in_messages_and_exceptions() -> None:
    formatter = TextFormatter()
    line = formatter.format(record())
    assert "\n" not in line and "\r" not in line
    assert line.endswith(
        "dead-lettering t[0]@1: bad value\\nfatal: FORGED\\r\\n"
        "2030-01-01 00:00:00,000 ERROR connectors: FORGED"
    )
    with_traceback = formatter.format(raised())
    assert with_traceback.splitlines() == [with_traceback]
    assert "transform failed\\nTraceback (most recent call last):\\n" in with_traceback
    assert "ValueError: bad value\\nfatal: FORGED" in with_traceback


@pytest.mark.parametrize("brk", ["\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u2029"])
def test_every_line_break_python_knows_is_escaped(brk: str) -> None:
    line = TextFormatter().format(record(args=("x", f"a{brk}b")))
    assert line.splitlines() == [line]


def test_json_lines_are_already_one_line_and_keep_the_text() -> None:
    formatter = JsonFormatter("c")
    for made in (record(), raised()):
        line = formatter.format(made)
        assert line.splitlines() == [line]
        found = json.loads(line)
        assert FORGED in (found["message"] + found.get("exception", ""))


@pytest.mark.parametrize("form", ["text", "json"])
def test_setup_writes_one_line_per_event(root: logging.Logger, form: str) -> None:
    stream = io.StringIO()
    logs.setup("INFO", "c", LogSettings(format=form), stream)
    log = logging.getLogger("connectors.runtime.runner")
    log.warning("dead-lettering %s: %s", "t[0]@1", FORGED)
    try:
        fail(RuntimeError(FORGED))
    except RuntimeError:
        log.exception("write failed")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert not [line for line in lines if line.startswith(("fatal:", "2030-"))], lines


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def passed(limit: RateLimit, *records: logging.LogRecord) -> list[logging.LogRecord]:
    return [r for r in records if limit.filter(r)]


def aiokafka(
    msg: str = "Unable connect to node with id %s: %s", node: int = 1
) -> logging.LogRecord:
    return record("aiokafka.client", msg, (node, "Connection refused"), logging.ERROR)


def test_one_template_passes_once_per_interval_then_says_how_many_were_withheld() -> None:
    clock = Clock()
    limit = RateLimit(("aiokafka",), 10.0, clock)
    first = passed(limit, *(aiokafka(node=n % 3) for n in range(1000)))
    assert len(first) == 1 and first[0].getMessage().endswith("Connection refused")

    clock.now += 9.9
    assert passed(limit, aiokafka()) == []
    clock.now += 0.2
    (summary,) = passed(limit, aiokafka(), aiokafka())
    assert summary.getMessage() == (
        "Unable connect to node with id 1: Connection refused "
        "(1000 like it withheld in the last 10s)"
    )
    assert summary.__dict__["withheld"] == 1000

    clock.now += 10.0  # one withheld in the window since the summary
    (again,) = passed(limit, aiokafka())
    assert again.__dict__["withheld"] == 1
    clock.now += 60.0  # nothing withheld since: a plain line
    (quiet,) = passed(limit, aiokafka())
    assert "withheld" not in quiet.getMessage() and "withheld" not in quiet.__dict__


def test_templates_and_loggers_are_limited_apart_and_others_never() -> None:
    limit = RateLimit(("aiokafka",), 10.0, Clock())
    missing = "Topic %s not found in cluster metadata"
    other_logger = record("aiokafka.cluster", missing, ("t",), logging.ERROR)
    flood = [aiokafka(), aiokafka(missing), other_logger, aiokafka(), aiokafka(missing)]
    assert len(passed(limit, *flood)) == 3
    ours = [record() for _ in range(50)]
    assert len(passed(limit, *ours)) == 50
    lookalike = [record("aiokafkaish", "x %s", ("y",)) for _ in range(5)]
    assert len(passed(limit, *lookalike)) == 5
    debug = [record("aiokafka.conn", "sent %s", ("r",), logging.DEBUG) for _ in range(20)]
    assert len(passed(limit, *debug)) == 20


def test_setup_rate_limits_aiokafka(root: logging.Logger) -> None:
    stream = io.StringIO()
    logs.setup("INFO", "c", LogSettings(format="json"), stream)
    for _ in range(500):
        logging.getLogger("aiokafka.cluster").error("Topic %s not found in cluster metadata", "t")
    logging.getLogger("connectors.runtime.runner").warning("still here")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["message"] for line in lines] == [
        "Topic t not found in cluster metadata",
        "still here",
    ]
