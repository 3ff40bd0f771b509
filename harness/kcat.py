"""Produce test input with Debian's ``kcat``: an independent (librdkafka) client.

Input written by the same Python client the connector uses could hide a bug both
share, so tests feed binary protobuf values through kcat instead. kcat splits stdin on
delimiters, so both delimiters are long ASCII strings that no protobuf value is likely
to hold, and every record is checked to parse back exactly as given before anything
is sent.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from harness.kafka import run_sync

__all__ = [
    "KEY_DELIMITER",
    "MAX_RECORD_BYTES",
    "RECORD_DELIMITER",
    "KcatError",
    "end_offsets",
    "end_offsets_async",
    "produce",
]

# No backslash: kcat unescapes \n, \t and \xNN in -D and -K.
RECORD_DELIMITER = b"|#kcat:end-of-record:5c2e9a7d#|"
KEY_DELIMITER = b"|#kcat:end-of-key:5c2e9a7d#|"

# kcat buffers one input record in at most message.max.bytes (1 MB by default), and the
# broker refuses bigger batches anyway.
MAX_RECORD_BYTES = 900_000

_DEFAULT_PROPERTIES = {
    "acks": "all",
    "enable.idempotence": "true",  # retries must not duplicate: offsets are checked
    "linger.ms": "5",
    "batch.num.messages": "10000",
    "queue.buffering.max.messages": "1000000",
    "queue.buffering.max.kbytes": "1048576",
}


class KcatError(RuntimeError):
    """kcat failed or Kafka did not end up holding exactly the records sent."""


def _encode(key: bytes, value: bytes) -> bytes:
    """Frame one record, refusing any that kcat would split differently.

    kcat cuts at the first record delimiter and then at the first key delimiter, so
    a delimiter inside a key or value (or formed across their boundary) would move a
    record's bytes; checking where the first occurrences fall covers every such case.
    """
    if len(key) + len(value) > MAX_RECORD_BYTES:
        raise ValueError(f"record of {len(key) + len(value)} bytes exceeds {MAX_RECORD_BYTES}")
    framed = key + KEY_DELIMITER + value + RECORD_DELIMITER
    if framed.find(RECORD_DELIMITER) != len(framed) - len(RECORD_DELIMITER):
        raise ValueError("key or value contains kcat's record delimiter")
    if framed.find(KEY_DELIMITER) != len(key):
        raise ValueError("key contains kcat's key delimiter")
    return framed


def _frame_by_partition(records: Iterable[tuple[int, bytes, bytes]]) -> dict[int, list[bytes]]:
    framed: dict[int, list[bytes]] = {}
    for partition, key, value in records:
        if partition < 0:
            raise ValueError(f"partition {partition} is negative")
        framed.setdefault(partition, []).append(_encode(bytes(key), bytes(value)))
    return framed


async def end_offsets_async(
    bootstrap: str, topic: str, partitions: Iterable[int]
) -> dict[int, int]:
    """Log-end offsets; a topic that does not exist yet counts as empty."""
    wanted = sorted(set(partitions))
    result = dict.fromkeys(wanted, 0)
    known = await _existing_partitions(bootstrap, topic)
    present = [TopicPartition(topic, p) for p in wanted if p in known]
    if not present:
        return result
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        await consumer.start()
        found = await consumer.end_offsets(present)
    finally:
        await consumer.stop()
    result.update({tp.partition: int(offset) for tp, offset in found.items()})
    return result


async def _existing_partitions(bootstrap: str, topic: str) -> set[int]:
    """Ask the cluster directly: a consumer's metadata only covers what it subscribed
    to, and asking for end offsets of a missing partition would hang until timeout.
    All topics are described because naming one would auto-create it."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        await admin.start()
        described = cast(list[dict[str, Any]], await admin.describe_topics())
    finally:
        await admin.close()
    return {
        int(p["partition"])
        for t in described
        if t["topic"] == topic and t["error_code"] == 0
        for p in t["partitions"]
    }


def end_offsets(
    bootstrap: str, topic: str, partitions: Iterable[int], *, timeout: float = 30.0
) -> dict[int, int]:
    """Synchronous :func:`end_offsets_async`."""
    wanted = list(partitions)
    return run_sync(lambda: end_offsets_async(bootstrap, topic, wanted), timeout)


def _kcat_command(
    binary: str,
    bootstrap: str,
    topic: str,
    partition: int,
    properties: Mapping[str, str],
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> list[str | bytes]:
    cmd: list[str | bytes] = [
        binary, "-P", "-F", "/dev/null",  # ignore any ~/.config/kcat.conf
        "-b", bootstrap, "-t", topic, "-p", str(partition),
        "-D", RECORD_DELIMITER.decode("ascii"), "-K", KEY_DELIMITER.decode("ascii"),
    ]  # fmt: skip
    for name, value in properties.items():
        cmd += ["-X", f"{name}={value}"]
    for h_key, h_value in headers:  # bytes: a key need not be UTF-8 (kcat -H $'\xff\xfe=v')
        cmd += ["-H", h_key + b"=" + h_value]
    return cmd


def _run_kcat(cmd: list[str | bytes], payload: list[bytes], timeout: float) -> None:
    with tempfile.TemporaryDirectory(prefix="kcat-input-") as tmp:
        path = Path(tmp) / "records.bin"
        path.write_bytes(b"".join(payload))
        with path.open("rb") as stdin:
            try:
                done = subprocess.run(
                    cmd, stdin=stdin, capture_output=True, timeout=timeout, check=False
                )
            except subprocess.TimeoutExpired as exc:
                raise KcatError(f"kcat did not finish in {timeout:.0f} s: {cmd}") from exc
    stderr = done.stderr.decode("utf-8", errors="replace")
    # Transient client errors that librdkafka retried also print "% ERROR", so only a
    # failed delivery counts here; the offset check in produce() has the last word.
    if done.returncode != 0 or "Delivery failed" in stderr:
        raise KcatError(f"kcat exited {done.returncode}: {stderr[-4000:]}")


def produce(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[int, bytes, bytes]],
    *,
    timeout: float = 120.0,
    properties: Mapping[str, str] | None = None,
    executable: str = "kcat",
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> dict[int, int]:
    """Produce ``(partition, key, value)`` records with kcat, in order per partition.

    `headers` (raw bytes, keys included) are set on every record sent. Returns the
    log-end offset of every partition written, after checking that each
    grew by exactly the number of records sent to it: kcat's exit code alone would not
    show a record silently lost or split. The check assumes nobody else writes to those
    partitions meanwhile. Raises ValueError, before sending anything, for a record
    kcat could not carry intact.
    """
    framed = _frame_by_partition(records)
    if not framed:
        return {}
    binary = shutil.which(executable)
    if binary is None:
        raise KcatError(f"{executable} not found (apt-get install kcat)")
    props = {**_DEFAULT_PROPERTIES, "message.timeout.ms": str(int(timeout * 1000))}
    props.update(properties or {})
    before = end_offsets(bootstrap, topic, framed)
    for partition, payload in sorted(framed.items()):
        cmd = _kcat_command(binary, bootstrap, topic, partition, props, headers)
        _run_kcat(cmd, payload, timeout + 10.0)
    after = end_offsets(bootstrap, topic, framed)
    short = {
        p: (after[p] - before[p], len(payload))
        for p, payload in framed.items()
        if after[p] - before[p] != len(payload)
    }
    if short:
        raise KcatError(f"partitions grew by (got, sent) = {short} records")
    return after
