"""A consumer group as its coordinator describes it: state, members, their partitions.

For `connector status`: read with an admin client that joins nothing, so looking at a
group never rebalances it. The members' assignments are the consumer protocol's bytes,
decoded with aiokafka's own schema. Failures go through the one translation
(`connectors.kafka.errors`), as every other client's.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiokafka import errors as kafka_errors
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

from connectors.config.settings import KafkaSettings
from connectors.core.errors import ConnectorError
from connectors.core.records import TopicPartition
from connectors.kafka.errors import Where, translate
from connectors.kafka.options import client_options

__all__ = ["Group", "Member", "describe_group"]


@dataclass(frozen=True, slots=True)
class Member:
    """One member of the group; `host` is the client's address as the coordinator saw it."""

    member_id: str
    client_id: str
    host: str
    partitions: tuple[TopicPartition, ...]


@dataclass(frozen=True, slots=True)
class Group:
    """`state` is the coordinator's word (Stable, PreparingRebalance, Empty, Dead...)."""

    group_id: str
    state: str
    members: tuple[Member, ...]


def _partitions(raw: bytes) -> tuple[TopicPartition, ...]:
    if not raw:  # a member between join and sync has no assignment yet
        return ()
    assignment = ConsumerProtocolMemberAssignment.decode(raw)
    return tuple(sorted((topic, p) for topic, parts in assignment.assignment for p in parts))


def _member(fields: tuple[Any, ...]) -> Member:
    """A member from its DescribeGroups fields: v4 and later add the instance id second."""
    if len(fields) >= 6:
        member_id, _instance, client_id, host, _metadata, assignment = fields[:6]
    else:
        member_id, client_id, host, _metadata, assignment = fields[:5]
    return Member(str(member_id), str(client_id), str(host).lstrip("/"), _partitions(assignment))


async def describe_group(
    settings: KafkaSettings, group_id: str, client_id: str, timeout_s: float
) -> Group:
    """The group's state and members, within `timeout_s`; a ConnectorError naming what to
    fix if the brokers refuse or do not answer."""
    admin = AIOKafkaAdminClient(
        **client_options(settings), client_id=client_id, request_timeout_ms=int(timeout_s * 1000)
    )

    async def call() -> Group:
        await admin.start()
        (response,) = await admin.describe_consumer_groups([group_id])
        code, found, state, _type, _protocol, members = response.groups[0][:6]
        if code:
            raise kafka_errors.for_code(code)(f"describe group {found}")
        return Group(str(found), str(state), tuple(_member(m) for m in members))

    try:
        return await asyncio.wait_for(call(), timeout_s)
    except ConnectorError:
        raise
    except Exception as exc:
        where = Where("kafka: describe the group", settings, operation="DESCRIBE", group=group_id)
        raise translate(exc, where) from exc
    finally:
        await admin.close()
