"""Scale-out by consumer groups, and what static membership changes on restarts.

- Throughput of 1, 2 and 3 connector processes in one group on the same 12-partition
  topic, each run delivering the whole topic into its own LMDB store.
- Restarts in a group of three, with dynamic membership (the default) and with static
  membership (`KAFKA_GROUP_INSTANCE_ID`, Kafka's `group.instance.id`): a member `kill -9`ed
  and restarted at once, then a member stopped with SIGTERM and restarted.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from harness.cluster import KafkaCluster
from tests.faults.report import Report
from tests.faults.support import (
    Connector,
    Dataset,
    Writes,
    committed_quick,
    fault_env,
    make_dataset,
    read_lmdb,
    stop_all,
    wait_all_committed,
    wait_progress,
)
from tests.waiting import wait_for

pytestmark = pytest.mark.faults

RUN_TIMEOUT = 300.0
AFTER_S = 3.0  # how long after a restarted member wrote its rebalance still counts

_SCALE: dict[tuple[str, int], tuple[int, float, float, float, float, int]] = {}


def _group_formed(members: list[Connector], partitions: int) -> bool:
    """Every member holds a share, and the shares split all partitions exactly."""
    shares = [m.assigned() for m in members]
    if not all(shares):
        return False
    union = set().union(*shares)
    return len(union) == partitions and sum(len(s) for s in shares) == partitions


_STATIC: dict[str, list[list[str]]] = {}


def _check_sink(store: Path, data: Dataset) -> None:
    sink = read_lmdb(store)
    expected = data.expected()
    missing = sum(1 for k, v in expected.items() if sink.get(k) != v)
    assert missing == 0, f"{missing} records missing from {store}"
    assert len(sink) == len(expected)


SINK_RATE = 3000  # records/s one process's sink takes in the sink-bound runs


@pytest.mark.parametrize("processes", [1, 2, 3])
@pytest.mark.parametrize("bound", ["cpu", "sink"])
def test_throughput_with_more_connectors_in_the_group(
    bound: str,
    processes: int,
    cluster: KafkaCluster,
    dataset: Dataset,
    paced_topic: Dataset,
    report: Report,
    tmp_path: Path,
) -> None:
    """The whole topic into a fresh LMDB store with 1, 2, 3 processes in one group: as
    fast as they go (`cpu`), and with each process's sink taking 3,000 records/s (`sink`,
    the usual case of a networked sink). The processes form their group first (reader
    `kafka_gated`), then all start on the data at once."""
    data = dataset if bound == "cpu" else paced_topic
    group = f"scale-{bound}{processes}-{uuid.uuid4().hex[:8]}"
    records = tmp_path / "records"
    records.mkdir()
    store = tmp_path / "kv"
    gate = tmp_path / "gate"
    pace = {"RECORD_RATE": str(SINK_RATE)} if bound == "sink" else {}
    env = fault_env(
        cluster.bootstrap, data, group, records,
        KV_URL=f"lmdb:{store}", READER="kafka_gated", FAULTS_GATE=str(gate), **pace,
    )  # fmt: skip
    writes = Writes(records)
    members = [Connector(f"m{n}", env, tmp_path) for n in range(processes)]
    started = time.time()
    try:
        for member in members:
            member.start()
        wait_for(
            lambda: _group_formed(members, data.partitions),
            timeout=RUN_TIMEOUT,
            what=f"{processes} members sharing {data.partitions} partitions",
        )
        opened = time.time()
        gate.touch()
        done_at = wait_all_committed(cluster.bootstrap, group, data, members, RUN_TIMEOUT)
        stop_all(members)
    finally:
        for member in members:
            member.cleanup()
    writes.refresh()
    span = writes.batches[-1].at - opened
    rate = data.count / span
    writers = {b.label for b in writes.batches}
    _check_sink(store, data)
    assert writers == {m.label for m in members}, f"only {writers} wrote"
    _SCALE[(bound, processes)] = (
        data.count,
        opened - started,
        span,
        rate,
        done_at - opened,
        writes.duplicates,
    )
    rows = []
    for (kind, n), (count, formed, s, r, commit, dups) in sorted(_SCALE.items()):
        base = _SCALE.get((kind, 1))
        speedup = f"{r / base[3]:.2f}×" if base and base[3] else "n/a"
        sink = "as fast as it goes" if kind == "cpu" else f"{SINK_RATE:,} records/s each"
        rows.append(
            [
                n,
                sink,
                f"{count:,}",
                f"{formed:.1f}",
                f"{s:.1f}",
                f"{r:,.0f}",
                speedup,
                f"{commit:.1f}",
                dups,
            ]  # fmt: skip
        )
    report.table(
        "scale",
        "Scale-out: connector processes in one group",
        "A 12-partition topic delivered into a fresh LMDB store by 1, 2 and 3 `connector run` "
        "processes in one group (pass-through bytes, batches of 500, `KV_SYNC=false`), "
        "first as fast as they go, then with each process's sink taking 3,000 records/s "
        "(as a networked sink would). The processes form their group before any reads "
        "(*group formed*: from starting them to every one holding its share of the "
        "partitions; test reader `kafka_gated`), then all start at once: *seconds* runs "
        "from then to the last write, *records/s* is records over those seconds, and "
        "*all committed* is when the group's committed offsets reached the end. The "
        "machine has 2 cores shared by three brokers, the connectors and other test "
        "suites: the CPU-bound rows show what more processes buy here, not the ceiling of "
        "the design; the sink-bound rows show the group spreading the partitions.",
        [
            "processes",
            "sink",
            "records",
            "group formed (s)",
            "seconds",
            "records/s",
            "speed-up",
            "all committed (s)",
            "duplicates",
        ],
        rows,
    )


@pytest.fixture(scope="module")
def paced_topic(cluster: KafkaCluster) -> Dataset:
    return make_dataset(cluster.bootstrap, f"static-{uuid.uuid4().hex[:8]}", 45_000)


@pytest.mark.parametrize("membership", ["dynamic", "static"])
def test_restarts_with_dynamic_and_static_membership(
    membership: str,
    cluster: KafkaCluster,
    paced_topic: Dataset,
    report: Report,
    tmp_path: Path,
) -> None:
    data = paced_topic
    group = f"{membership}-{uuid.uuid4().hex[:8]}"
    records = tmp_path / "records"
    records.mkdir()
    store = tmp_path / "kv"
    env = fault_env(
        cluster.bootstrap, data, group, records,
        KV_URL=f"lmdb:{store}", RECORD_RATE="1000", KAFKA_MAX_PARTITION_FETCH_BYTES="16384",
        # Small batches, as a slow sink takes them: with the default a member that is given
        # a partition writes its whole remainder in one batch, before the pacing applies.
        BATCH_MAX_MESSAGES="200",
    )  # fmt: skip

    def member(label: str, instance: str) -> Connector:
        static = {"KAFKA_GROUP_INSTANCE_ID": instance} if membership == "static" else {}
        return Connector(label, {**env, **static}, tmp_path)

    writes = Writes(records)
    live = {name: member(name, name).start() for name in ("a", "b", "c")}
    everyone = list(live.values())
    events: list[tuple[str, str, float, float, list[str]]] = []
    try:
        wait_for(
            lambda: all(writes.refresh().first_after(0, label=n) for n in live),
            timeout=RUN_TIMEOUT,
            what="three members writing",
        )
        for event, victim, fraction in (
            ("kill -9, restart", "b", 0.25),
            ("SIGTERM, restart", "c", 0.6),
        ):
            wait_progress(
                writes, int(data.count * fraction), everyone, timeout=RUN_TIMEOUT, what=event
            )
            old = live[victim]
            if event.startswith("kill"):
                at = old.kill()
            else:
                at = old.terminate()
                assert old.wait(60) == 0, old.log_tail()
            new = member(f"{victim}2", victim).start()
            everyone.append(new)
            live[victim] = new
            back = writes.wait_first_after(
                at, label=new.label, timeout=RUN_TIMEOUT, what=f"{new.label} writing"
            )
            others = [c.label for n, c in live.items() if n != victim]
            events.append((event, victim, at, back, others))
        wait_all_committed(cluster.bootstrap, group, data, list(live.values()), RUN_TIMEOUT)
        stop_all(list(live.values()))
    finally:
        for connector in everyone:
            connector.cleanup()
    writes.refresh()
    rows: list[list[str]] = []
    for event, _victim, at, back, others in events:
        until = back + AFTER_S
        stall = _longest_gap(writes, others, at, until)
        revoked = sum(
            1
            for c in everyone
            if c.label in others
            for t in c.log_times("partitions revoked")
            if at <= t <= until
        )
        rows.append([membership, event, str(revoked), f"{stall:.1f}", f"{back - at:.1f}"])
    _check_sink(store, data)
    assert committed_quick(cluster.bootstrap, group, data.topic) == data.ends
    _STATIC[membership] = rows
    report.table(
        "static",
        "Restarts in a group of three: dynamic vs static membership",
        "Three connectors share a 12-partition topic (each sink paced at 1,000 records/s, "
        "session timeout 10 s). One member is `kill -9`ed and restarted at once; later "
        "another is stopped with SIGTERM and restarted. *revocations* counts the other two "
        "members' `partitions revoked` (each is one rebalance they took part in); *others' "
        "stall* is the longest time the two others wrote nothing; *back* is the time until "
        "the restarted member wrote. Static membership uses `group.instance.id` through the "
        "runtime's `KAFKA_GROUP_INSTANCE_ID`. Each run "
        "delivered exactly the whole topic and committed its end offsets.",
        ["membership", "restart", "revocations (others)", "others' stall (s)", "back (s)"],
        [row for name in ("dynamic", "static") for row in _STATIC.get(name, [])],
    )


def _longest_gap(writes: Writes, labels: list[str], since: float, until: float) -> float:
    """Longest time in [since, until] during which none of `labels` wrote."""
    times = [b.at for b in writes.batches if b.label in labels and since <= b.at <= until]
    edges = [since, *times, until]
    return max(b - a for a, b in zip(edges, edges[1:], strict=False))
