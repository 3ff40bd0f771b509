"""Stopping and starting under hostile conditions, against `connector run` on a real broker:

- SIGTERM while a transform hangs (a busy loop, a long sleep: the event loop is held):
  exit 0 within SHUTDOWN_GRACE_S plus a small margin, one "abandoned" line, nothing
  committed past the hung batch, which the next run replays;
- SIGTERM while a write hangs past the grace period: exit 0, one line, no traceback,
  nothing committed for the abandoned batch;
- a dependency down at start (Redis for WRITER=kv, the broker): the start is retried with
  the RETRY_* backoff and WARNING lines until it succeeds (the connector then catches up),
  RETRY_MAX_ATTEMPTS is reached (exit 1), or SIGTERM (exit 0).
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from connectors.runtime.shutdown import MARGIN_S
from harness.kafka import KafkaBroker, consumer_group_offsets, create_topic
from harness.kcat import produce
from harness.ports import free_port
from harness.redis import RedisServer
from tests.conftest import ROOT, connector_command, connector_env, run_connector
from tests.integration.test_runner_kafka import read_lmdb
from tests.waiting import wait_for
from writers.kv.redis_store import RedisView
from writers.kv.settings import KVSettings

GRACE_S = 2.0
#: Beyond the grace and the watchdog's margin: process start-up is not part of it, but a
#: loaded machine's scheduling and the interpreter's exit are.
SLACK_S = 2.5
COUNT = 10

HANGING_MODULE = """
import asyncio
import os
import time
from pathlib import Path

from connectors import Put, WriterPlugin, transform
from connectors.core.registry import WRITERS
from writers.kv import PLUGIN as KV


def _reached():
    Path(os.environ["HANG_DIR"], "reached").touch()


@transform("hang")
def hang(message, ctx):
    how = os.environ.get("HANG_TRANSFORM", "")
    if ctx.offset == 5 and how:
        _reached()
        if how == "busy":
            while True:
                pass
        time.sleep(3600)
    return Put(ctx.key, message)


class HangingWriter:
    def __init__(self, inner):
        self._inner = inner

    async def start(self):
        await self._inner.start()

    async def write(self, batch):
        if os.environ.get("HANG_WRITE"):
            _reached()
            await asyncio.Event().wait()
        await self._inner.write(batch)

    async def check(self):
        await self._inner.check()

    async def close(self):
        await self._inner.close()


WRITERS.register(
    "hang_kv",
    WriterPlugin("hang_kv", KV.settings, lambda s, c: HangingWriter(KV.build(s, c)), KV.open_view),
)
"""


class Running:
    """`connector run ...` in the background, its stderr collected line by line."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.process = subprocess.Popen(
            connector_command("run", *args), env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True
        )
        stream = self.process.stderr
        assert stream is not None
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(iter(stream.readline, "")))
        self._reader.start()

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def count(self, text: str) -> int:
        return sum(text in line for line in list(self.lines))

    def wait(self, timeout: float) -> int:
        try:
            code = self.process.wait(timeout=timeout)
        finally:
            self.close()
        return code

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._reader.join(10)
        if self.process.stderr is not None:
            self.process.stderr.close()


def hang_env(kafka: KafkaBroker, name: str, topic: str, tmp: Path, **extra: str) -> dict[str, str]:
    modules = tmp / "modules"
    modules.mkdir(exist_ok=True)
    module = f"hang_{name.replace('-', '_')}"
    (modules / f"{module}.py").write_text(HANGING_MODULE)
    (tmp / "hang").mkdir(exist_ok=True)
    return connector_env(
        CONNECTOR_NAME=name,
        TOPICS=topic,
        TOPIC_SCHEMAS=f"{topic}=bytes",
        KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap,
        KV_URL=f"lmdb:{tmp / 'kv'}",
        KV_SYNC="false",
        TRANSFORM_MODULES=module,
        TRANSFORMS="hang",
        HANG_DIR=str(tmp / "hang"),
        SHUTDOWN_GRACE_S=f"{GRACE_S:g}",
        RETRY_INITIAL_MS="100",
        RETRY_MAX_MS="500",
        PYTHONPATH=f"{ROOT}:{modules}",
        **extra,
    )


