"""`/healthz`, `/readyz`, `/livez` against the real broker, around an in-process runner.

The runner runs on its own thread and loop, as under `connector run`; its writer is a
gate the test opens and closes, which makes "progressing" and "stuck" deterministic.
The helpers here (`GatedWriter`, `RunningConnector`) serve the Prometheus and tracing
tests too.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from connectors import Entry, WriteBatch
from connectors.config.observability import HealthSettings
from connectors.config.pipeline import resolve
from connectors.config.settings import KafkaSettings
from connectors.core.errors import FatalError
from connectors.core.records import TopicPartition
from connectors.observability.health import HealthServer, RunnerStatus
from connectors.runtime.runner import Runner
from connectors.runtime.stopping import run_until_stopped
from harness.kafka import KafkaBroker, create_topic, run_sync
from harness.kcat import produce
from harness.ports import free_port
from tests.conftest import ROOT, connector_command, connector_env
from tests.waiting import wait_for


class GatedWriter:
    """A writer whose `write` waits until the test lets it through (thread-safe controls).

    `allow(n)` lets n more writes through, `open()` all of them, `shut()` none; `waiting`
    counts writes parked at the gate; `failing` makes `check()` raise.
    """

    def __init__(self, *, open_: bool = False) -> None:
        self.stored: list[Entry] = []
        self.waiting = 0
        self.failing = False
        self._open = open_
        self._permits = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()

    async def write(self, batch: WriteBatch) -> None:
        assert self._changed is not None
        self.waiting += 1
        try:
            while not self._open and self._permits == 0:
                self._changed.clear()
                await self._changed.wait()
            if not self._open:
                self._permits -= 1
        finally:
            self.waiting -= 1
        self.stored.extend(batch.entries)

    async def check(self) -> None:
        if self.failing:
            raise ConnectionError("target unreachable")

    async def close(self) -> None:
        return None

    def _set(self, open_: bool | None = None, permits: int = 0) -> None:
        def apply() -> None:
            if open_ is not None:
                self._open = open_
            self._permits += permits
            assert self._changed is not None
            self._changed.set()

        if self._loop is None:  # not started: nothing waits yet
            self._open = self._open if open_ is None else open_
            self._permits += permits
        else:
            self._loop.call_soon_threadsafe(apply)

    def allow(self, writes: int) -> None:
        self._set(permits=writes)

    def open(self) -> None:
        self._set(open_=True)

    def shut(self) -> None:
        self._set(open_=False)


def pipeline_env(
    kafka: KafkaBroker, name: str, topic: str, tmp: Path, **extra: str
) -> dict[str, str]:
    return {
        "CONNECTOR_NAME": name,
        "TOPICS": topic,
        "TOPIC_SCHEMAS": f"{topic}=bytes",
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
        "KV_URL": f"lmdb:{tmp / 'unused-kv'}",
        "BATCH_MAX_MESSAGES": "5",
        "BATCH_MAX_WAIT_MS": "100",
        "RETRY_INITIAL_MS": "50",
        "RETRY_MAX_MS": "200",
        "DLQ_CREATE": "true",  # the test brokers create no topic by themselves
        **extra,
    }


class RunningConnector:
    """`connector run` in-process: a Runner on its own thread and loop, with (optionally)
    the health server on the port `port`, started and stopped like `cmd_run` does."""

    def __init__(
        self,
        env: Mapping[str, str],
        writer: GatedWriter | Any,
        *,
        health: HealthSettings | None = None,
        serve: bool = True,
    ) -> None:
        self._env = dict(env)
        self.writer = writer
        self._health_settings = health
        self._serve = serve
        self.runner: Runner | None = None
        self.health: HealthServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="test-connector", daemon=True)

    @property
    def port(self) -> int:
        assert self.health is not None
        return self.health.port

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            self._error = exc
            self._started.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        runner = Runner(resolve(self._env), writer=self.writer)
        self.runner = runner
        if self._serve:
            self.health = HealthServer(
                RunnerStatus.of(runner),
                port=0,
                host="127.0.0.1",
                settings=self._health_settings,
            )
            self.health.start()
        self._started.set()
        try:
            await run_until_stopped(runner, 10.0)
        finally:
            if self.health is not None:
                self.health.stop()

    def __enter__(self) -> RunningConnector:
        self._thread.start()
        assert self._started.wait(60), "connector did not start"
        if self._error is not None:
            raise self._error
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._loop is not None and self.runner is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.runner.stop)
        if isinstance(self.writer, GatedWriter):
            self.writer.open()
        self._thread.join(60)
        assert not self._thread.is_alive(), "connector did not stop"
        if self._error is not None and exc is None:
            raise self._error

    def get(self, path: str) -> tuple[int, Any]:
        return http_get(f"http://127.0.0.1:{self.port}{path}")

    def assignment(self) -> set[TopicPartition]:
        assert self.runner is not None
        try:
            return self.runner.reader.assignment()
        except RuntimeError:
            return set()


def http_get(url: str, accept: str | None = None) -> tuple[int, Any]:
    """(status, body) where a JSON body is decoded; 4xx/5xx answers are returned, not raised."""
    assert url.startswith("http://127.0.0.1:"), url
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            status, raw, kind = response.status, response.read(), response.headers["Content-Type"]
    except urllib.error.HTTPError as exc:
        status, raw, kind = exc.code, exc.read(), exc.headers["Content-Type"]
    return status, json.loads(raw) if kind == "application/json" else raw.decode()


def only_partition(body: dict[str, Any]) -> dict[str, Any]:
    partitions = body["partitions"]
    assert len(partitions) == 1, body
    found: dict[str, Any] = partitions[0]
    return found


async def group_members(bootstrap: str, group: str) -> list[str]:
    """Client ids of the group's members, as the group coordinator lists them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    (_error, _group, _state, _protocol_type, _protocol, members, *_rest) = described[0].groups[0]
    return [member[1] for member in members]


