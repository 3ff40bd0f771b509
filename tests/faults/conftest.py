"""Fixtures of the fault suite: one three-broker cluster and one 200,000-record topic for
the session, and the report that becomes `docs/reliability.md` when the session ends.

The suite is opt-in: it takes minutes, three brokers and a tmpfs mount, so a plain
`pytest` (`make test`) deselects it. It runs when the marker is selected (`-m faults`,
what `make test-faults` does) or when a path inside `tests/faults` is named.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.cluster import KafkaCluster
from tests.faults.report import Report
from tests.faults.support import LONG, Dataset, make_dataset

# A restarted broker takes its preferred leaderships back within seconds (300 s by
# default), so a broker restart moves leaders twice during a run, not once.
CLUSTER_PROPERTIES = {
    "leader.imbalance.check.interval.seconds": "5",
    "group.initial.rebalance.delay.ms": "0",
}


HERE = Path(__file__).resolve().parent
MARKER = "faults: fault-injection suite on a three-broker cluster (make test-faults)"


def pytest_configure(config: pytest.Config) -> None:
    # Also declared in pyproject.toml; registered here so --strict-markers never trips.
    config.addinivalue_line("markers", MARKER)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "faults" in (config.option.markexpr or ""):
        return
    for arg in config.args:
        path = Path(arg.split("::", 1)[0]).resolve()
        if path == HERE or HERE in path.parents:
            return
    ours = [item for item in items if HERE in item.path.parents]
    if ours:
        config.hook.pytest_deselected(items=ours)
        items[:] = [item for item in items if HERE not in item.path.parents]


@pytest.fixture(scope="session")
def cluster() -> Iterator[KafkaCluster]:
    with KafkaCluster(properties=CLUSTER_PROPERTIES, start_timeout=180.0) as running:
        yield running


@pytest.fixture(scope="session")
def dataset(cluster: KafkaCluster) -> Dataset:
    """200,000 records with unique keys on 12 partitions; every scenario reads them with a
    consumer group and a sink of its own."""
    return make_dataset(cluster.bootstrap, f"faults-{uuid.uuid4().hex[:8]}", LONG)


@pytest.fixture(scope="session")
def report() -> Iterator[Report]:
    collected = Report()
    yield collected
    collected.write()


@pytest.fixture
def group() -> str:
    return f"faults-{uuid.uuid4().hex[:10]}"
