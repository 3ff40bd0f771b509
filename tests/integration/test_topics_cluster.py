"""`connector topics apply` on a three-broker cluster (replication 3) that enforces ACLs
(StandardAuthorizer), checked with Kafka's own tools; and the producer library on it.

The cluster starts once for the module. Its PLAINTEXT door is the super user's (the
operator applying the catalog, and Kafka's tools); SASL_PLAINTEXT (PLAIN) carries the
services, whose users start with no permission at all.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors import FatalError, Producer
from harness.cluster import KafkaCluster
from harness.kafka import run_tool
from harness.ports import free_port
from harness.samples import zone_events
from harness.secure_kafka import ACL_COMMAND
from tests.conftest import EDGE_DESCRIPTORS, connector_env, run_connector
from tests.integration.test_runner_kafka import COUNT, expected_store, read_lmdb
from transforms.proto.edge import EdgeZoneConfig

pytestmark = pytest.mark.integration

TOPIC_COMMAND = "org.apache.kafka.tools.TopicCommand"
USERS = {"api": "api-secret", "reader": "reader-secret", "stranger": "stranger-secret"}
ZONES, CONFIGS = "edge.v1.ZoneSettingsChanged", "edge.v1.EdgeZoneConfig"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    users = " ".join(f'user_{name}="{pw}"' for name, pw in USERS.items())
    shared = {
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": "User:ANONYMOUS",
        "allow.everyone.if.no.acl.found": "false",
        "sasl.enabled.mechanisms": "PLAIN",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": (
            f"org.apache.kafka.common.security.plain.PlainLoginModule required {users};"
        ),
    }
    made = KafkaCluster(tmp_path_factory.mktemp("acl-cluster"), properties=shared)
    made.sasl = {}  # type: ignore[attr-defined]
    for node_id, node in made.nodes.items():
        sasl = free_port()
        made.sasl[node_id] = f"127.0.0.1:{sasl}"  # type: ignore[attr-defined]
        node.extra_properties.update(
            {
                "listeners": f"PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:"
                f"{node.controller_port},SASL_PLAINTEXT://127.0.0.1:{sasl}",
                "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.port},"
                f"SASL_PLAINTEXT://127.0.0.1:{sasl}",
                "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,"
                "SASL_PLAINTEXT:SASL_PLAINTEXT",
            }
        )
    made.start()
    try:
        yield made
    finally:
        made.close()


def topic_file(name: str, type_name: str, partitions: int, extra: str = "") -> str:
    return (
        f"name: {name}\nowner: team-edge\ntype: {type_name}\npartitions: {partitions}\n"
        f"replication: 3\n{extra}"
    )


CATALOG = {
    "zones": topic_file("zones", ZONES, 3, "retention: {ms: 86400000}\nacls:\n"
                        "  produce: [User:api]\n"
                        "  consume: [{principal: User:reader, group_prefix: edge-}]\n"),
    "configs": topic_file("configs", CONFIGS, 2, "cleanup_policy: compact\n"
                          "configs: {min.insync.replicas: 2}\n"),
    "audit": topic_file("audit", ZONES, 1, "retention: {ms: 3600000, bytes: 1048576}\n"
                        "acls: {produce: [User:api, User:reader]}\n"),
    "billing": topic_file("billing", CONFIGS, 4, "configs: {segment.bytes: 10485760}\n"),
    "replay": topic_file("replay", ZONES, 6, "acls:\n  consume:\n"
                         "    - {principal: User:reader, group_prefix: replay-}\n"),
}  # fmt: skip


def write_catalog(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for path in root.glob("*.yaml"):
        path.unlink()
    for name, text in files.items():
        (root / f"{name}.yaml").write_text(text)
    return root


def topics_cmd(cluster: KafkaCluster, command: str, root: Path, *flags: str) -> tuple[int, str]:
    env = connector_env(
        KAFKA_BOOTSTRAP_SERVERS=cluster.bootstrap, PROTO_DESCRIPTOR_SET=str(EDGE_DESCRIPTORS)
    )
    done = run_connector("topics", command, str(root), *flags, env=env)
    return done.returncode, done.stdout + done.stderr


def described(cluster: KafkaCluster) -> dict[str, tuple[int, int, dict[str, str]]]:
    """Kafka's `kafka-topics --describe`: partitions, replication, configs of each topic."""
    out = run_tool(TOPIC_COMMAND, "--bootstrap-server", cluster.bootstrap, "--describe").stdout
    found = {}
    for match in re.finditer(
        r"^Topic: (\S+)\s+TopicId: \S+\s+PartitionCount: (\d+)\s+ReplicationFactor: (\d+)"
        r"\s+Configs: ?(.*)$",
        out,
        re.MULTILINE,
    ):
        name, parts, replicas, configs = match.groups()
        pairs = dict(item.split("=", 1) for item in configs.strip().split(",") if item)
        found[name] = (int(parts), int(replicas), pairs)
    return found