def test_healthz_tells_idle_progressing_and_stuck_apart(
    kafka: KafkaBroker, unique: str, tmp_path: Path
) -> None:
    topic, name = f"health-{unique}", f"health-{unique}"
    create_topic(kafka.bootstrap, topic, partitions=1)
    writer = GatedWriter()
    settings = HealthSettings(stuck_after_s=2.0, sample_interval_s=0.5, timeout_s=5.0)
    with RunningConnector(
        pipeline_env(kafka, name, topic, tmp_path), writer, health=settings
    ) as connector:
        wait_for(connector.assignment, timeout=60, what="a partition assigned")

        # Nothing produced yet: an empty partition is idle.
        status, body = connector.get("/healthz")
        assert (status, only_partition(body)["reason"]) == (200, "idle"), body

        produce(
            kafka.bootstrap, topic, [(0, f"k{n}".encode(), f"v{n}".encode()) for n in range(20)]
        )
        wait_for(lambda: writer.waiting, timeout=30, what="the first batch at the gate")

        # Behind, first look at that work: progressing, whatever was committed before.
        status, body = connector.get("/healthz")
        first = only_partition(body)
        assert (status, first["reason"], first["end"]) == (200, "progressing", 20), body

        # One batch goes through and is committed: the offset moved, still progressing.
        writer.allow(1)

        def committed_5() -> tuple[int, dict[str, Any]] | None:
            status, body = connector.get("/healthz")
            return (status, body) if only_partition(body)["committed"] == 5 else None

        status, body = wait_for(committed_5, timeout=30, what="offset 5 committed")
        moved = only_partition(body)
        assert (status, moved["reason"], moved["lag"]) == (200, "progressing", 15), body

        # The gate stays shut: behind and unmoving for stuck_after_s is stuck, and 503.
        def stuck() -> tuple[int, dict[str, Any]] | None:
            status, body = connector.get("/healthz")
            return (status, body) if only_partition(body)["reason"] == "stuck" else None

        status, body = wait_for(stuck, timeout=30, what="healthz to say stuck")
        jammed = only_partition(body)
        assert status == 503 and body["status"] == "unhealthy"
        assert (jammed["committed"], jammed["end"], jammed["lag"]) == (5, 20, 15)
        assert jammed["unchanged_for_s"] >= settings.stuck_after_s

        # Probing used clients of its own: the pipeline's consumer is the group's only member.
        assert run_sync(lambda: group_members(kafka.bootstrap, name), timeout=30) == [name]

        # Released, the connector catches up: committed equals end, idle again.
        writer.open()

        def idle() -> tuple[int, dict[str, Any]] | None:
            status, body = connector.get("/healthz")
            return (status, body) if only_partition(body)["reason"] == "idle" else None

        status, body = wait_for(idle, timeout=30, what="healthz to say idle")
        caught_up = only_partition(body)
        assert status == 200 and (caught_up["committed"], caught_up["lag"]) == (20, 0)
        assert len(writer.stored) == 20


