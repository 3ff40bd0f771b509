"""Which probe fails for which trouble, on the real broker: liveness only when a restart
can help (a stage wedged past its deadline), never for a dependency that is down (the
writer's target, the broker), which `/healthz` reports as `blocked` with the reason.

Deadlines are seconds here instead of minutes: "down for 3 minutes" is "down for more than
three times HEALTH_STUCK_AFTER_S", which is what the probes compare against.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from connectors import RetriableError, WriteBatch, transform
from connectors.config.observability import HealthSettings
from harness.kafka import KafkaBroker, create_topic
from harness.kcat import produce
from tests.integration.test_health import RunningConnector, only_partition, pipeline_env
from tests.waiting import wait_for

DEADLINE_S = 2.0
SETTINGS = HealthSettings(stuck_after_s=DEADLINE_S, sample_interval_s=0.5, timeout_s=5.0)


class DownWriter:
    """A writer whose target answers 503 until `up` is set."""

    def __init__(self) -> None:
        self.up = threading.Event()
        self.stored: list[bytes | None] = []
        self.refused = 0

    async def start(self) -> None:
        return None

    async def write(self, batch: WriteBatch) -> None:
        if not self.up.is_set():
            self.refused += 1
            raise RetriableError("HTTP 503 Service Unavailable from the sink")
        self.stored.extend(e.key for e in batch.entries)

    async def check(self) -> None:
        if not self.up.is_set():
            raise ConnectionError("sink unreachable")

    async def close(self) -> None:
        return None


def test_a_writer_down_blocks_the_partitions_and_never_fails_liveness(
    kafka: KafkaBroker, unique: str, tmp_path: Path
) -> None:
    topic = f"blocked-{unique}"
    create_topic(kafka.bootstrap, topic, partitions=1)
    produce(kafka.bootstrap, topic, [(0, f"k{n}".encode(), b"v") for n in range(10)])
    writer = DownWriter()
    env = pipeline_env(kafka, topic, topic, tmp_path, RETRY_MAX_MS="300")
    with RunningConnector(env, writer, health=SETTINGS) as connector:
        wait_for(lambda: writer.refused >= 2, timeout=60, what="the write retried")
        started = time.monotonic()
        lives: list[int] = []

        def blocked() -> dict[str, Any] | None:
            lives.append(connector.get("/livez")[0])
            status, body = connector.get("/healthz")
            waited = time.monotonic() - started > 3 * DEADLINE_S
            reasons = [p["reason"] for p in body["partitions"]]
            return body if waited and status == 503 and reasons == ["blocked"] else None

        body = wait_for(blocked, timeout=60, what="/healthz blocked after 3 deadlines")
        assert set(lives) == {200}, lives
        assert body["wedged"] is None
        assert body["blocked"]["stage"] == "write"
        assert "HTTP 503" in body["blocked"]["reason"]
        assert body["blocked"]["for_s"] >= 3 * DEADLINE_S
        assert only_partition(body)["committed"] in (None, 0)
        status, live = connector.get("/livez")
        assert status == 200 and live["blocked"]["stage"] == "write", live
        status, ready = connector.get("/readyz")
        assert status == 503 and ready["writer"] == "ConnectionError: sink unreachable"

        writer.up.set()

        def idle() -> dict[str, Any] | None:
            status, body = connector.get("/healthz")
            return body if status == 200 and only_partition(body)["reason"] == "idle" else None

        body = wait_for(idle, timeout=60, what="/healthz idle once the sink is back")
        assert body["blocked"] is None and only_partition(body)["committed"] == 10
        assert len(writer.stored) == 10


HANG = threading.Event()


@transform("hang_on_k3")
def hang_on_k3(message: bytes, ctx: Any) -> bytes:
    """Blocks the pipeline's event loop on one record, as a stuck synchronous call does."""
    if ctx.key == b"k3":
        HANG.wait(60)
    return message


def test_a_transform_that_hangs_fails_liveness_within_the_deadline(
    kafka: KafkaBroker, unique: str, tmp_path: Path
) -> None:
    topic = f"hung-{unique}"
    create_topic(kafka.bootstrap, topic, partitions=1)
    produce(kafka.bootstrap, topic, [(0, f"k{n}".encode(), b"v") for n in range(5)])
    env = pipeline_env(kafka, topic, topic, tmp_path, TRANSFORMS="hang_on_k3")
    HANG.clear()
    writer = DownWriter()
    writer.up.set()
    with RunningConnector(env, writer, health=SETTINGS) as connector:
        try:
            began = time.monotonic()

            def dead() -> tuple[float, dict[str, Any]] | None:
                status, body = connector.get("/livez")
                return (time.monotonic() - began, body) if status == 503 else None

            after, body = wait_for(dead, timeout=60, what="/livez failing")
            assert body["live"] is False and body["wedged"]["stage"] == "transform", body
            assert body["wedged"]["for_s"] >= DEADLINE_S and body["blocked"] is None
            assert after < DEADLINE_S + 30  # within the deadline plus start-up and a batch
        finally:
            HANG.set()
        wait_for(lambda: connector.get("/livez")[0] == 200, timeout=60, what="/livez again")
        wait_for(lambda: len(writer.stored) == 5, timeout=60, what="all five stored")


def test_a_broker_that_stops_is_not_a_liveness_failure(unique: str, tmp_path: Path) -> None:
    broker = KafkaBroker(tmp_path / "kafka")
    broker.start()
    try:
        topic = f"gone-{unique}"
        create_topic(broker.bootstrap, topic, partitions=1)
        writer = DownWriter()
        writer.up.set()
        env = pipeline_env(broker, topic, topic, tmp_path)
        with RunningConnector(env, writer, health=SETTINGS) as connector:
            wait_for(connector.assignment, timeout=60, what="a partition assigned")
            wait_for(
                lambda: connector.get("/readyz")[0] == 200, timeout=60, what="ready with the broker"
            )
            broker.stop()
            stopped = time.monotonic()
            lives: list[int] = []

            def unavailable() -> dict[str, Any] | None:
                lives.append(connector.get("/livez")[0])
                status, body = connector.get("/healthz")
                reasons = [p["reason"] for p in body["partitions"]]
                waited = time.monotonic() - stopped > 3 * DEADLINE_S
                return body if waited and reasons == ["offsets_unavailable"] else None

            wait_for(unavailable, timeout=90, what="/healthz offsets_unavailable")
            assert set(lives) == {200}, lives
    finally:
        broker.close()


def test_a_replica_holding_no_partition_is_ready(
    kafka: KafkaBroker, unique: str, tmp_path: Path
) -> None:
    """Two members, one partition: the idle member is ready, or a rollout never ends."""
    topic = f"spare-{unique}"
    create_topic(kafka.bootstrap, topic, partitions=1)
    env = pipeline_env(kafka, topic, topic, tmp_path)
    first, second = DownWriter(), DownWriter()
    first.up.set()
    second.up.set()
    with (
        RunningConnector(env, first, health=SETTINGS) as one,
        RunningConnector(env, second, health=SETTINGS) as two,
    ):
        wait_for(
            lambda: len(one.assignment()) + len(two.assignment()) == 1,
            timeout=60,
            what="the partition assigned to one member",
        )
        spare = one if not one.assignment() else two
        status, body = wait_for(
            lambda: (r := spare.get("/readyz"))[0] == 200 and r, timeout=60, what="spare ready"
        )
        assert body["joined"] is True and body["assigned_partitions"] == 0, body
