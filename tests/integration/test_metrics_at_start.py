"""What a running connector exposes before its first batch, and what it logs, on the real
broker: every counter at 0 for the label values known at start (so `increase()` sees the
first event), no `_created` series, the build versions; with WORKERS=2 the parent's
combined `/metrics` too. The log: the `started` summary, assignments only when non-empty,
no aiokafka INFO line at LOG_LEVEL=INFO, the `stopped` line with what was committed."""

from __future__ import annotations

import platform
import signal
import subprocess
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from harness.kafka import KafkaBroker
from harness.kcat import produce
from harness.ports import free_port
from harness.samples import zone_events
from tests.conftest import ROOT, connector_command
from tests.integration.test_runner_kafka import committed, edge_env
from tests.integration.test_workers import get
from tests.waiting import wait_for

STAGES = (
    "writer.start",
    "dead_letters.start",
    "reader.start",
    "poll",
    "transform",
    "write",
    "dead_letter",
    "commit",
)
POISON_STAGES = ("decode", "transform:pf_edge", "transform:identity", "write")


def _start(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        connector_command("run"),
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop(process: subprocess.Popen[str]) -> str:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    return err


def _ready(port: int) -> bool:
    return get(port, "/readyz")[0] == 200


def _assigned(port: int) -> str | None:
    """The exposition once this member counted its assignment (joined with partitions)."""
    status, text = get(port, "/metrics")
    counters, _ = _counters(text) if status == 200 else ({}, [])
    found = counters.get(("connector_rebalances_total", (("kind", "assigned"),)), 0)
    return text if found >= 1 else None


def _counters(text: str) -> tuple[dict[tuple[str, tuple[tuple[str, str], ...]], float], list[str]]:
    """Every counter sample by (name, labels), and every sample name seen."""
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    names: list[str] = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            names.append(sample.name)
            if family.type == "counter":
                found[_key(sample)] = sample.value
    return found, names


def _key(sample: Sample) -> tuple[str, tuple[tuple[str, str], ...]]:
    labels = {k: v for k, v in sample.labels.items() if k != "connector"}
    return sample.name, tuple(sorted(labels.items()))


def _expected(topic: str) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    """The counter series a connector of `topic` through pf_edge and identity into the KV
    store must expose from its start."""
    expected = {
        ("connector_records_in_total", (("topic", topic),)),
        ("connector_offset_resets_total", (("topic", topic),)),
        ("connector_commits_total", ()),
        ("connector_entries_written_total", (("writer", "kv"),)),
        ("connector_offset_fetch_failures_total", ()),
        ("connector_transform_cache_hits_total", ()),
        ("connector_transform_cache_misses_total", ()),
    }
    for stage in STAGES:
        expected.add(("connector_retries_total", (("stage", stage),)))
    for stage in POISON_STAGES:
        expected.add(("connector_records_failed_total", (("stage", stage),)))
        expected.add(
            ("connector_records_dead_lettered_total", (("reason", stage), ("topic", topic)))
        )
    for name in ("pf_edge", "identity"):
        expected.add(("connector_records_dropped_total", (("transform", name),)))
        expected.add(("connector_transform_dropped_records_total", (("transform", name),)))
    for kind in ("assigned", "revoked", "lost"):
        expected.add(("connector_rebalances_total", (("kind", kind),)))
    return expected


def _check_at_start(text: str, topic: str, *, single: bool) -> None:
    counters, names = _counters(text)
    assert not [n for n in names if n.endswith("_created")], "no _created series"
    missing = _expected(topic) - counters.keys()
    assert not missing, f"counters missing at start: {sorted(missing)}"
    rebalances = {k: v for k, v in counters.items() if k[0] == "connector_rebalances_total"}
    others = {k: v for k, v in counters.items() if k not in rebalances}
    assert not {k: v for k, v in others.items() if v != 0}, "every counter at 0"
    if single:  # one member joined once: its first assignment, nothing else
        assigned = rebalances.pop(("connector_rebalances_total", (("kind", "assigned"),)))
        assert assigned == 1
        assert set(rebalances.values()) == {0.0}
    build = [
        s
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "connector_build_info"
    ]
    assert build and build[0].labels["python"] == platform.python_version()
    assert build[0].labels["version"] and build[0].labels["aiokafka"] not in ("", "unknown")


def test_counters_at_zero_before_the_first_batch_and_lines_for_start_and_stop(
    kafka: KafkaBroker, topic: str, unique: str, tmp_path: Path
) -> None:
    port = free_port()
    group = f"zero-{unique}"
    env = edge_env(
        kafka,
        topic,
        group,
        tmp_path / "kv",
        TRANSFORMS="pf_edge,identity",
        METRICS_PORT=str(port),
        METRICS_HOST="127.0.0.1",
        LOG_FORMAT="text",
        LOG_LEVEL="INFO",
    )
    process = _start(env)
    try:
        text = wait_for(lambda: _assigned(port), timeout=60, what="partitions assigned")
        _check_at_start(text, topic, single=True)

        events = list(zone_events(30, partitions=3))
        ends = produce(kafka.bootstrap, topic, [(e.partition, e.key, e.value) for e in events])
        wait_for(lambda: committed(kafka, group, topic) == ends, timeout=60, what="all committed")
    finally:
        err = _stop(process)
    assert process.returncode == 0, err
    lines = err.splitlines()
    started = [line for line in lines if "started: " in line]
    assert len(started) == 1, err
    assert (
        f"started: topics {topic} -> types edge.v1.ZoneSettingsChanged -> transforms "
        f"pf_edge, identity -> writer kv, group {group}" in started[0]
    )
    assert sum("assigned [" in line for line in lines) == 1, err
    assert "revoked: []" not in err
    assert not [line for line in lines if " INFO aiokafka" in line], err
    stopped = [line for line in lines if "stopped: " in line]
    offsets = " ".join(f"{topic}[{p}]={o}" for p, o in sorted(ends.items()))
    assert stopped and stopped[-1].endswith(
        f"stopped: stop requested; 30 records processed, committed {offsets}; exit code 0"
    ), stopped


def test_parent_of_two_workers_exposes_the_counters_at_zero_without_created(
    kafka: KafkaBroker, topic: str, unique: str, tmp_path: Path
) -> None:
    port = free_port()
    env = edge_env(
        kafka,
        topic,
        f"zero2-{unique}",
        tmp_path / "kv",
        TRANSFORMS="pf_edge,identity",
        WORKERS="2",
        METRICS_PORT=str(port),
        METRICS_HOST="127.0.0.1",
    )
    process = _start(env)
    try:
        wait_for(lambda: _ready(port), timeout=90, what="both workers joined")
        text = wait_for(lambda: _assigned(port), timeout=60, what="partitions assigned")
        _check_at_start(text, topic, single=False)
    finally:
        err = _stop(process)
    assert process.returncode == 0, err
