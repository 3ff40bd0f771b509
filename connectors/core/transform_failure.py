"""What a transform's failure makes of its record: poison, a retry naming the transform, or
the process stopping (it ran out of memory or file descriptors, no record's fault)."""

from __future__ import annotations

from connectors.core.errors import ConnectorError, FatalError, PoisonError, RetriableError
from connectors.core.outputs import exhausted
from connectors.core.records import Record

__all__ = ["TransformRetriable", "failure"]


class TransformRetriable(RetriableError):
    """A transform's RetriableError, naming the transform and the reason (`http_503`,
    `timeout`, `connection`, or `retriable` when the transform raised it itself)."""

    def __init__(
        self, message: str, retry_after: float | None, *, transform: str, reason: str
    ) -> None:
        super().__init__(message, retry_after)
        self.transform = transform
        self.reason = reason


def failure(step: str, record: Record, exc: Exception) -> ConnectorError:
    """What a failing transform makes of its record: poison of stage `transform:<step>`,
    unless the process itself ran out of something (then nothing may be committed past it)
    or the transform said the record may pass if tried again (RetriableError, naming the
    transform and the record)."""
    where = f"{record.topic}[{record.partition}]@{record.offset}"
    if exhausted(exc):
        return FatalError(
            f"transform:{step} ran out of resources at {where} ({type(exc).__name__}: "
            f"{exc}); stopping, nothing committed past it"
        )
    if isinstance(exc, RetriableError):
        return TransformRetriable(
            f"transform:{step} at {where}: {exc}",
            exc.retry_after,
            transform=step,
            reason=getattr(exc, "reason", "retriable"),
        )
    return PoisonError(f"transform:{step}", f"{type(exc).__name__}: {exc}", record)