def listed_acls(cluster: KafkaCluster) -> set[tuple[str, str, str, str, str]]:
    """Kafka's `kafka-acls --list`: (principal, resource type, name, pattern, operation)."""
    out = run_tool(ACL_COMMAND, "--bootstrap-server", cluster.bootstrap, "--list").stdout
    acls = set()
    resource = None
    for line in out.splitlines():
        head = re.search(r"resourceType=(\w+), name=([^,]+), patternType=(\w+)", line)
        if head:
            resource = head.groups()
            continue
        entry = re.search(
            r"principal=([^,]+), host=\*, operation=(\w+), permissionType=ALLOW", line
        )
        if entry and resource:
            acls.add((entry[1], resource[0], resource[1], resource[2], entry[2]))
    return acls


EXPECTED_ACLS = {
    ("User:api", "TOPIC", "zones", "LITERAL", "WRITE"),
    ("User:api", "TOPIC", "zones", "LITERAL", "DESCRIBE"),
    ("User:reader", "TOPIC", "zones", "LITERAL", "READ"),
    ("User:reader", "TOPIC", "zones", "LITERAL", "DESCRIBE"),
    ("User:reader", "GROUP", "edge-", "PREFIXED", "READ"),
    ("User:api", "TOPIC", "audit", "LITERAL", "WRITE"),
    ("User:api", "TOPIC", "audit", "LITERAL", "DESCRIBE"),
    ("User:reader", "TOPIC", "audit", "LITERAL", "WRITE"),
    ("User:reader", "TOPIC", "audit", "LITERAL", "DESCRIBE"),
    ("User:reader", "TOPIC", "replay", "LITERAL", "READ"),
    ("User:reader", "TOPIC", "replay", "LITERAL", "DESCRIBE"),
    ("User:reader", "GROUP", "replay-", "PREFIXED", "READ"),
}
EXPECTED_TOPICS = {
    "zones": (3, 3, {"cleanup.policy": "delete", "retention.ms": "86400000"}),
    "configs": (2, 3, {"cleanup.policy": "compact", "min.insync.replicas": "2"}),
    "audit": (1, 3, {"cleanup.policy": "delete", "retention.ms": "3600000",
                     "retention.bytes": "1048576"}),
    "billing": (4, 3, {"cleanup.policy": "delete", "segment.bytes": "10485760"}),
    "replay": (6, 3, {"cleanup.policy": "delete"}),
}  # fmt: skip


#: What `--describe` shows of the brokers' own settings on every topic (harness.cluster).
BROKER_CONFIGS = {"min.insync.replicas": "2", "unclean.leader.election.enable": "false"}


def catalog_topics(cluster: KafkaCluster) -> dict[str, tuple[int, int, dict[str, str]]]:
    """The catalog's topics as `--describe` shows them, with the brokers' own settings taken
    out unless the catalog sets them."""
    return {
        name: (parts, replicas, configs)
        for name, (parts, replicas, shown) in described(cluster).items()
        if name in EXPECTED_TOPICS
        for declared in [EXPECTED_TOPICS[name][2]]
        for configs in [
            {k: v for k, v in shown.items() if k in declared or BROKER_CONFIGS.get(k) != v}
        ]
    }