def loaded_topic(kafka: KafkaBroker, name: str) -> str:
    topic = f"{name}-in"
    create_topic(kafka.bootstrap, topic, partitions=1)
    create_topic(kafka.bootstrap, f"{name}.dlq", partitions=1)
    produce(kafka.bootstrap, topic, [(0, f"k{n}".encode(), f"v{n}".encode()) for n in range(COUNT)])
    return topic


def committed(kafka: KafkaBroker, group: str, topic: str) -> int | None:
    return consumer_group_offsets(kafka.bootstrap, group).get((topic, 0), (None, 0))[0]


def everything() -> dict[bytes, bytes]:
    return {f"k{n}".encode(): f"v{n}".encode() for n in range(COUNT)}


def stop_when_hung(running: Running, tmp: Path) -> tuple[int, float]:
    """SIGTERM once the hang is reached; (exit code, seconds from the signal to the exit)."""

    def reached() -> bool:
        assert running.process.poll() is None, running.stderr[-3000:]
        return (tmp / "hang" / "reached").exists()

    wait_for(reached, timeout=60, what="the hang")
    signalled = time.monotonic()
    running.process.send_signal(signal.SIGTERM)
    code = running.wait(timeout=GRACE_S + MARGIN_S + 30)
    return code, time.monotonic() - signalled


