"""Hostile input met by the observability side, each against `connector run` on a real broker:

- a transform that hangs in the first batch: `/healthz` must say so, naming the stage;
- METRICS_PORT in use, METRICS_HOST not an address here or not a host: one fatal line;
- a newline in an exception or log message with LOG_FORMAT=text: it must not forge a line.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.kafka import KafkaBroker, consumer_group_offsets, create_topic
from harness.kcat import produce
from harness.ports import free_port
from tests.conftest import ROOT, connector_command, connector_env, run_connector
from tests.integration.test_failures import consume_all
from tests.integration.test_health import http_get
from tests.integration.test_runner_kafka import read_lmdb
from tests.waiting import wait_for

FORGE_MODULE = """
from connectors import transform


@transform("forge")
def forge(message, ctx):
    if message.startswith(b"bad"):
        raise ValueError("bad record\\nfatal: FORGED\\r\\n2030-01-01 ERROR connectors: FORGED")
    return message
"""


def raw_env(kafka: KafkaBroker, name: str, topic: str, tmp: Path, **extra: str) -> dict[str, str]:
    return connector_env(
        CONNECTOR_NAME=name,
        TOPICS=topic,
        TOPIC_SCHEMAS=f"{topic}=bytes",
        KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap,
        KV_URL=f"lmdb:{tmp / 'kv'}",
        KV_SYNC="false",
        BATCH_MAX_MESSAGES="100",
        BATCH_MAX_WAIT_MS="100",
        PYTHONPATH=str(ROOT),
        DLQ_CREATE="true",  # the test brokers create no topic by themselves
        **extra,
    )


def committed(kafka: KafkaBroker, group: str) -> dict[tuple[str, int], int | None]:
    return {tp: c for tp, (c, _end) in consumer_group_offsets(kafka.bootstrap, group).items()}


# -- a transform hung in the first batch -----------------------------------------------------


class Background:
    """`connector run` as a subprocess whose stderr is collected on a thread."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            connector_command("run"), env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True
        )
        assert self.process.stderr is not None
        stream = self.process.stderr
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(iter(stream.readline, "")))
        self._reader.start()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._reader.join(10)
        assert self.process.stderr is not None
        self.process.stderr.close()


def healthz(port: int) -> tuple[int, dict[str, Any]] | None:
    try:
        status, body = http_get(f"http://127.0.0.1:{port}/healthz")
    except OSError:
        return None
    return status, body


def test_a_transform_hung_in_the_first_batch_makes_healthz_503_naming_the_stage(
    kafka: KafkaBroker, unique: str, tmp_path: Path
) -> None:
    topic, name = f"hung-{unique}", f"hung-{unique}"
    create_topic(kafka.bootstrap, topic, partitions=1)
    produce(kafka.bootstrap, topic, [(0, f"k{n}".encode(), b"v") for n in range(10)])
    gate = tmp_path / "gate"
    gate.mkdir()
    port = free_port()
    env = raw_env(
        kafka,
        name,
        topic,
        tmp_path,
        TRANSFORM_MODULES="tests.fixtures.gate",
        TRANSFORMS="gate",
        GATE_DIR=str(gate),
        GATE_PARTITION="0",
        GATE_OFFSET="0",
        METRICS_PORT=str(port),
        METRICS_HOST="127.0.0.1",
        HEALTH_STUCK_AFTER_S="2",
        HEALTH_TIMEOUT_S="1",
        HEALTH_SAMPLE_INTERVAL_S="0.5",
    )
    running = Background(env)
    try:
        wait_for(lambda: (gate / "reached").exists(), timeout=60, what="the transform to hang")

        def wedged() -> tuple[int, dict[str, Any]] | None:
            found = healthz(port)
            return found if found is not None and found[0] == 503 else None

        status, body = wait_for(wedged, timeout=30, what="/healthz 503")
        assert body["status"] == "unhealthy" and body["wedged"]["stage"] == "transform", body
        assert body["wedged"]["for_s"] >= 2.0, body
        nothing = committed(kafka, name)
        assert set(nothing.values()) <= {None}, f"committed past the hung batch: {nothing}"

        (gate / "open").touch()

        def healthy() -> dict[str, Any] | None:
            found = healthz(port)
            if found is None or found[0] != 200:
                return None
            reasons = [p["reason"] for p in found[1]["partitions"]]
            return found[1] if reasons == ["idle"] else None

        body = wait_for(healthy, timeout=60, what="/healthz 200 once the transform returned")
        assert body["wedged"] is None and body["partitions"][0]["committed"] == 10
    finally:
        (gate / "open").touch()
        running.stop()
    assert running.process.returncode == 0, "".join(running.lines[-30:])
    assert len(read_lmdb(tmp_path / "kv")) == 10
    assert committed(kafka, name) == {(topic, 0): 10}
    warned = [line for line in running.lines if "transform has been running for" in line]
    assert len(warned) == 1 and "HEALTH_STUCK_AFTER_S" in warned[0], running.lines


