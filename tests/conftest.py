"""Fixtures shared by every suite: real services started by the harness, once per session.

A fixture that cannot start its service fails the tests that need it, loudly, with the
service's log; nothing is skipped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.kafka import KafkaBroker, create_topic
from harness.redis import RedisServer

ROOT = Path(__file__).resolve().parent.parent
EDGE_DESCRIPTORS = ROOT / "transforms" / "proto" / "edge.binpb"


@pytest.fixture(scope="session")
def kafka() -> Iterator[KafkaBroker]:
    """One single-node KRaft broker for the whole session."""
    broker = KafkaBroker()
    broker.start()
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic, group and connector names within one session."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def topic(kafka: KafkaBroker, unique: str) -> str:
    """A fresh 3-partition topic."""
    name = f"t-{unique}"
    create_topic(kafka.bootstrap, name, partitions=3)
    return name


def connector_env(**overrides: str) -> dict[str, str]:
    """The environment a subprocess `connector` gets: PATH and friends plus `overrides`."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    # The harness's brokers create no topic on their own, as production clusters: the
    # dead-letter topic is created by the connector unless a test is about that topic.
    keep.update({"METRICS_PORT": "0", "LOG_LEVEL": "INFO", "DLQ_CREATE": "true"})
    keep.update(overrides)
    return keep


def connector_command(*args: str) -> list[str]:
    """`connector ARGS` run with this interpreter, so the venv under test is the one used."""
    return [sys.executable, "-m", "connectors.cli", *args]


def run_connector(
    *args: str, env: dict[str, str], timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        connector_command(*args),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
