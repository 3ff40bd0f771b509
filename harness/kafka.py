"""A real Apache Kafka broker for tests, run from Maven Central jars without Docker.

Tests of the connector must see what operators see: a KRaft broker of the version we
target, and Kafka's own tools reading committed offsets. Everything here runs on
loopback ports from one cached folder of jars, so a second run needs no network.

Command line::

    python -m harness.kafka fetch                      # prints the libs folder
    python -m harness.kafka start --dir DIR [--port N] # detached; prints the bootstrap
    python -m harness.kafka stop --dir DIR
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import contextlib
import fcntl
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast
from xml.sax.saxutils import quoteattr

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from harness.ports import free_port
from harness.process import ServerProcess, tail

__all__ = [
    "BROKER_MAIN",
    "CONSUMER_GROUP_COMMAND",
    "DEFAULT_VERSION",
    "STORAGE_TOOL",
    "BrokerStartError",
    "KafkaBroker",
    "KafkaHarnessError",
    "KafkaToolError",
    "consumer_group_offsets",
    "create_topic",
    "create_topic_async",
    "fetch_jars",
    "list_topics_async",
    "run_sync",
    "run_tool",
]

DEFAULT_VERSION = "4.4.0"

# Main classes, checked against the 4.4.0 jars: Kafka 4.x kept the broker and the storage
# tool in the Scala jar (kafka_2.13) and moved the group command to kafka-tools.
BROKER_MAIN = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"
CONSUMER_GROUP_COMMAND = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"

# Kafka's poms bring log4j-core and slf4j-api 1.7.36 but no binding between them, so
# without this jar the broker would log nothing at all. The slf4j 1.x binding is
# log4j-slf4j-impl (log4j-slf4j2-impl would bind slf4j 2.x, which is not on the path).
_LOG4J_VERSION = "2.25.5"
_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
_MARKER = ".fetched"
_STOP_TIMEOUT = 30.0

T = TypeVar("T")


class KafkaHarnessError(RuntimeError):
    """Something in the Kafka harness failed; the message carries the evidence."""


class BrokerStartError(KafkaHarnessError):
    """The broker did not answer in time; the message ends with its log."""


class KafkaToolError(KafkaHarnessError):
    """A Kafka command-line tool failed; the message holds its output."""


# --------------------------------------------------------------------------- asyncio


def run_sync(awaitable_factory: Callable[[], Awaitable[T]], timeout: float | None = None) -> T:
    """Run a coroutine to completion from synchronous code.

    Sync tests and scripts have no loop, so ``asyncio.run`` is enough; when a loop is
    already running (an async test calling a sync helper) the coroutine gets a loop of its
    own in a worker thread, which blocks the caller but cannot deadlock on it.
    """

    async def runner() -> T:
        return await asyncio.wait_for(awaitable_factory(), timeout)

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(runner())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, runner()).result()


# ---------------------------------------------------------------------------- jars


def _cache_root() -> Path:
    return Path(os.environ.get("CONNECTORS_CACHE") or "~/.cache/connectors").expanduser()


def _version_dir(version: str) -> Path:
    return _cache_root() / f"kafka-{version}"


def _libs_dir(version: str) -> Path:
    return _version_dir(version) / "libs"


def _pom(version: str) -> str:
    return maven_pom(
        "kafka-jars",
        [
            ("org.apache.kafka", "kafka_2.13", version),
            ("org.apache.kafka", "kafka-tools", version),
            ("org.apache.logging.log4j", "log4j-core", _LOG4J_VERSION),
            ("org.apache.logging.log4j", "log4j-slf4j-impl", _LOG4J_VERSION),
        ],
    )


def maven_pom(artifact: str, deps: Sequence[tuple[str, str, str]]) -> str:
    """A throwaway `pom`-packaged project depending on `deps` (group, artifact, version)."""
    body = "\n".join(
        f"    <dependency><groupId>{g}</groupId><artifactId>{a}</artifactId>"
        f"<version>{v}</version></dependency>"
        for g, a, v in deps
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.harness</groupId>
  <artifactId>{artifact}</artifactId>
  <version>0</version>
  <packaging>pom</packaging>
  <dependencies>
{body}
  </dependencies>
</project>
"""


