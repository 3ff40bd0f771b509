"""What the runner gets when tracing is off: one shared object whose methods do nothing.

Nothing of OpenTelemetry is imported here, so a connector without tracing pays a few
attribute lookups per batch and no import time.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from connectors.core.records import Record, WriteBatch

__all__ = ["OFF", "BatchTrace"]


class _Nothing:
    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NOTHING = _Nothing()


class BatchTrace:
    """The spans of one batch. This base class is what the runner gets when tracing is off:
    every method returns at once and hands its input back unchanged."""

    __slots__ = ()
    active = False

    def __enter__(self) -> BatchTrace:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def stage(self, name: str) -> Any:
        """A context manager timing stage `name` as a child span of the batch."""
        return _NOTHING

    def summed(self, *stages: tuple[str, float]) -> None:
        """Spans for stages timed per record and summed, e.g. ("decode", 0.004)."""

    def carry(self, batch: WriteBatch) -> WriteBatch:
        """`batch` with each entry's headers carrying its source record's trace context.

        An entry without headers of its own gets its record's, as the Kafka writer would
        send them, with the trace headers replaced.
        """
        return batch

    def carry_record(self, record: Record) -> Record:
        """`record` with its headers carrying its trace context (for dead letters)."""
        return record

    def exemplar(self) -> dict[str, str] | None:
        """{"trace_id": ...} for a histogram observation, when this batch is sampled."""
        return None


OFF = BatchTrace()