# -- the metrics server cannot listen --------------------------------------------------------


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port something else already listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield int(held.getsockname()[1])


@pytest.mark.parametrize(
    ("host", "variable", "exit_code", "why"),
    [
        ("127.0.0.1", "METRICS_PORT", 1, "fatal: METRICS_PORT='{port}': cannot listen on "
         "127.0.0.1:{port}: the port is already in use"),
        ("203.0.113.7", "METRICS_HOST", 1, "fatal: METRICS_HOST='203.0.113.7': cannot listen "
         "on 203.0.113.7:{port}: not an address of this machine"),
        ("no-such-host.invalid", "METRICS_HOST", 1, "fatal: METRICS_HOST='no-such-host.invalid'"
         ": cannot listen on no-such-host.invalid:{port}: not a host name or address this "
         "machine can resolve"),
        ("not a host", "METRICS_HOST", 2, "config error: METRICS_HOST='not a host'"),
    ],
)  # fmt: skip
def test_a_metrics_server_that_cannot_listen_is_one_line_naming_the_variable(
    kafka: KafkaBroker,
    unique: str,
    tmp_path: Path,
    taken_port: int,
    host: str,
    variable: str,
    exit_code: int,
    why: str,
) -> None:
    """Known offline (not a host name at all): a config error; known only when binding
    (port taken, an address of another machine, a name that does not resolve): fatal."""
    topic, name = f"bind-{unique}", f"bind-{unique}"
    create_topic(kafka.bootstrap, topic, partitions=1)
    produce(kafka.bootstrap, topic, [(0, b"k", b"v")])
    env = raw_env(kafka, name, topic, tmp_path, METRICS_PORT=str(taken_port), METRICS_HOST=host)
    done = run_connector("run", env=env, timeout=60)

    assert done.returncode == exit_code, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    told = [line for line in done.stderr.splitlines() if variable in line]
    assert len(told) == 1 and told[0].startswith(why.format(port=taken_port)), done.stderr
    assert committed(kafka, name) == {}, "nothing consumed before the server listens"


# -- line breaks in what is logged -----------------------------------------------------------


@pytest.mark.parametrize("form", ["text", "json"])
def test_a_newline_in_an_exception_message_does_not_forge_a_log_line(
    kafka: KafkaBroker, unique: str, tmp_path: Path, form: str
) -> None:
    topic, name = f"forge-{unique}", f"forge-{unique}"
    create_topic(kafka.bootstrap, topic, partitions=1)
    create_topic(kafka.bootstrap, f"{name}.dlq", partitions=1)
    rows = [(0, f"k{n}".encode(), b"bad" if n == 3 else b"good") for n in range(10)]
    produce(kafka.bootstrap, topic, rows)
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "forging.py").write_text(FORGE_MODULE)
    env = raw_env(kafka, name, topic, tmp_path, TRANSFORM_MODULES="forging", TRANSFORMS="forge")
    env.update(PYTHONPATH=f"{modules}:{ROOT}", LOG_FORMAT=form)
    done = run_connector("run", "--until-caught-up", env=env)

    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert not [line for line in lines if line.startswith(("fatal:", "2030-"))], done.stderr
    told = [line for line in lines if "dead-lettering" in line]
    assert len(told) == 1, done.stderr
    if form == "text":
        assert "bad record\\nfatal: FORGED\\r\\n2030-01-01" in told[0], told
    else:
        for line in lines:
            if line.startswith("{"):
                json.loads(line)
        assert "bad record\nfatal: FORGED" in json.loads(told[0])["message"]
    stored = read_lmdb(tmp_path / "kv")
    assert sorted(stored) == sorted(f"k{n}".encode() for n in range(10) if n != 3)
    (letter,) = consume_all(kafka.bootstrap, f"{name}.dlq", 1)
    assert letter.key == b"k3"
    assert committed(kafka, name) == {(topic, 0): 10}
