"""Kafka Connect standalone with the FileStreamSink connector: the JVM peer (scenario J).

The jars come from Maven Central exactly as the broker's do (`harness.kafka.fetch_jars`),
into a folder of their own: `connect-runtime` and `connect-file` of the same version, with
the Log4j 2 binding the harness adds for the broker.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from bench.latency import committed_total
from harness.kafka import (
    _LOG4J_VERSION,
    _MARKER,
    DEFAULT_VERSION,
    KafkaHarnessError,
    _cache_root,
    copy_dependencies,
    fetch_once,
    maven_pom,
)

CONNECT_MAIN = "org.apache.kafka.connect.cli.ConnectStandalone"
FILE_SINK = "org.apache.kafka.connect.file.FileStreamSinkConnector"
BYTE_ARRAY = "org.apache.kafka.connect.converters.ByteArrayConverter"
# Maven Central serves no connect-file 4.4.0 (checked 2026-11-27), and connect-file 4.3.1 cannot
# run on the 4.4 runtime (it calls org.apache.kafka.common.utils.AppInfoParser, which 4.4's
# kafka-clients no longer has). So when the broker's version has no connect-file, the whole of
# Kafka Connect (runtime, file connector, clients) is taken at the newest release that has
# one; a 4.3 client talks to a 4.4 broker as any older client does.
CONNECT_FALLBACKS = ("4.3.1",)
# connect-standalone.sh's own default heap.
CONNECT_HEAP = ("-Xms256M", "-Xmx2G")


def _connect_dir(version: str) -> Path:
    return _cache_root() / f"kafka-connect-{version}"


def _connect_pom(version: str) -> str:
    return maven_pom(
        "kafka-connect-jars",
        [
            ("org.apache.kafka", "connect-runtime", version),
            ("org.apache.kafka", "connect-file", version),
            ("org.apache.logging.log4j", "log4j-core", _LOG4J_VERSION),
            ("org.apache.logging.log4j", "log4j-slf4j-impl", _LOG4J_VERSION),
        ],
    )


def fetch_connect_jars(version: str = DEFAULT_VERSION, *, timeout: float = 900.0) -> Path:
    """The folder holding Kafka Connect's runtime jars, fetched once with Maven: the
    broker's version, or the first of CONNECT_FALLBACKS that has a file connector."""

    def fill(work: Path) -> str:
        failures: list[str] = []
        for connect_version in (version, *CONNECT_FALLBACKS):
            attempt = work / connect_version
            attempt.mkdir()
            staged = attempt / "libs"
            error = copy_dependencies(_connect_pom(connect_version), attempt, staged, timeout)
            if error is None and any(staged.glob("connect-file-*.jar")):
                staged.rename(work / "libs")
                return connect_version
            failures.append(f"Kafka Connect {connect_version}: {error or 'no jar'}")
        raise KafkaHarnessError("cannot fetch Kafka Connect:\n" + "\n".join(failures))

    return fetch_once(_connect_dir(version), fill)


def connect_version(version: str = DEFAULT_VERSION) -> str:
    """Which Kafka Connect release the cached folder holds (see CONNECT_FALLBACKS)."""
    fetch_connect_jars(version)
    return (_connect_dir(version) / _MARKER).read_text(encoding="utf-8").strip()


def _properties(path: Path, values: dict[str, str]) -> Path:
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()), encoding="utf-8")
    return path


def run_connect(
    bootstrap: str,
    topic: str,
    partitions: int,
    expect: int,
    workdir: Path,
    *,
    version: str = DEFAULT_VERSION,
    timeout: float = 1800.0,
) -> dict[str, float]:
    """One Kafka Connect standalone run draining `topic` into a file; timed to zero lag.

    Start: the first byte in the sink file. End: the moment the file reached its final size,
    confirmed by the group's committed offsets covering every record (zero lag). CPU: the
    JVM's utime+stime between those two moments, from /proc. Peak RSS: the JVM's VmHWM
    (bench/procs.py).
    """
    from bench.procs import Child, proc_cpu_s
    from harness.kafka import _tools_log_config
    from harness.ports import free_port

    libs = fetch_connect_jars(version)
    name = f"bench-j-{uuid.uuid4().hex[:8]}"
    run_dir = workdir / name
    run_dir.mkdir(parents=True)
    sink = run_dir / "sink.txt"
    worker = _properties(
        run_dir / "worker.properties",
        {
            "bootstrap.servers": bootstrap,
            "key.converter": BYTE_ARRAY,
            "value.converter": BYTE_ARRAY,
            "offset.storage.file.filename": str(run_dir / "connect.offsets"),
            # Commit (and flush the sink) every 100 ms, so "zero lag" is seen promptly.
            "offset.flush.interval.ms": "100",
            "listeners": f"http://127.0.0.1:{free_port()}",
        },
    )
    connector = _properties(
        run_dir / "connector.properties",
        {
            "name": name,
            "connector.class": FILE_SINK,
            "tasks.max": str(partitions),
            "topics": topic,
            "file": str(sink),
        },
    )
    cmd = [
        "java", *CONNECT_HEAP,
        f"-Dlog4j2.configurationFile={_tools_log_config(version)}",
        "-cp", f"{libs}/*", CONNECT_MAIN, str(worker), str(connector),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "JAVA_HOME")}
    child = Child(cmd, env, run_dir, "connect")
    group = f"connect-{name}"
    first: tuple[float, float] | None = None
    samples: list[tuple[float, int, float]] = []  # (time, file size, cpu)
    deadline = time.monotonic() + timeout
    next_lag_check = 0.0
    try:
        while True:
            if not child.alive():
                done = child.wait(5)
                raise RuntimeError(
                    f"Kafka Connect exited {done.returncode}:\n{done.stderr[-4000:]}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"Kafka Connect did not reach zero lag in {timeout:.0f} s")
            size = sink.stat().st_size if sink.exists() else 0
            now = time.perf_counter()
            cpu = proc_cpu_s(child.pid) or 0.0
            if size and first is None:
                first = (now, cpu)
            if first is not None:
                samples.append((now, size, cpu))
                if now >= next_lag_check:
                    next_lag_check = now + 0.25
                    if committed_total(bootstrap, group, topic, partitions) >= expect:
                        break
            time.sleep(0.02)
    finally:
        finished = child.stop(60)
    assert first is not None
    final = samples[-1][1]
    end = next(s for s in samples if s[1] >= final)
    lines = _count_lines(sink)
    if lines != expect:
        raise RuntimeError(f"Kafka Connect wrote {lines} lines, expected {expect}")
    sink.unlink(missing_ok=True)
    return {
        "records": float(expect),
        "elapsed_s": end[0] - first[0],
        "cpu_s": end[2] - first[1],
        "rss_mb": finished.max_rss_mb,
        "process_cpu_s": finished.cpu_s,
        "process_wall_s": finished.wall_s,
    }


def _count_lines(path: Path) -> int:
    count = 0
    with path.open("rb") as handle:
        while block := handle.read(16 << 20):
            count += block.count(b"\n")
    return count
