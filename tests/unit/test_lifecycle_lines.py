"""The connector's own lines and counters around a run, against in-memory fakes: `started`
with the pipeline summary, `stopped` with reason, records, offsets and exit code; client
libraries quiet below WARNING unless LOG_LEVEL=DEBUG; retries counted by reason; drops
counted under both names; counters created at 0."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import httpx
import pytest

from connectors import FatalError, RetriableError
from connectors.config.observability import LogSettings
from connectors.observability import logs, metrics
from connectors.runtime.instruments import Instruments, retry_reason
from connectors.runtime.runner import Runner
from connectors.testing.fakes import MemoryDeadLetters, MemoryReader, MemoryWriter, retriable
from tests.unit.test_runner import pipeline, records, run


@pytest.fixture
def root() -> Iterator[logging.Logger]:
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
        for name in logs.THIRD_PARTY:
            logging.getLogger(name).setLevel(logging.NOTSET)


def _setup(level: str) -> io.StringIO:
    out = io.StringIO()
    logs.setup(level, "unit", LogSettings.model_validate({"LOG_FORMAT": "text"}), out)
    return out


def test_client_libraries_say_warnings_only_unless_debug(root: logging.Logger) -> None:
    out = _setup("INFO")
    logging.getLogger("aiokafka.consumer.group_coordinator").info("Joined group %s", "g")
    logging.getLogger("httpx").info("HTTP Request: GET http://x")
    logging.getLogger("aiokafka.conn").warning("Unable connect to node 1")
    logging.getLogger("connectors.runtime.runner").info("ours")
    text = out.getvalue()
    assert "Joined group" not in text and "HTTP Request" not in text
    assert "Unable connect to node 1" in text and "ours" in text

    out = _setup("DEBUG")
    logging.getLogger("aiokafka.consumer.group_coordinator").info("Joined group %s", "g")
    assert "Joined group g" in out.getvalue()


def _runner(name: str, reader: MemoryReader, writer: MemoryWriter, **env: str) -> Runner:
    return Runner(
        pipeline(CONNECTOR_NAME=name, **env),
        until_caught_up=True,
        reader=reader,
        writer=writer,
        dead_letters=MemoryDeadLetters(),
    )


async def test_started_and_stopped_lines(caplog: pytest.LogCaptureFixture) -> None:
    reader = MemoryReader([records(0, 0, 3), records(1, 0, 2)])
    caplog.set_level(logging.INFO)
    await run(_runner("lines", reader, MemoryWriter()))
    messages = [r.getMessage() for r in caplog.records]
    assert "started: topics raw -> types bytes -> transforms none -> writer kv, group lines" in (
        messages
    ), messages
    stopped = [r for r in caplog.records if r.getMessage().startswith("stopped: ")]
    assert [r.getMessage() for r in stopped] == [
        "stopped: caught up; 5 records processed, committed raw[0]=3 raw[1]=2; exit code 0"
    ]
    assert stopped[0].exit_code == 0 and stopped[0].records == 5  # type: ignore[attr-defined]
    assert not [m for m in messages if "revoked" in m]


async def test_a_fatal_error_ends_with_exit_code_1(caplog: pytest.LogCaptureFixture) -> None:
    reader = MemoryReader([records(0, 0, 2)])
    caplog.set_level(logging.INFO)
    with pytest.raises(FatalError):
        await run(_runner("fatal", reader, MemoryWriter([FatalError("disk gone")])))
    stopped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("stopped: ")]
    assert stopped == [
        "stopped: fatal: disk gone; 0 records processed, nothing committed; exit code 1"
    ]
    assert reader.commits == []


def _value(metric: object, **labels: str) -> float | None:
    for family in metric.collect():  # type: ignore[attr-defined]
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.labels == labels:
                return float(sample.value)
    return None


async def test_retries_are_counted_by_reason() -> None:
    failure = RetriableError("PUT answered 503", reason="http_503")
    cause = RetriableError("GET failed")
    cause.__cause__ = httpx.ConnectTimeout("timed out")
    writer = MemoryWriter([failure, cause, retriable()])
    await run(_runner("reasons", MemoryReader([records(0, 0, 2)]), writer))
    by = metrics.RETRIES_BY_REASON
    assert _value(by, connector="reasons", stage="write", reason="http_503") == 1
    assert _value(by, connector="reasons", stage="write", reason="ConnectTimeout") == 1
    assert _value(by, connector="reasons", stage="write", reason="RetriableError") == 1
    assert _value(metrics.RETRIES, connector="reasons", stage="write") == 3
    assert retry_reason(RetriableError("x")) == "RetriableError"


def test_counters_exist_at_zero_for_what_is_known_at_start() -> None:
    Instruments("known", "kv", topics=["a", "b"], transforms=["t1"])
    for topic in ("a", "b"):
        assert _value(metrics.RECORDS_IN, connector="known", topic=topic) == 0
        assert _value(metrics.OFFSET_RESETS, connector="known", topic=topic) == 0
        for stage in ("decode", "transform:t1", "write"):
            labels = {"connector": "known", "topic": topic, "reason": stage}
            assert _value(metrics.RECORDS_DEAD_LETTERED, **labels) == 0
    for stage in ("decode", "transform:t1", "write"):
        assert _value(metrics.RECORDS_FAILED, connector="known", stage=stage) == 0
    for stage in ("poll", "write", "commit", "transform", "dead_letter", "reader.start"):
        assert _value(metrics.RETRIES, connector="known", stage=stage) == 0
    for kind in ("assigned", "revoked", "lost"):
        assert _value(metrics.REBALANCES, connector="known", kind=kind) == 0


async def test_drops_are_counted_under_both_names() -> None:
    from connectors import transform

    @transform("drop_odd_unit")
    def drop_odd(message: bytes, ctx: object) -> bytes | None:
        return None if message.endswith((b"1", b"3")) else message

    reader = MemoryReader([records(0, 0, 4)])
    await run(_runner("drops", reader, MemoryWriter(), TRANSFORMS="drop_odd_unit"))
    new = _value(metrics.RECORDS_DROPPED, connector="drops", transform="drop_odd_unit")
    old = _value(metrics.TRANSFORM_DROPPED, connector="drops", transform="drop_odd_unit")
    assert new == old == 2
    assert reader.commits == [{("raw", 0): 4}]


def test_no_created_series_and_versions_in_build_info() -> None:
    from prometheus_client import generate_latest

    metrics.BUILD.info(metrics.build_info("unit-build"))
    text = generate_latest(metrics.REGISTRY).decode()
    assert "_created" not in text
    line = next(x for x in text.splitlines() if x.startswith("connector_build_info{"))
    for label in ("version=", "python=", "aiokafka=", 'connector="unit-build"'):
        assert label in line
