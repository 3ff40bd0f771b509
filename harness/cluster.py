"""Three Kafka brokers in one KRaft cluster, for fault tests.

Each node is a :class:`harness.kafka.KafkaBroker` in combined broker+controller mode; the
cluster gives them their node ids, one voters list, one cluster id and replication settings
that make a single broker's loss survivable without losing an acknowledged record:
replication factor 3 everywhere and ``min.insync.replicas=2``. A node keeps its ports and
its data across ``kill``/``start``, so a test can crash the leader of a partition and bring
the same broker back::

    with KafkaCluster() as cluster:
        create_topic(cluster.bootstrap, "t", 12, replication_factor=3)
        victim = cluster.leader("t", 0)
        cluster.kill(victim)
        ...
        cluster.restart(victim)      # waits until it answers and is back in every ISR

Nodes start in parallel: a KRaft controller cannot elect a leader, and so a broker cannot
answer, until a majority of the voters runs.
"""

from __future__ import annotations

import concurrent.futures
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, cast

from aiokafka.admin import AIOKafkaAdminClient

from harness.kafka import (
    DEFAULT_VERSION,
    STORAGE_TOOL,
    BrokerStartError,
    KafkaBroker,
    KafkaHarnessError,
    _quiet_refusals,
    _random_cluster_id,
    run_sync,
    run_tool,
)
from harness.ports import free_port
from harness.process import Service

__all__ = ["ClusterNode", "KafkaCluster", "PartitionState"]

_POLL_S = 0.1


class ClusterNode(KafkaBroker):
    """A :class:`KafkaBroker` formatted with the cluster's shared id.

    Every other setting comes through ``properties=``; only formatting differs from a
    single broker, which makes up a cluster id of its own.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        node_id: int,
        cluster_id: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(directory, **kwargs)
        self.node_id = node_id
        self.cluster_id = cluster_id

    def _format_storage(self, config: Path) -> None:
        if (self.data_dir / "meta.properties").exists():
            return
        done = run_tool(
            STORAGE_TOOL, "format", "-t", self.cluster_id, "-c", str(config),
            version=self.version, timeout=60.0, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise BrokerStartError(
                f"node {self.node_id}: {STORAGE_TOOL} format failed ({done.returncode}):\n"
                f"{done.stdout}\n{done.stderr}"
            )


@dataclass(frozen=True, slots=True)
class PartitionState:
    """One partition as the cluster's metadata describes it (-1: no leader)."""

    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


def cluster_properties(size: int) -> dict[str, str]:
    """Replication settings of the cluster: every topic, internal ones included, on three
    replicas, and a write acknowledged by ``acks=all`` is on at least two of them."""
    replicas = str(min(3, size))
    min_isr = str(min(2, size))
    return {
        "default.replication.factor": replicas,
        "min.insync.replicas": min_isr,
        "offsets.topic.replication.factor": replicas,
        "offsets.topic.num.partitions": "12",  # 50 by default: slow to create on 2 cores
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": min_isr,
        "share.coordinator.state.topic.replication.factor": replicas,
        "share.coordinator.state.topic.min.isr": min_isr,
        "unclean.leader.election.enable": "false",
    }


async def _with_admin(bootstrap: str, call: Any) -> Any:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await admin.start()
        return await call(admin)
    finally:
        await admin.close()