def test_readyz_and_livez_follow_assignment_writer_and_broker(
    kafka: KafkaBroker, unique: str, tmp_path: Path
) -> None:
    topic, name = f"ready-{unique}", f"ready-{unique}"
    create_topic(kafka.bootstrap, topic, partitions=2)
    writer = GatedWriter(open_=True)
    with RunningConnector(pipeline_env(kafka, name, topic, tmp_path), writer) as connector:
        status, body = wait_for(
            lambda: (
                (r := connector.get("/readyz"))[0] == 200 and r[1]["assigned_partitions"] == 2 and r
            ),
            timeout=60,
            what="readyz 200 with both partitions",
        )
        assert body == {"ready": True, "joined": True, "assigned_partitions": 2, "writer": "ok"}

        writer.failing = True
        status, body = connector.get("/readyz")
        assert status == 503 and body["writer"] == "ConnectionError: target unreachable", body
        writer.failing = False

        status, body = connector.get("/livez")
        assert status == 200 and body["live"] is True, body

        status, text = http_get(f"http://127.0.0.1:{connector.port}/metrics")
        assert status == 200 and "connector_consumer_lag" in text
        status, body = connector.get("/nowhere")
        assert status == 404 and "/healthz" in body["endpoints"]


class _Unreachable:
    """A pipeline whose broker address has nothing listening."""

    connector = "unreachable"
    group_id = "unreachable"
    commit_interval_s = 0.0
    joined = True

    def __init__(
        self,
        partitions: set[TopicPartition] | None = None,
        activity: tuple[str | None, float] = (None, 0.0),
    ) -> None:
        self.kafka = KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}")
        self.partitions = {("orders", 0), ("orders", 1)} if partitions is None else partitions
        self._activity = activity

    def activity(self) -> tuple[str | None, float]:
        return self._activity

    def blocked(self) -> None:
        return None

    async def assignment(self) -> set[TopicPartition]:
        return set(self.partitions)

    async def writer_check(self) -> None:
        return None


def test_offsets_that_cannot_be_read_are_unhealthy() -> None:
    server = HealthServer(
        _Unreachable(),
        port=0,
        host="127.0.0.1",
        settings=HealthSettings(stuck_after_s=60, sample_interval_s=60, timeout_s=2),
    )
    server.start()
    try:
        status, body = http_get(f"http://127.0.0.1:{server.port}/healthz")
        assert status == 503 and body["status"] == "unhealthy"
        assert [p["reason"] for p in body["partitions"]] == ["offsets_unavailable"] * 2
        assert body["error"].startswith("read offsets:"), body

        # A broker out of reach makes the pipeline wait; a restart would not help.
        status, body = http_get(f"http://127.0.0.1:{server.port}/livez")
        assert status == 200 and body["live"] is True, body
    finally:
        server.stop()


