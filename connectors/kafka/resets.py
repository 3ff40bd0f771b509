"""Offset resets aiokafka performs on its own, reported to the reader.

When the position of a partition is no longer in the log (records deleted by retention or
`kafka-delete-records`, or a topic deleted and created again), aiokafka resets it by
`auto_offset_reset` and says so in one INFO line, which a WARNING-level log drops: records
were skipped and nobody is told. Its partition state is wrapped here so that each reset of
a position (not the first positioning of a new assignment) is queued with the partition,
the old position and the new one, whatever the log level; the reader logs a WARNING and
counts it.
"""

from __future__ import annotations

from collections import deque
from typing import Any, NamedTuple

from aiokafka.consumer import subscription_state


class Reset(NamedTuple):
    topic: str
    partition: int
    old: int
    new: int


#: Resets not yet reported, oldest first (a process runs one consumer).
PENDING: deque[Reset] = deque(maxlen=10_000)
_FROM = "_connectors_reset_from"
_WRAPPED = "_connectors_resets_reported"


def _partition_of(state: Any) -> Any:
    assignment = state._assignment  # noqa: SLF001
    for tp in assignment.tps:
        if assignment.state_value(tp) is state:
            return tp
    return None


def install() -> None:
    """Wrap `TopicPartitionState.await_reset` and `reset_to` (idempotent)."""
    state_class: Any = subscription_state.TopicPartitionState
    if getattr(state_class, _WRAPPED, False):
        return
    await_reset, reset_to = state_class.await_reset, state_class.reset_to

    def awaiting(self: Any, strategy: int) -> None:
        position = self._position  # noqa: SLF001
        await_reset(self, strategy)
        if position is not None:
            setattr(self, _FROM, position)

    def reset(self: Any, position: int) -> None:
        reset_to(self, position)
        old = getattr(self, _FROM, None)
        if old is None:
            return
        setattr(self, _FROM, None)
        tp = _partition_of(self)
        if tp is not None:
            PENDING.append(Reset(tp.topic, tp.partition, int(old), int(position)))

    state_class.await_reset = awaiting
    state_class.reset_to = reset
    setattr(state_class, _WRAPPED, True)