def assert_abandoned_and_replayed(
    kafka: KafkaBroker, running: Running, code: int, took: float, name: str, topic: str, tmp: Path
) -> None:
    assert code == 0, running.stderr[-3000:]
    assert took <= GRACE_S + MARGIN_S + SLACK_S, f"exited {took:.1f}s after SIGTERM"
    assert running.count("batch in flight abandoned") == 1, running.stderr[-3000:]
    assert "Traceback" not in running.stderr and "CancelledError" not in running.stderr
    assert committed(kafka, name, topic) is None, "nothing committed for the abandoned batch"
    assert set(read_lmdb(tmp / "kv")) <= {f"k{n}".encode() for n in range(5)}

    env = hang_env(kafka, name, topic, tmp)  # no hang: the next run replays the batch
    resumed = run_connector("run", "--until-caught-up", env=env, timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert read_lmdb(tmp / "kv") == everything()
    assert committed(kafka, name, topic) == COUNT


@pytest.mark.parametrize("how", ["busy", "sleep"])
def test_sigterm_stops_a_hung_transform_within_the_grace_period(
    kafka: KafkaBroker, unique: str, tmp_path: Path, how: str
) -> None:
    name = f"hung-{how}-{unique}"
    topic = loaded_topic(kafka, name)
    running = Running(hang_env(kafka, name, topic, tmp_path, HANG_TRANSFORM=how))
    code, took = stop_when_hung(running, tmp_path)
    assert running.count("stuck in transform") == 1, running.stderr[-3000:]
    assert_abandoned_and_replayed(kafka, running, code, took, name, topic, tmp_path)


def test_sigterm_while_a_write_hangs_exits_0_without_a_traceback(
    kafka: KafkaBroker, unique: str, tmp_path: Path
) -> None:
    name = f"hung-write-{unique}"
    topic = loaded_topic(kafka, name)
    env = hang_env(kafka, name, topic, tmp_path, WRITER="hang_kv", HANG_WRITE="1")
    running = Running(env)
    code, took = stop_when_hung(running, tmp_path)
    assert "(in write for" in running.stderr, running.stderr[-3000:]
    assert_abandoned_and_replayed(kafka, running, code, took, name, topic, tmp_path)


# -- a dependency down at start ----------------------------------------------------------------


def redis_env(kafka: KafkaBroker, name: str, topic: str, port: int, **extra: str) -> dict[str, str]:
    return connector_env(
        CONNECTOR_NAME=name,
        TOPICS=topic,
        TOPIC_SCHEMAS=f"{topic}=bytes",
        TRANSFORMS="",
        KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap,
        WRITER="kv",
        KV_URL=f"redis://127.0.0.1:{port}/0",
        RETRY_INITIAL_MS="100",
        RETRY_MAX_MS="500",
        PYTHONPATH=str(ROOT),
        **extra,
    )


def test_redis_down_at_start_is_waited_for_then_the_connector_catches_up(
    kafka: KafkaBroker, unique: str
) -> None:
    name = f"late-redis-{unique}"
    topic = loaded_topic(kafka, name)
    port = free_port()
    running = Running(
        redis_env(kafka, name, topic, port, RETRY_MAX_ATTEMPTS="0"), "--until-caught-up"
    )
    redis = RedisServer(port=port)
    try:
        wait_for(
            lambda: running.count("writer.start failed (attempt 3)"),
            timeout=60,
            what="three failed starts",
        )
        assert running.process.poll() is None, running.stderr[-3000:]
        assert committed(kafka, name, topic) is None
        redis.start()
        code = running.wait(timeout=120)
        assert code == 0, running.stderr[-3000:]
        view = RedisView(KVSettings(url=redis.url))  # type: ignore[call-arg]
        try:
            assert dict(view.items()) == everything()
        finally:
            view.close()
    finally:
        running.close()
        redis.close()
    assert committed(kafka, name, topic) == COUNT
    assert "Traceback" not in running.stderr


def test_redis_down_at_start_stops_after_retry_max_attempts(
    kafka: KafkaBroker, unique: str
) -> None:
    name = f"no-redis-{unique}"
    topic = loaded_topic(kafka, name)
    env = redis_env(kafka, name, topic, free_port(), RETRY_MAX_ATTEMPTS="3")
    done = run_connector("run", "--until-caught-up", env=env, timeout=60)
    assert done.returncode == 1, done.stderr[-3000:]
    assert done.stderr.count("writer.start failed (attempt") == 2, done.stderr[-3000:]
    fatal = [line for line in done.stderr.splitlines() if line.startswith("fatal:")]
    assert len(fatal) == 1 and "writer.start still failing after 3 attempts" in fatal[0], fatal
    assert committed(kafka, name, topic) is None


def test_sigterm_while_waiting_for_redis_at_start_exits_0(kafka: KafkaBroker, unique: str) -> None:
    name = f"wait-redis-{unique}"
    topic = loaded_topic(kafka, name)
    running = Running(redis_env(kafka, name, topic, free_port(), RETRY_MAX_ATTEMPTS="0"))
    wait_for(lambda: running.count("writer.start failed"), timeout=60, what="a failed start")
    signalled = time.monotonic()
    running.process.send_signal(signal.SIGTERM)
    code = running.wait(timeout=30)
    assert code == 0, running.stderr[-3000:]
    assert time.monotonic() - signalled < 5.0
    assert "Traceback" not in running.stderr
    assert committed(kafka, name, topic) is None


def test_broker_down_at_start_is_retried_with_backoff(unique: str, tmp_path: Path) -> None:
    """Nothing listens at KAFKA_BOOTSTRAP_SERVERS: the reader's start is retried (and a
    SIGTERM meanwhile exits 0), RETRY_MAX_ATTEMPTS ends it with one fatal line."""
    env = connector_env(
        CONNECTOR_NAME=f"no-broker-{unique}",
        TOPICS="t",
        TOPIC_SCHEMAS="t=bytes",
        KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}",
        KV_URL=f"lmdb:{tmp_path / 'kv'}",
        RETRY_INITIAL_MS="100",
        RETRY_MAX_MS="300",
        RETRY_MAX_ATTEMPTS="3",
        PYTHONPATH=str(ROOT),
    )
    done = run_connector("run", env=env, timeout=120)
    assert done.returncode == 1, done.stderr[-3000:]
    # The first to reach the broker at start: the dead-letter producer (which checks
    # DLQ_TOPIC), then the reader.
    retried = re.findall(r"(dead_letters|reader)\.start failed \(attempt (\d)\)", done.stderr)
    assert [attempt for _, attempt in retried] == ["1", "2"], done.stderr[-3000:]
    fatal = [line for line in done.stderr.splitlines() if line.startswith("fatal:")]
    assert len(fatal) == 1 and ".start still failing after 3 attempts" in fatal[0], fatal

    env["RETRY_MAX_ATTEMPTS"] = "0"
    running = Running(env)
    wait_for(lambda: running.count(".start failed"), timeout=60, what="a failed start")
    running.process.send_signal(signal.SIGTERM)
    assert running.wait(timeout=30) == 0, running.stderr[-3000:]
    assert "Traceback" not in running.stderr
