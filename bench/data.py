"""Benchmark input: `harness.samples.zone_events` encoded once into a kcat input file, then
produced with kcat (librdkafka) into topics of 1 and 6 partitions.

The file is cached by (count, zones, seed), so repeated runs skip the slow Python encoding.
Records are keyed by zone id and kcat places them with librdkafka's key partitioner, so every
zone lives on one partition, as a producer keying by zone would place it.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harness.kafka import _cache_root
from harness.kcat import KEY_DELIMITER, RECORD_DELIMITER, _encode, end_offsets
from harness.samples import zone_events

# Enough distinct keys that the LMDB tree is not a toy (500 zones would fit in a few pages),
# few enough that every key is updated about 50 times in 5,000,000 messages.
DEFAULT_ZONES = 100_000
SEED = 7


@dataclass(frozen=True)
class Payload:
    path: Path
    count: int
    zones: int
    value_bytes_mean: float
    value_bytes_min: int
    value_bytes_max: int


def _stats_path(path: Path) -> Path:
    return path.with_suffix(".stats")


def payload(count: int, zones: int = DEFAULT_ZONES, *, log: bool = True) -> Payload:
    """The kcat input file of `count` events (cached), with its value-size statistics."""
    folder = _cache_root() / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"zone-events-{count}-{zones}-{SEED}.kcat"
    stats = _stats_path(path)
    if not (path.exists() and stats.exists()):
        started = time.monotonic()
        if log:
            print(f"encoding {count:,} zone events into {path} (once)...", flush=True)
        sizes: list[int] = []
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as out:
            chunk: list[bytes] = []
            for event in zone_events(count, partitions=1, zones=zones, seed=SEED):
                value = event.value
                sizes.append(len(value))
                chunk.append(_encode(event.key, value))
                if len(chunk) >= 50_000:
                    out.write(b"".join(chunk))
                    chunk.clear()
            out.write(b"".join(chunk))
        tmp.rename(path)
        stats.write_text(
            f"{statistics.fmean(sizes):.1f} {min(sizes)} {max(sizes)}\n", encoding="utf-8"
        )
        if log:
            print(f"  encoded in {time.monotonic() - started:.0f} s", flush=True)
    mean, low, high = stats.read_text(encoding="utf-8").split()
    return Payload(path, count, zones, float(mean), int(low), int(high))


def read_records(path: Path, limit: int | None = None) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) pairs back from a kcat input file, in file order."""
    seen = 0
    tail = b""
    with path.open("rb") as handle:
        while block := handle.read(8 << 20):
            parts = (tail + block).split(RECORD_DELIMITER)
            tail = parts.pop()
            for part in parts:
                key, _, value = part.partition(KEY_DELIMITER)
                yield key, value
                seen += 1
                if limit is not None and seen >= limit:
                    return
    if tail:
        raise ValueError(f"{path} ends inside a record")


PRODUCE_PROPERTIES = {
    "acks": "all",
    "enable.idempotence": "true",
    "linger.ms": "50",
    "batch.size": "1000000",
    "batch.num.messages": "100000",
    "queue.buffering.max.messages": "2000000",
    "queue.buffering.max.kbytes": "2097152",
    "message.timeout.ms": "600000",
}


def produce_file(bootstrap: str, topic: str, partitions: int, data: Payload) -> float:
    """kcat every record of the file into `topic` (key partitioner); seconds taken.

    Checks afterwards that the topic grew by exactly the file's record count."""
    binary = shutil.which("kcat")
    if binary is None:
        raise RuntimeError("kcat not found (apt-get install kcat)")
    before = sum(end_offsets(bootstrap, topic, range(partitions)).values())
    cmd = [
        binary, "-P", "-F", "/dev/null", "-b", bootstrap, "-t", topic,
        "-D", RECORD_DELIMITER.decode("ascii"), "-K", KEY_DELIMITER.decode("ascii"),
    ]  # fmt: skip
    for name, value in PRODUCE_PROPERTIES.items():
        cmd += ["-X", f"{name}={value}"]
    started = time.monotonic()
    with data.path.open("rb") as stdin:
        done = subprocess.run(
            cmd, stdin=stdin, capture_output=True, timeout=3600, check=False,
            env={**os.environ},
        )  # fmt: skip
    took = time.monotonic() - started
    stderr = done.stderr.decode("utf-8", "replace")
    if done.returncode != 0 or "Delivery failed" in stderr:
        raise RuntimeError(f"kcat exited {done.returncode}: {stderr[-4000:]}")
    after = sum(end_offsets(bootstrap, topic, range(partitions)).values())
    if after - before != data.count:
        raise RuntimeError(f"{topic} grew by {after - before} records, {data.count} were sent")
    return took
