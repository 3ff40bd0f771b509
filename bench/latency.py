"""End-to-end latency at a fixed offered load: produce timestamp → LMDB commit.

A `connector run` (the R configuration, with the `bench_kv` wrapper recording per record the
time from its Kafka timestamp to the moment the LMDB transaction holding it committed) reads
a fresh topic while this process produces into it with confluent-kafka at a fixed rate. Each
record's timestamp is set explicitly to the wall clock at `produce()`, so the figure covers
the producer's batching, the broker, the consumer's fetch, decode, transform and the durable
write. Records produced in the first `warmup_s` are left out of the percentiles.
"""

from __future__ import annotations

import statistics
import time
import uuid
from array import array
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.data import Payload, read_records
from bench.procs import PYTHON, Child
from harness.kafka import create_topic


def _wait_for_text(path: Path, text: str, child: Child, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        if not child.alive():
            raise RuntimeError(f"connector exited before {text!r}: see {path}")
        time.sleep(0.1)
    raise TimeoutError(f"no {text!r} in {path} after {timeout:.0f} s")


def committed_total(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        found = consumer.committed(
            [TopicPartition(topic, p) for p in range(partitions)], timeout=10
        )
    finally:
        consumer.close()
    return sum(max(tp.offset, 0) for tp in found)


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def run_latency(
    bootstrap: str,
    partitions: int,
    rate: float,
    seconds: float,
    data: Payload,
    workdir: Path,
    connector_env: Mapping[str, str],
    *,
    warmup_s: float = 2.0,
) -> dict[str, Any]:
    from confluent_kafka import Producer

    tag = uuid.uuid4().hex[:8]
    topic = f"bench-latency-p{partitions}-{tag}"
    create_topic(bootstrap, topic, partitions=partitions)
    run_dir = workdir / f"latency-p{partitions}-{tag}"
    run_dir.mkdir(parents=True)
    latency_file = run_dir / "latency.bin"
    name = f"bench-latency-{tag}"
    env = {
        **connector_env,
        "CONNECTOR_NAME": name,
        "TOPICS": topic,
        "TOPIC_SCHEMAS": f"{topic}=edge.v1.ZoneSettingsChanged",
        "KV_URL": f"lmdb:{run_dir / 'kv'}",
        "BENCH_LATENCY_FILE": str(latency_file),
        "BENCH_STATS_FILE": str(run_dir / "stats.json"),
    }
    child = Child([PYTHON, "-m", "connectors.cli", "run"], env, run_dir, "connector")
    try:
        _wait_for_text(child.err_path, "assigned", child, 60)
        total = int(rate * seconds)
        records = list(read_records(data.path, min(total, data.count)))
        producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "acks": "all",
                "linger.ms": 5,
                "enable.idempotence": True,
            }
        )
        started = time.time()
        sent = 0
        while sent < total:
            due = min(total, int((time.time() - started) * rate) + 1)
            while sent < due:
                key, value = records[sent % len(records)]
                producer.produce(topic, value, key, timestamp=int(time.time() * 1000))
                sent += 1
            producer.poll(0)
            time.sleep(0.001)
        produce_s = time.time() - started
        if producer.flush(60) != 0:
            raise RuntimeError("producer could not deliver every record")
        deadline = time.monotonic() + 120
        while committed_total(bootstrap, name, topic, partitions) < total:
            if time.monotonic() > deadline or not child.alive():
                raise RuntimeError(f"connector did not commit {total} records; see {run_dir}")
            time.sleep(0.2)
    finally:
        finished = child.stop(60)
    samples = array("q")
    with latency_file.open("rb") as handle:
        samples.frombytes(handle.read())
    cutoff_ms = (started + warmup_s) * 1000
    latencies = sorted(
        samples[i + 1] / 1000.0 for i in range(0, len(samples), 2) if samples[i] >= cutoff_ms
    )
    return {
        "partitions": partitions,
        "offered_rate": rate,
        "achieved_rate": total / produce_s,
        "records": total,
        "measured": len(latencies),
        "p50_ms": _percentile(latencies, 0.50),
        "p99_ms": _percentile(latencies, 0.99),
        "max_ms": latencies[-1] if latencies else float("nan"),
        "mean_ms": statistics.fmean(latencies) if latencies else float("nan"),
        "rss_mb": finished.max_rss_mb,
        "cpu_per_million": finished.cpu_s / total * 1e6,
    }