def test_apply_plan_and_refusals(cluster: KafkaCluster, tmp_path: Path) -> None:
    root = write_catalog(tmp_path / "catalog", CATALOG)
    assert topics_cmd(cluster, "plan", root)[0] == 3

    code, out = topics_cmd(cluster, "apply", root)
    assert code == 0, out
    assert catalog_topics(cluster) == EXPECTED_TOPICS
    assert listed_acls(cluster) == EXPECTED_ACLS

    code, out = topics_cmd(cluster, "apply", root)
    assert (code, out.splitlines()) == (0, ["no changes: the cluster matches",
                                            "applied 0 changes"])  # fmt: skip
    assert topics_cmd(cluster, "plan", root)[0] == 0

    # more partitions and another retention are applied
    grown = {**CATALOG, "zones": CATALOG["zones"].replace("partitions: 3", "partitions: 5")
             .replace("86400000", "7200000")}  # fmt: skip
    code, out = topics_cmd(cluster, "apply", write_catalog(root, grown))
    assert code == 0, out
    assert "~ topic zones: partitions 3 -> 5" in out
    expected = {**EXPECTED_TOPICS, "zones": (5, 3, {"cleanup.policy": "delete",
                                                    "retention.ms": "7200000"})}  # fmt: skip
    assert catalog_topics(cluster) == expected

    # fewer partitions and another type are refused; nothing else of the catalog is applied
    hostile = {
        **grown,
        "configs": CATALOG["configs"].replace("partitions: 2", "partitions: 1"),
        "billing": CATALOG["billing"].replace(CONFIGS, ZONES),
        "audit": CATALOG["audit"].replace("3600000", "60000"),
    }
    code, out = topics_cmd(cluster, "apply", write_catalog(root, hostile))
    assert code == 1, out
    assert "! refused: topic configs: partitions 2 -> 1: Kafka cannot remove partitions" in out
    assert f"! refused: topic billing: type {CONFIGS} -> {ZONES}" in out
    assert "nothing applied: the cluster is unchanged" in out
    assert catalog_topics(cluster) == expected
    assert listed_acls(cluster) == EXPECTED_ACLS
    assert topics_cmd(cluster, "plan", root)[0] == 1

    # an ACL taken out of the catalog is deleted
    write_catalog(root, {**grown, "audit": CATALOG["audit"].replace(", User:reader", "")})
    code, out = topics_cmd(cluster, "apply", root)
    assert code == 0, out
    gone = {("User:reader", "TOPIC", "audit", "LITERAL", op) for op in ("WRITE", "DESCRIBE")}
    assert listed_acls(cluster) == EXPECTED_ACLS - gone

    # over SASL, a principal without the operator's permissions is told what it lacks
    env = connector_env(PROTO_DESCRIPTOR_SET=str(EDGE_DESCRIPTORS), **sasl_env(cluster, "api"))
    done = run_connector("topics", "plan", str(root), env=env)
    assert done.returncode == 1, done.stderr
    assert "not authorized: DESCRIBE on topic" in done.stderr
    assert "denied to user 'api'" in done.stderr


PRODUCER_CATALOG = {
    "events": topic_file("events", ZONES, 3, "acls: {produce: [User:api]}\n"),
    "settings": topic_file("settings", CONFIGS, 1, "acls: {produce: [User:api]}\n"),
}


def test_producer_library_on_acls(cluster: KafkaCluster, tmp_path: Path) -> None:
    """Typed sends through ACLs: a wrong type refused before sending, a principal without
    the ACL refused naming the topic and the operation, 10,000 records read back by a
    connector that knows their type from TOPIC_CATALOG alone."""
    root = write_catalog(tmp_path / "catalog", PRODUCER_CATALOG)
    code, out = topics_cmd(cluster, "apply", root, "--record-topic", "_producer_catalog")
    assert code == 0, out
    events = list(zone_events(COUNT))

    async def scenario() -> None:
        env = {**sasl_env(cluster, "api"), "TOPIC_CATALOG": str(root)}
        async with Producer.from_env(env) as producer:
            with pytest.raises(TypeError) as wrong:
                await producer.send("events", EdgeZoneConfig(zone_id="z"))
            assert str(wrong.value) == f"topic 'events' carries {ZONES} only; got a {CONFIGS}"
            for event in events:
                await producer.submit("events", event.message, key=event.key)
            await producer.flush()
        # the idempotent producer asks for a producer id at start: refused there already
        stranger = Producer.from_env({**env, **sasl_env(cluster, "stranger")})
        with pytest.raises(FatalError) as denied:
            async with stranger:
                await stranger.send("events", events[0].message, key=b"z")
        assert (
            "producer: not authorized: WRITE on topic 'events', 'settings' denied to user "
            "'stranger'" in str(denied.value)
        )

    asyncio.run(scenario())

    store = tmp_path / "kv"
    env = connector_env(
        CONNECTOR_NAME="catalog-reader",
        TOPICS="events",
        TOPIC_CATALOG=str(root),
        PROTO_DESCRIPTOR_SET=str(EDGE_DESCRIPTORS),
        TRANSFORMS="pf_edge",
        KAFKA_BOOTSTRAP_SERVERS=cluster.bootstrap,
        KV_URL=f"lmdb:{store}",
        KV_SYNC="false",
    )
    assert "TOPIC_SCHEMAS" not in env
    done = run_connector("run", "--until-caught-up", env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"caught up: {COUNT}/{COUNT} records" in done.stderr
    assert read_lmdb(store) == expected_store(events)


def sasl_env(cluster: KafkaCluster, user: str) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": ",".join(cluster.sasl.values()),  # type: ignore[attr-defined]
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_MECHANISM": "PLAIN",
        "KAFKA_SASL_USERNAME": user,
        "KAFKA_SASL_PASSWORD": USERS[user],
    }