def copy_dependencies(pom: str, work: Path, out_dir: Path, timeout: float) -> str | None:
    """Copy every runtime jar `pom` depends on into `out_dir` with Maven; the failure's
    text, or None when it worked (callers raise their own error type)."""
    (work / "pom.xml").write_text(pom, encoding="utf-8")
    cmd = [
        "mvn", "-q", "-B", "-Dstyle.color=never", "-f", str(work / "pom.xml"),
        f"{_DEPENDENCY_PLUGIN}:copy-dependencies",
        f"-DoutputDirectory={out_dir}", "-DincludeScope=runtime",
    ]  # fmt: skip
    try:
        done = subprocess.run(
            cmd, cwd=work, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return f"mvn did not finish in {timeout:.0f} s: {cmd}"
    if done.returncode != 0:
        return f"mvn failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise fetches so parallel test workers do not fill one folder twice."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run_maven(version: str, out_dir: Path, work: Path, timeout: float) -> None:
    failure = copy_dependencies(_pom(version), work, out_dir, timeout)
    if failure is not None:
        raise KafkaHarnessError(f"fetching Kafka {version}: {failure}")


def fetch_once(home: Path, fill: Callable[[Path], str]) -> Path:
    """`home/libs`, filled on first use by `fill(work)`, which puts the jars in
    `work/libs` (raising when it cannot) and returns the text of the marker.

    The marker is written only after the folder was moved into place, so an interrupted
    fetch is redone and a finished one never touches the network again; a lock keeps
    parallel test workers from filling one folder twice.
    """
    libs, marker = home / "libs", home / _MARKER
    if marker.exists():
        return libs
    with _locked(home / ".lock"):
        if marker.exists():
            return libs
        for stale in home.glob("fetch-*"):
            shutil.rmtree(stale, ignore_errors=True)  # left by a killed fetch
        with tempfile.TemporaryDirectory(dir=home, prefix="fetch-") as tmp:
            work = Path(tmp)
            text = fill(work)
            shutil.rmtree(libs, ignore_errors=True)
            (work / "libs").rename(libs)
        marker.write_text(f"{text}\n", encoding="utf-8")
    return libs


def fetch_jars(version: str = DEFAULT_VERSION, *, timeout: float = 900.0) -> Path:
    """Return the folder holding every runtime jar of the broker and its tools."""

    def fill(work: Path) -> str:
        staged = work / "libs"
        _run_maven(version, staged, work, timeout)
        if not any(staged.glob(f"kafka_2.13-{version}.jar")):
            raise KafkaHarnessError(f"mvn ran but {staged} has no kafka_2.13 jar")
        return f"kafka {version}"

    return fetch_once(_version_dir(version), fill)


def _tools_log_config(version: str) -> Path:
    """Send tool logging to stderr at WARN, so stdout stays parseable."""
    path = _version_dir(version) / "log4j2-tools.xml"
    if not path.exists():
        path.write_text(
            """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <Console name="stderr" target="SYSTEM_ERR">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Root level="WARN"><AppenderRef ref="stderr"/></Root>
  </Loggers>
</Configuration>
""",
            encoding="utf-8",
        )
    return path


def _java_command(version: str, main_class: str, *args: str, heap: str = "256m") -> list[str]:
    libs = fetch_jars(version)
    return ["java", f"-Xmx{heap}", "-cp", f"{libs}/*", main_class, *args]


# --------------------------------------------------------------------------- tools


def run_tool(
    main_class: str,
    *args: str,
    version: str = DEFAULT_VERSION,
    timeout: float = 120.0,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run one of Kafka's own command-line tools from the cached jars.

    Tests read committed offsets with the same tools operators use, so a bug shared by
    the connector and a Python client cannot hide itself.
    """
    log_config = _tools_log_config(version)
    cmd = _java_command(version, main_class, *args)
    cmd.insert(1, f"-Dlog4j2.configurationFile={log_config}")
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, check=False,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise KafkaToolError(f"{main_class} did not finish in {timeout:.0f} s") from exc
    if check and done.returncode != 0:
        raise KafkaToolError(
            f"{main_class} {' '.join(args)} exited {done.returncode}:\n"
            f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        )
    return done


_NO_GROUP = re.compile(r"GroupIdNotFoundException|does not exist")


def consumer_group_offsets(
    bootstrap: str,
    group: str,
    *,
    version: str = DEFAULT_VERSION,
    timeout: float = 120.0,
) -> dict[tuple[str, int], tuple[int | None, int]]:
    """Committed offset and log-end offset per partition, as ``kafka-consumer-groups``
    reports them.

    A partition the group knows but never committed maps to ``(None, log_end)``; an
    unknown group gives an empty dict, since "nothing committed yet" is what a test
    asks.
    """
    done = run_tool(
        CONSUMER_GROUP_COMMAND,
        "--describe", "--group", group, "--bootstrap-server", bootstrap,
        version=version, timeout=timeout,
    )  # fmt: skip
    text = done.stdout
    if _NO_GROUP.search(text) or _NO_GROUP.search(done.stderr):
        return {}
    if re.search(r"^Error:", text, re.MULTILINE):
        raise KafkaToolError(f"ConsumerGroupCommand failed:\n{text}\n{done.stderr[-4000:]}")
    return _parse_group_table(text, group)


def _columns(header: str) -> list[tuple[str, int, int]]:
    """Column names with their character spans: the tool pads every column to its
    widest cell, so spans are exact even if a group id contains spaces."""
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    names = header.split()
    ends = [*starts[1:], 1 << 30]
    return list(zip(names, starts, ends, strict=True))


def _parse_group_table(text: str, group: str) -> dict[tuple[str, int], tuple[int | None, int]]:
    result: dict[tuple[str, int], tuple[int | None, int]] = {}
    columns: list[tuple[str, int, int]] | None = None
    for line in text.splitlines():
        if line.startswith("GROUP") and "PARTITION" in line:
            columns = _columns(line)
            continue
        if columns is None or not line.strip():
            continue
        cells = {name: line[start:end].strip() for name, start, end in columns}
        if cells.get("GROUP") != group:
            continue
        current, log_end = cells["CURRENT-OFFSET"], cells["LOG-END-OFFSET"]
        if not log_end.lstrip("-").isdigit():
            raise KafkaToolError(f"no log-end offset in line {line!r}:\n{text}")
        committed = None if current == "-" else int(current)
        result[(cells["TOPIC"], int(cells["PARTITION"]))] = (committed, int(log_end))
    if columns is None and text.strip() and "has no active members" not in text:
        raise KafkaToolError(f"unexpected ConsumerGroupCommand output:\n{text}")
    return result


# ---------------------------------------------------------------------- admin client


async def list_topics_async(bootstrap: str, *, request_timeout: float = 5.0) -> set[str]:
    """List topics through a fresh admin client: the broker's readiness probe."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(request_timeout * 1000)
    )
    try:
        await admin.start()
        topics = await admin.list_topics()
        return {str(name) for name in topics}
    finally:
        await admin.close()


async def group_coordinator_ready_async(bootstrap: str, *, request_timeout: float = 5.0) -> None:
    """Raise unless a group coordinator answers. The first lookup makes the broker create
    `__consumer_offsets`; waiting for it here keeps consumers' first join quiet and fast."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(request_timeout * 1000)
    )
    try:
        await admin.start()
        await admin.find_coordinator("harness-warmup")
    finally:
        await admin.close()


async def _leaders_ready(admin: Any, name: str, partitions: int) -> bool:
    described = cast(list[dict[str, Any]], await admin.describe_topics([name]))
    for topic in described:
        if topic["topic"] != name or topic["error_code"] != 0:
            return False
        parts = topic["partitions"]
        return len(parts) >= partitions and all(
            p["error_code"] == 0 and p["leader"] >= 0 for p in parts
        )
    return False


async def create_topic_async(
    bootstrap: str,
    name: str,
    partitions: int = 1,
    *,
    replication_factor: int = 1,
    config: Mapping[str, str] | None = None,
    exist_ok: bool = False,
    wait_s: float = 30.0,
) -> None:
    """Create a topic and wait (up to ``wait_s``) until every partition has a leader.

    Returning only once leaders exist spares callers the transient "unknown partition"
    errors a producer would otherwise meet right after creation.
    """
    topic_already_exists = 36
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        await admin.start()
        new = NewTopic(name, partitions, replication_factor, topic_configs=dict(config or {}))
        response = await admin.create_topics([new], timeout_ms=int(wait_s * 1000))
        for _, code, message in response.topic_errors:
            if code != 0 and not (exist_ok and code == topic_already_exists):
                raise KafkaHarnessError(f"creating topic {name!r}: error {code}: {message}")
        deadline = time.monotonic() + wait_s
        while not await _leaders_ready(admin, name, partitions):
            if time.monotonic() > deadline:
                raise KafkaHarnessError(f"topic {name!r} has no leaders after {wait_s} s")
            await asyncio.sleep(0.05)
    finally:
        await admin.close()


def create_topic(
    bootstrap: str,
    name: str,
    partitions: int = 1,
    *,
    replication_factor: int = 1,
    config: Mapping[str, str] | None = None,
    exist_ok: bool = False,
    timeout: float = 30.0,
) -> None:
    """Synchronous :func:`create_topic_async`, for sync tests and scripts."""
    run_sync(
        lambda: create_topic_async(
            bootstrap, name, partitions, replication_factor=replication_factor,
            config=config, exist_ok=exist_ok, wait_s=timeout,
        ),
        timeout + 15.0,
    )  # fmt: skip


# -------------------------------------------------------------------------- broker


def _drop_refused(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Unable connect to")


@contextlib.contextmanager
def _quiet_refusals() -> Iterator[None]:
    """While a broker boots every probe is refused; aiokafka logs each refusal at ERROR,
    which would bury a real failure, so those records are dropped during the wait."""
    logger = logging.getLogger("aiokafka")
    logger.addFilter(_drop_refused)
    try:
        yield
    finally:
        logger.removeFilter(_drop_refused)


def _random_cluster_id() -> str:
    """Kafka's ``Uuid.randomUuid`` without a JVM start: 16 random bytes, URL-safe
    base64, never starting with '-' (which a command line would take for an option)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


_ERROR_LINE = re.compile(r"^\[[^]]+\] (ERROR|FATAL) |^Caused by: ")


def _errors(path: Path, limit: int = 20) -> str:
    try:
        content = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "(none)"
    found = dict.fromkeys(line for line in content.splitlines() if _ERROR_LINE.search(line))
    return "\n".join(list(found)[:limit]) or "(none)"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _is_kafka_process(pid: int) -> bool:
    """Guard against a recycled pid before signalling it."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return BROKER_MAIN.encode() in cmdline.split(b"\0")


class KafkaBroker(ServerProcess):
    """One KRaft node in combined broker+controller mode on loopback ports.

    Ports are chosen once, so ``stop()`` then ``start()`` brings the same broker back
    at the same address with its data: that is how tests restart Kafka under a
    connector.
    """

    name = "kafka broker"

    def __init__(
        self,
        directory: str | Path | None = None,
        *,
        port: int | None = None,
        controller_port: int | None = None,
        version: str = DEFAULT_VERSION,
        start_timeout: float = 60.0,
        heap: str = "512m",
        properties: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            None if directory is None else Path(directory),
            prefix="kafka-broker-",
            start_timeout=start_timeout,
        )
        self.port = port or free_port()
        self.controller_port = controller_port or free_port()
        self.version = version
        self.heap = heap
        self.extra_properties = dict(properties or {})

    # -- paths and configuration

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def log_path(self) -> Path:
        """WARN and above from the broker's Log4j 2."""
        return self.directory / "broker.log"

    @property
    def console_path(self) -> Path:
        """The JVM's own stdout/stderr: crashes and class-path errors land here."""
        return self.directory / "broker.out"

    def properties(self) -> dict[str, str]:
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            # As production clusters run: a topic exists because someone created it, so a
            # client that would create one by naming it (a metadata request, a produce)
            # fails here as it would there.
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            # 4.x enables share groups by default; their state topic wants 3 replicas.
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # After a SIGKILL the restarted broker cannot register again until its old
            # session expires (DuplicateBrokerRegistrationException): 4 s instead of 9 s
            # makes crash tests faster, and 8 missed heartbeats still tolerate a busy CPU.
            "broker.session.timeout.ms": "4000",
            "broker.heartbeat.interval.ms": "500",
        }
        props.update(self.extra_properties)
        return props

    def _write_config(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / "server.properties"
        lines = [f"{key}={value}" for key, value in self.properties().items()]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        (self.directory / "log4j2.xml").write_text(
            f"""<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <File name="file" fileName={quoteattr(str(self.log_path))}>
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Root level="WARN"><AppenderRef ref="file"/></Root>
  </Loggers>
</Configuration>
""",
            encoding="utf-8",
        )
        return path

    def _format_storage(self, config: Path) -> None:
        """Format once: a restarted broker keeps its cluster id and its data."""
        if (self.data_dir / "meta.properties").exists():
            return
        done = run_tool(
            STORAGE_TOOL, "format", "-t", _random_cluster_id(), "-c", str(config),
            version=self.version, timeout=60.0, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise BrokerStartError(
                f"{STORAGE_TOOL} format failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
            )

    # -- lifecycle

    def start(self, *, detach: bool = False) -> KafkaBroker:
        """Start the broker and return once an admin client lists its topics.

        ``detach=True`` leaves the broker running after this Python process exits (the
        CLI uses it); otherwise an atexit hook kills it, so a test run that forgets to
        stop it cannot leak a JVM.
        """
        if self.is_running():
            return self
        fetch_jars(self.version)
        config = self._write_config()
        self._format_storage(config)
        cmd = _java_command(self.version, BROKER_MAIN, str(config), heap=self.heap)
        cmd[1:1] = [f"-Dlog4j2.configurationFile={self.directory / 'log4j2.xml'}"]
        self._launch(cmd, output=self.console_path, detach=detach)
        return self

    def _wait_until_answering(self) -> None:
        self.wait_until_answering(self.start_timeout)

    def wait_until_answering(self, timeout: float) -> None:
        """Poll with an admin request until the broker answers, the JVM dies, or time
        runs out; an open port alone does not mean the broker serves requests."""
        with _quiet_refusals():
            self._poll_until_answering(timeout)

    def _poll_until_answering(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_error: BaseException | None = None
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise BrokerStartError(
                    f"broker exited with {self._process.returncode}\n{self.diagnostics()}"
                )
            try:
                run_sync(lambda: list_topics_async(self.bootstrap, request_timeout=2.0), 5.0)
                run_sync(
                    lambda: group_coordinator_ready_async(self.bootstrap, request_timeout=2.0), 5.0
                )
            except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
                last_error = exc
                time.sleep(0.2)
            else:
                return
        raise BrokerStartError(
            f"broker at {self.bootstrap} did not answer within {timeout:.0f} s "
            f"(last error: {last_error!r})\n{self.diagnostics()}"
        )

    def diagnostics(self, lines: int = 60) -> str:
        """Errors and their causes first (a stack trace can push them out of the tail),
        then the end of the broker log and of the JVM console."""
        return (
            f"--- errors in {self.log_path} ---\n{_errors(self.log_path)}\n"
            f"--- {self.log_path} (tail) ---\n{tail(self.log_path, lines)}\n"
            f"--- {self.console_path} (tail) ---\n{tail(self.console_path, lines)}"
        )

    def stop(self, timeout: float = _STOP_TIMEOUT) -> None:
        """SIGTERM for a clean shutdown (flushes logs, writes the clean-shutdown
        marker), then SIGKILL if it takes longer than ``timeout``."""
        super().stop(timeout)


# ----------------------------------------------------------------------------- CLI


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _answers(bootstrap: str, timeout: float) -> bool:
    try:
        with _quiet_refusals():
            run_sync(lambda: list_topics_async(bootstrap, request_timeout=timeout), timeout + 1)
    except Exception:  # noqa: BLE001 - any failure means "no"
        return False
    return True


def _running_pid(directory: Path) -> int | None:
    pid = _read_int(directory / "broker.pid")
    if pid is not None and _pid_alive(pid) and _is_kafka_process(pid):
        return pid
    return None


def _cli_start(directory: Path, port: int | None, timeout: float, version: str) -> int:
    bootstrap_file = directory / "bootstrap"
    pid = _running_pid(directory)
    if pid is not None and bootstrap_file.exists():
        bootstrap = bootstrap_file.read_text().strip()
        if _answers(bootstrap, 5.0):
            print(bootstrap)
            return 0
        raise KafkaHarnessError(f"broker pid {pid} from {directory} runs but does not answer")
    old = bootstrap_file.read_text().strip() if bootstrap_file.exists() else ""
    reuse = int(old.rsplit(":", 1)[1]) if port is None and ":" in old else None
    broker = KafkaBroker(directory, port=port or reuse, version=version, start_timeout=timeout)
    broker.start(detach=True)
    (directory / "broker.pid").write_text(f"{broker.pid}\n")
    bootstrap_file.write_text(broker.bootstrap + "\n")
    print(broker.bootstrap)
    return 0


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return True
        time.sleep(0.1)
    return not _pid_alive(pid)


def _cli_stop(directory: Path, timeout: float) -> int:
    pid = _running_pid(directory)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        if not _wait_gone(pid, timeout):
            os.kill(pid, signal.SIGKILL)
            if not _wait_gone(pid, 10.0):
                raise KafkaHarnessError(f"broker pid {pid} survived SIGKILL")
    (directory / "broker.pid").unlink(missing_ok=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.kafka",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", default=DEFAULT_VERSION, help="Kafka version")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("fetch", help="fetch the jars, print their folder")
    start = sub.add_parser("start", help="start a detached broker, print its bootstrap")
    start.add_argument("--dir", required=True, type=Path)
    start.add_argument("--port", type=int)
    start.add_argument("--timeout", type=float, default=60.0)
    stop = sub.add_parser("stop", help="stop the broker started from --dir")
    stop.add_argument("--dir", required=True, type=Path)
    stop.add_argument("--timeout", type=float, default=_STOP_TIMEOUT)
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            print(fetch_jars(args.version))
            return 0
        if args.command == "start":
            return _cli_start(args.dir.resolve(), args.port, args.timeout, args.version)
        return _cli_stop(args.dir.resolve(), args.timeout)
    except KafkaHarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
