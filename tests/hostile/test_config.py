"""Hostile configuration: values that used to pass `connector check` and then failed at run
time (a retry loop, a traceback, an exit code of 0, a hang, memory exhausted), printed a
secret, or forged an output line.

Each is run as `connector check` and as `connector run` in a subprocess. Both must exit 2
with exactly one line, `config error: VARIABLE=...`, and `run` must not have contacted the
broker: its address is a listening socket that counts connections.
"""

from __future__ import annotations

import os
import resource
import secrets
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import connector_command, connector_env

TIMEOUT_S = 30.0
MEMORY_LIMIT = 2 * 1024**3  # address space of the child: a regression fails, not the machine
SECRET = f"pw-{secrets.token_hex(8)}"  # plain characters: no escaping can hide it


@dataclass(frozen=True)
class Case:
    name: str
    env: dict[str, str]
    variable: str


@pytest.fixture(scope="module")
def listener() -> Iterator[socket.socket]:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.setblocking(False)
    try:
        yield server
    finally:
        server.close()


def accepted(server: socket.socket) -> int:
    count = 0
    while True:
        try:
            conn, _ = server.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A FIFO, a regular file, and modules that exit or raise at import."""
    root = tmp_path_factory.mktemp("hostile-config")
    os.mkfifo(root / "descriptors.fifo")
    (root / "store-file").write_bytes(b"not a store")
    (root / "exits_at_import.py").write_text("import sys\nsys.exit(0)\n")
    (root / "forges_at_import.py").write_text(
        "raise RuntimeError('broken\\nfatal: FORGED\\r\\nfatal: FORGED again')\n"
    )
    return root


def cases(root: Path) -> list[Case]:
    return [
        Case("topic pattern", {"TOPICS": "t.*", "TOPIC_SCHEMAS": "t.*=bytes"}, "TOPICS"),
        Case("topic with a space", {"TOPICS": "a b", "TOPIC_SCHEMAS": "a b=bytes"}, "TOPICS"),
        Case("topic of 100000 characters", {"TOPICS": "t" * 100_000}, "TOPICS"),
        Case("topic forging a line", {"TOPICS": "t1\nfatal: FORGED"}, "TOPICS"),
        Case("DLQ_TOPIC '..'", {"DLQ_TOPIC": ".."}, "DLQ_TOPIC"),
        Case(
            "bootstrap port 99999",
            {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:99999"},
            "KAFKA_BOOTSTRAP_SERVERS",
        ),
        Case("metrics host not a host", {"METRICS_HOST": "not a host"}, "METRICS_HOST"),
        Case(
            "retry initial over max",
            {"RETRY_INITIAL_MS": "10000", "RETRY_MAX_MS": "1"},
            "RETRY_INITIAL_MS",
        ),
        Case(
            "module calling sys.exit(0)",
            {"TRANSFORM_MODULES": "exits_at_import", "PYTHONPATH": str(root)},
            "TRANSFORM_MODULES",
        ),
        Case(
            "module raising a line break",
            {"TRANSFORM_MODULES": "forges_at_import", "PYTHONPATH": str(root)},
            "TRANSFORM_MODULES",
        ),
        Case(
            "descriptor set /dev/zero",
            {"PROTO_DESCRIPTOR_SET": "/dev/zero"},
            "PROTO_DESCRIPTOR_SET",
        ),
        Case(
            "descriptor set a FIFO",
            {"PROTO_DESCRIPTOR_SET": str(root / "descriptors.fifo")},
            "PROTO_DESCRIPTOR_SET",
        ),
        Case("lmdb store a file", {"KV_URL": f"lmdb:{root / 'store-file'}"}, "KV_URL"),
        Case(
            "redis password with '/', '#' and '?'",
            {"KV_URL": f"redis://:{SECRET}/#?x@127.0.0.1:6379/0"},
            "KV_URL",
        ),
        Case(
            "http password with '/'",
            {"WRITER": "http", "HTTP_URL": f"https://svc:{SECRET}/x@127.0.0.1:8443/in"},
            "HTTP_URL",
        ),
    ]


CASE_NAMES = [case.name for case in cases(Path("/"))]


def limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            connector_command(command),
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
            preexec_fn=limit_memory,  # noqa: PLW1509 - only setrlimit, before exec
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"`connector {command}` still running after {TIMEOUT_S}s") from exc


@pytest.mark.parametrize("command", ["check", "run"])
@pytest.mark.parametrize("index", range(len(CASE_NAMES)), ids=CASE_NAMES)
def test_refused_in_one_line_naming_the_variable(
    command: str, index: int, files: Path, listener: socket.socket
) -> None:
    case = cases(files)[index]
    store = files / f"kv-{command}-{index}"
    base = {
        "CONNECTOR_NAME": "hostile-config",
        "TOPICS": "t1",
        "TOPIC_SCHEMAS": "t1=bytes",
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{listener.getsockname()[1]}",
        "KV_URL": f"lmdb:{store}",
    }
    env = connector_env(**{**base, **case.env})
    done = run(command, env)

    lines = done.stderr.splitlines()
    assert done.returncode == 2, done.stderr[-3000:]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"config error: {case.variable}="), lines[0][:500]
    assert len(lines[0]) < 2000, "an echoed value is cut, not printed whole"
    assert SECRET not in done.stdout + done.stderr
    assert done.stdout == ""
    assert accepted(listener) == 0, "nothing may be contacted before the configuration is valid"
    assert not store.exists(), "nothing may be created before the configuration is valid"
    assert (files / "store-file").read_bytes() == b"not a store"
