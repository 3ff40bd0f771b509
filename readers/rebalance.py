"""The Kafka reader's rebalance listener: the runner first, then a line and a count.

Revoked partitions go to the runner's `on_revoke` before they are given away (the batch in
flight is written and committed by its owner). Each change of this member's partitions is
logged and counted in `connector_rebalances_total` by kind (assigned, revoked, lost); a
rebalance that changes nothing (the first join revokes nothing) is neither.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiokafka import ConsumerRebalanceListener, TopicPartition

from connectors import OnRevoke, metrics

_log = logging.getLogger("connectors.readers.kafka")


class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Hands revoked partitions to the runner first; logs and counts each change of this
    member's partitions (`connector_rebalances_total` by kind), none when nothing changed:
    the first join revokes nothing."""

    def __init__(
        self,
        on_revoke: OnRevoke,
        on_assign: Callable[[set[TopicPartition]], Awaitable[None]],
        connector: str,
        member: Callable[[], bool],
    ):
        self._on_revoke = on_revoke
        self._on_assign = on_assign
        self._connector = connector
        self._member = member
        #: Counts revocations: a batch being gathered across one is given up (see the
        #: reader's `_fetch`).
        self.generation = 0

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.generation += 1
        if revoked:
            kind = "revoked" if self._member() else "lost"
            if kind == "lost":
                _log.warning(
                    "partitions lost: %s (this member fell out of the group; their new "
                    "owner reads them from the last commit)",
                    _names(revoked),
                )
            metrics.REBALANCES.labels(self._connector, kind).inc()
        await self._on_revoke([(tp.topic, tp.partition) for tp in revoked])

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if assigned:
            _log.info("assigned %s", _names(assigned))
            metrics.REBALANCES.labels(self._connector, "assigned").inc()
        await self._on_assign(assigned)


def _names(partitions: set[TopicPartition]) -> list[str]:
    return sorted(f"{tp.topic}[{tp.partition}]" for tp in partitions)