class KafkaCluster(Service):
    """``size`` KRaft nodes (3 by default), each broker and controller, on loopback."""

    def __init__(
        self,
        directory: str | Path | None = None,
        *,
        size: int = 3,
        version: str = DEFAULT_VERSION,
        start_timeout: float = 120.0,
        heap: str = "512m",
        properties: Mapping[str, str] | None = None,
    ) -> None:
        if size < 1:
            raise ValueError("a cluster needs at least one node")
        self._owned_dir = directory is None
        self.directory = Path(
            tempfile.mkdtemp(prefix="kafka-cluster-") if directory is None else directory
        ).resolve()
        self.cluster_id = _random_cluster_id()
        ports = {node_id: (free_port(), free_port()) for node_id in range(1, size + 1)}
        voters = ",".join(f"{n}@127.0.0.1:{cport}" for n, (_, cport) in ports.items())
        shared = {**cluster_properties(size), **dict(properties or {})}
        self.nodes: dict[int, ClusterNode] = {
            node_id: ClusterNode(
                self.directory / f"node-{node_id}",
                node_id=node_id,
                cluster_id=self.cluster_id,
                port=port,
                controller_port=cport,
                version=version,
                start_timeout=start_timeout,
                heap=heap,
                properties={
                    **shared,
                    "node.id": str(node_id),
                    "controller.quorum.voters": voters,
                },
            )
            for node_id, (port, cport) in ports.items()
        }
        self.start_timeout = start_timeout

    # -- addresses

    @property
    def bootstrap(self) -> str:
        """Every node's address: clients find the cluster while any one of them runs."""
        return ",".join(node.bootstrap for node in self.nodes.values())

    def live_bootstrap(self) -> str:
        """The addresses of the nodes currently running (not killed, not stopped)."""
        live = [node.bootstrap for node in self.nodes.values() if node.is_running()]
        if not live:
            raise KafkaHarnessError("no node of the cluster is running")
        return ",".join(live)

    def node(self, node_id: int) -> ClusterNode:
        try:
            return self.nodes[node_id]
        except KeyError:
            raise KafkaHarnessError(
                f"no node {node_id} in a cluster of {sorted(self.nodes)}"
            ) from None

    def pids(self) -> dict[int, int]:
        return {n: node.pid for n, node in self.nodes.items() if node.pid is not None}

    # -- lifecycle

    def start(self) -> KafkaCluster:
        """Start every node that is not running, in parallel, and return once each answers
        and the cluster's metadata lists all of them."""
        self._start_nodes([n for n, node in self.nodes.items() if not node.is_running()])
        return self

    def _start_nodes(self, node_ids: Iterable[int]) -> None:
        wanted = list(node_ids)
        if not wanted:
            return
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(wanted)) as pool:
            futures = {pool.submit(self.nodes[n].start): n for n in wanted}
            errors = []
            for future in concurrent.futures.as_completed(futures):
                exc = future.exception()
                if exc is not None:
                    errors.append(f"node {futures[future]}: {exc}")
        if errors:
            for n in wanted:
                self.nodes[n].kill()
            raise BrokerStartError("\n\n".join(errors))
        self.wait_for_brokers(set(self.nodes), self.start_timeout)

    def stop(self) -> None:
        """SIGTERM every node at once: stopped one by one, the last ones would wait for a
        controller quorum that is already gone."""
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(self.nodes)) as pool:
            for future in [pool.submit(node.stop) for node in self.nodes.values()]:
                future.result()

    def close(self) -> None:
        self.stop()
        if self._owned_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def kill(self, node_id: int) -> None:
        """SIGKILL one node: a crashed host."""
        self.node(node_id).kill()

    def restart(self, node_id: int, *, in_sync_topics: Iterable[str] = ()) -> float:
        """Start a stopped or killed node again (same ports, same data), wait until the
        cluster lists it and, for each topic in ``in_sync_topics``, until it is back in
        every partition's ISR. Returns the seconds that took."""
        started = time.monotonic()
        node = self.node(node_id)
        node.start()
        self.wait_for_brokers(set(self.nodes), self.start_timeout)
        for topic in in_sync_topics:
            self.wait_in_sync(topic, timeout=self.start_timeout)
        return time.monotonic() - started

    def pause(self, node_id: int | None = None) -> None:
        """SIGSTOP one node, or all of them: sockets stay open, nothing answers."""
        for node in self._selected(node_id):
            node.pause()

    def resume(self, node_id: int | None = None) -> None:
        """SIGCONT after :meth:`pause`."""
        for node in self._selected(node_id):
            node.resume()

    def _selected(self, node_id: int | None) -> list[ClusterNode]:
        return list(self.nodes.values()) if node_id is None else [self.node(node_id)]

    def diagnostics(self, lines: int = 30) -> str:
        return "\n".join(
            f"=== node {n} ({'running' if node.is_running() else 'down'}) ===\n"
            f"{node.diagnostics(lines)}"
            for n, node in self.nodes.items()
        )

    # -- metadata

    def _admin_call(self, what: str, call: Any, timeout: float) -> Any:
        """Run ``call(admin)`` against the live nodes, retrying while metadata is in flux
        (a node just died or came back) until ``timeout``."""
        deadline = time.monotonic() + timeout
        last: BaseException | None = None
        while True:
            try:
                with _quiet_refusals():
                    return run_sync(partial(_with_admin, self.live_bootstrap(), call), 15.0)
            except Exception as exc:  # noqa: BLE001 - any failure means "ask again"
                last = exc
            if time.monotonic() > deadline:
                raise KafkaHarnessError(f"{what}: no answer within {timeout} s: {last!r}")
            time.sleep(_POLL_S)

    def brokers(self, timeout: float = 30.0) -> set[int]:
        """Node ids the cluster's metadata currently lists as brokers."""

        async def call(admin: Any) -> set[int]:
            described = cast(dict[str, Any], await admin.describe_cluster())
            return {int(b["node_id"]) for b in described["brokers"]}

        return cast(set[int], self._admin_call("describe cluster", call, timeout))

    def describe(self, topic: str, timeout: float = 30.0) -> dict[int, PartitionState]:
        """Leader, replicas and ISR of every partition of ``topic``."""

        async def call(admin: Any) -> dict[int, PartitionState]:
            described = cast(list[dict[str, Any]], await admin.describe_topics([topic]))
            for found in described:
                if found["topic"] != topic:
                    continue
                if found["error_code"] != 0:
                    raise KafkaHarnessError(f"topic {topic!r}: error {found['error_code']}")
                return {
                    int(p["partition"]): PartitionState(
                        int(p["leader"]),
                        tuple(int(r) for r in p["replicas"]),
                        tuple(int(r) for r in p["isr"]),
                    )
                    for p in found["partitions"]
                }
            raise KafkaHarnessError(f"topic {topic!r} not in the metadata")

        return cast(dict[int, PartitionState], self._admin_call("describe", call, timeout))

    def leader(self, topic: str, partition: int, timeout: float = 30.0) -> int:
        """Node id of the partition's leader, waiting while it has none."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.describe(topic, timeout).get(partition)
            if state is not None and state.leader >= 0:
                return state.leader
            if time.monotonic() > deadline:
                raise KafkaHarnessError(f"{topic}[{partition}] has no leader after {timeout} s")
            time.sleep(_POLL_S)

    def coordinator(self, group: str, timeout: float = 30.0) -> int:
        """Node id of the group's coordinator (the leader of its `__consumer_offsets`
        partition)."""

        async def call(admin: Any) -> int:
            return int(await admin.find_coordinator(group))

        return cast(int, self._admin_call(f"find coordinator of {group}", call, timeout))

    def wait_for_brokers(self, node_ids: set[int], timeout: float) -> None:
        """Until the metadata lists exactly the brokers ``node_ids`` (a killed broker
        leaves it once its session expires, a restarted one joins it)."""
        deadline = time.monotonic() + timeout
        while (seen := self.brokers(timeout)) != node_ids:
            if time.monotonic() > deadline:
                raise KafkaHarnessError(
                    f"cluster lists brokers {sorted(seen)}, expected {sorted(node_ids)} "
                    f"after {timeout} s\n{self.diagnostics()}"
                )
            time.sleep(_POLL_S)

    def wait_leaders_moved(self, topic: str, away_from: int, timeout: float = 60.0) -> float:
        """Until no partition of ``topic`` is led by ``away_from`` (or leaderless);
        returns the seconds it took."""
        started = time.monotonic()
        deadline = started + timeout
        while True:
            states = self.describe(topic, timeout)
            if all(s.leader >= 0 and s.leader != away_from for s in states.values()):
                return time.monotonic() - started
            if time.monotonic() > deadline:
                raise KafkaHarnessError(
                    f"{topic}: leaders still on node {away_from} or missing after {timeout} s: "
                    f"{ {p: s.leader for p, s in states.items()} }"
                )
            time.sleep(_POLL_S)

    def wait_in_sync(self, topic: str, timeout: float = 60.0) -> None:
        """Until every partition of ``topic`` has all its replicas in sync."""
        deadline = time.monotonic() + timeout
        while True:
            states = self.describe(topic, timeout)
            if all(set(s.isr) == set(s.replicas) for s in states.values()):
                return
            if time.monotonic() > deadline:
                lagging = {
                    p: (s.replicas, s.isr)
                    for p, s in states.items()
                    if set(s.isr) != set(s.replicas)
                }
                raise KafkaHarnessError(
                    f"{topic}: replicas out of sync after {timeout} s: {lagging}"
                )
            time.sleep(_POLL_S)