def test_healthz_names_a_stage_running_too_long_even_with_no_partition() -> None:
    """A batch stuck in one stage before any partition shows up in the assignment."""
    began = time.monotonic() - 130.0
    server = HealthServer(
        _Unreachable(set(), ("transform", began)),
        port=0,
        host="127.0.0.1",
        settings=HealthSettings(stuck_after_s=120, sample_interval_s=60, timeout_s=2),
    )
    server.start()
    try:
        status, body = http_get(f"http://127.0.0.1:{server.port}/healthz")
    finally:
        server.stop()
    assert status == 503 and body["status"] == "unhealthy" and body["partitions"] == []
    assert body["wedged"]["stage"] == "transform" and body["wedged"]["for_s"] >= 130.0, body


def test_a_port_in_use_is_a_fatal_error_naming_metrics_port() -> None:
    first = HealthServer(_Unreachable(), port=0, host="127.0.0.1")
    first.start()
    try:
        second = HealthServer(_Unreachable(), port=first.port, host="127.0.0.1")
        with pytest.raises(FatalError, match=f"^METRICS_PORT='{first.port}': .*already in use"):
            second.start()
    finally:
        first.stop()


def test_connector_run_serves_the_probes_and_logs_json_with_progress(
    kafka: KafkaBroker, unique: str, tmp_path: Path
) -> None:
    """The wiring in `connector run`: probes on METRICS_PORT, JSON logs, progress lines."""
    topic, name = f"wired-{unique}", f"wired-{unique}"
    create_topic(kafka.bootstrap, topic, partitions=2)
    produce(kafka.bootstrap, topic, [(n % 2, f"k{n}".encode(), b"v") for n in range(50)])
    port = free_port()
    env = connector_env(
        **pipeline_env(kafka, name, topic, tmp_path),
        METRICS_PORT=str(port),
        METRICS_HOST="127.0.0.1",
        LOG_FORMAT="json",
        LOG_PROGRESS_INTERVAL_S="0.5",
        HEALTH_SAMPLE_INTERVAL_S="0.5",
        KV_SYNC="false",
    )
    process = subprocess.Popen(
        connector_command("run"), env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True
    )
    assert process.stderr is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stderr.readline, "")))
    reader.start()
    try:

        def caught_up() -> dict[str, Any] | None:
            try:
                status, body = http_get(f"http://127.0.0.1:{port}/healthz")
            except OSError:
                return None
            reasons = [p["reason"] for p in body["partitions"]]
            return body if status == 200 and reasons == ["idle", "idle"] else None

        body = wait_for(caught_up, timeout=60, what="/healthz idle on both partitions")
        assert sum(p["committed"] for p in body["partitions"]) == 50
        status, ready = http_get(f"http://127.0.0.1:{port}/readyz")
        assert status == 200 and ready["assigned_partitions"] == 2
        status, text = http_get(f"http://127.0.0.1:{port}/metrics")
        build = [line for line in text.splitlines() if line.startswith("connector_build_info{")]
        assert build and f'connector="{name}"' in build[0]

        def progress() -> list[dict[str, Any]]:
            found = [
                json.loads(line) for line in list(lines) if '"connectors.runtime.catch_up"' in line
            ]
            return found if found and found[-1]["lag"] == 0 else []

        shown = wait_for(progress, timeout=30, what="a progress line with lag 0")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        reader.join(10)
        process.stderr.close()
    assert process.returncode == 0, "".join(lines[-30:])
    assert shown[-1]["partitions"] == 2 and sum(line["records"] for line in shown) == 50
    assert shown[-1]["message"].startswith("progress: "), shown[-1]
    logged = [json.loads(line) for line in lines if line.startswith("{")]
    assert logged and all(line["connector"] == name for line in logged)
    assert any(line.get("reason") == "idle" and line.get("partition") == 0 for line in logged)
