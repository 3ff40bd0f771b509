"""What `connector topics apply` would change: the catalog against the cluster, as data.

The cluster's state comes in as plain data (`ClusterState`, read by
`connectors.kafka.admin`), so the diff is computed, rendered and tested without a broker.

A topic's type is not a Kafka topic config (brokers refuse unknown keys); `apply` records
each catalog topic's type and consumer group prefixes in a compacted topic of its own
(`_connector_catalog` by default), and `ClusterState.recorded` is what it holds. A type
change is seen against that record. Topics without a record (made before the catalog, or
by hand) are adopted: their type is recorded at the next apply.

Refused, with one line each, unless a flag allows it: changing a recorded type
(`--allow-type-change`), deleting a recorded topic that left the catalog
(`--allow-delete`). Refused always (Kafka cannot do them in place): fewer partitions, a
different replication factor.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from connectors.config.catalog.load import Catalog
from connectors.config.catalog.model import TopicSpec

LITERAL, PREFIXED = "literal", "prefixed"


@dataclass(frozen=True, order=True, slots=True)
class AclBinding:
    """One ALLOW ACL for any host: `principal` may `operation` on `resource` `name`."""

    principal: str
    resource: str  # "topic" or "group"
    name: str
    pattern: str  # LITERAL or PREFIXED
    operation: str  # READ, WRITE, DESCRIBE

    def __str__(self) -> str:
        pattern = "" if self.pattern == LITERAL else f" (names starting {self.name!r})"
        return f"acl {self.principal} {self.operation} {self.resource} {self.name}{pattern}"


@dataclass(frozen=True, slots=True)
class Recorded:
    """What the last apply recorded about a topic: its type and consumer group prefixes."""

    type: str
    groups: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TopicState:
    name: str
    partitions: int
    replication: int
    configs: dict[str, str]  # the topic's own overrides, not broker defaults


@dataclass
class ClusterState:
    """The part of a cluster a catalog manages."""

    topics: dict[str, TopicState] = field(default_factory=dict)
    acls: set[AclBinding] = field(default_factory=set)
    recorded: dict[str, Recorded] = field(default_factory=dict)
    #: False when the brokers run no authorizer: there are no ACLs to read or write.
    authorizer: bool = True


@dataclass(frozen=True, slots=True)
class Change:
    """One step of the plan. `kind`: create, partitions, configs, acl+, acl-, record, delete."""

    kind: str
    topic: str
    text: str
    spec: TopicSpec | None = None
    acl: AclBinding | None = None
    partitions: int = 0
    configs: dict[str, str] | None = None


@dataclass
class Plan:
    changes: list[Change] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def render(self) -> str:
        lines = [f"# {note}" for note in self.notes]
        lines += [change.text for change in self.changes]
        lines += [f"! refused: {reason}" for reason in self.refused]
        counts = f"{len(self.changes)} changes pending, {len(self.refused)} refused"
        pending = self.changes or self.refused
        return "\n".join([*lines, counts if pending else "no changes: the cluster matches"])


def desired_acls(spec: TopicSpec) -> set[AclBinding]:
    """The ACLs a topic's file grants: producers WRITE and DESCRIBE the topic; consumers
    READ and DESCRIBE it, and READ the consumer groups named with their prefix."""
    acls = set()
    for who in spec.acls.produce:
        for op in ("WRITE", "DESCRIBE"):
            acls.add(AclBinding(who, "topic", spec.name, LITERAL, op))
    for consumer in spec.acls.consume:
        for op in ("READ", "DESCRIBE"):
            acls.add(AclBinding(consumer.principal, "topic", spec.name, LITERAL, op))
        acls.add(AclBinding(consumer.principal, "group", consumer.group_prefix, PREFIXED, "READ"))
    return acls


def group_prefixes(spec: TopicSpec) -> tuple[str, ...]:
    return tuple(sorted({c.group_prefix for c in spec.acls.consume}))


def managed_groups(catalog: Catalog, state: ClusterState) -> set[str]:
    """Group prefixes whose ACLs the catalog owns: declared now or recorded before."""
    groups = {g for spec in catalog for g in group_prefixes(spec)}
    return groups | {g for r in state.recorded.values() for g in r.groups}


def plan(
    catalog: Catalog,
    state: ClusterState,
    *,
    allow_type_change: bool = False,
    allow_delete: bool = False,
) -> Plan:
    """The changes that make `state` match `catalog`, and those refused."""
    result = Plan()
    for spec in catalog:
        current = state.topics.get(spec.name)
        if current is None:
            result.changes.append(_create(spec))
        else:
            _existing(spec, current, result)
        _record(spec, state.recorded.get(spec.name), allow_type_change, result)
    _acls(catalog, state, result)
    for name in sorted(set(state.recorded) - set(catalog.topics)):
        if name not in state.topics:
            result.changes.append(Change("unrecord", name, f"- record {name} (topic gone)"))
        elif allow_delete:
            result.changes.append(Change("delete", name, f"- topic {name} (not in the catalog)"))
        else:
            result.refused.append(
                f"topic {name}: no longer in the catalog; deleting it needs --allow-delete"
            )
    return result


def _create(spec: TopicSpec) -> Change:
    configs = ", ".join(f"{k}={v}" for k, v in spec.topic_configs().items())
    return Change(
        "create",
        spec.name,
        f"+ topic {spec.name}: {spec.partitions} partitions, replication {spec.replication}, "
        f"{configs}",
        spec=spec,
    )


def _existing(spec: TopicSpec, current: TopicState, result: Plan) -> None:
    name = spec.name
    if spec.partitions < current.partitions:
        result.refused.append(
            f"topic {name}: partitions {current.partitions} -> {spec.partitions}: Kafka cannot "
            "remove partitions (make a new topic)"
        )
    elif spec.partitions > current.partitions:
        result.changes.append(
            Change(
                "partitions",
                name,
                f"~ topic {name}: partitions {current.partitions} -> {spec.partitions}",
                partitions=spec.partitions,
            )
        )
    if spec.replication != current.replication:
        result.refused.append(
            f"topic {name}: replication {current.replication} -> {spec.replication}: not "
            "changed in place (reassign its partitions with kafka-reassign-partitions)"
        )
    wanted, have = spec.topic_configs(), current.configs
    diffs = [f"{k} {have[k]} -> {v}" for k, v in wanted.items() if k in have and have[k] != v]
    diffs += [f"+{k}={v}" for k, v in wanted.items() if k not in have]
    diffs += [f"-{k} (was {have[k]})" for k in sorted(set(have) - set(wanted))]
    if diffs:
        result.changes.append(
            Change("configs", name, f"~ topic {name}: config {', '.join(diffs)}", configs=wanted)
        )


def _record(
    spec: TopicSpec, recorded: Recorded | None, allow_type_change: bool, result: Plan
) -> None:
    wanted = Recorded(spec.type, group_prefixes(spec))
    if recorded == wanted:
        return
    if recorded is not None and recorded.type != spec.type:
        if not allow_type_change:
            result.refused.append(
                f"topic {spec.name}: type {recorded.type} -> {spec.type}: readers of the topic "
                "would misread its records (make a new topic, or --allow-type-change)"
            )
            return
        text = f"~ record {spec.name}: type {recorded.type} -> {spec.type}"
    else:
        text = f"= record {spec.name}: type {spec.type}"
        if wanted.groups:
            text += f", groups {', '.join(wanted.groups)}"
    result.changes.append(Change("record", spec.name, text, spec=spec))


def _acls(catalog: Catalog, state: ClusterState, result: Plan) -> None:
    wanted = {acl for spec in catalog for acl in desired_acls(spec)}
    if not state.authorizer:
        if wanted:
            result.notes.append(
                f"the brokers run no authorizer: {len(wanted)} ACLs of the catalog not applied"
            )
        return
    groups = managed_groups(catalog, state)
    owned = {
        acl
        for acl in state.acls
        if (acl.resource == "topic" and acl.pattern == LITERAL and acl.name in catalog.topics)
        or (acl.resource == "group" and acl.pattern == PREFIXED and acl.name in groups)
    }
    for acl in sorted(wanted - owned):
        result.changes.append(Change("acl+", acl.name, f"+ {acl}", acl=acl))
    for acl in sorted(owned - wanted):
        result.changes.append(Change("acl-", acl.name, f"- {acl}", acl=acl))
