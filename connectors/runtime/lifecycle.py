"""The connector's own lines at its start and its end, each one line with its fields.

`started`: what runs, as one pipeline summary (topics -> types -> transforms -> writer, and
the group), so the first line of a log says which connector it is without `connector check`.
`stopped`: why it ended (stop requested, caught up, a fatal error), how many records it
committed, the offsets it committed last per partition and the exit code the process leaves
with: the last line of a log answers "did it finish, and where".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from connectors.config.pipeline import Pipeline
from connectors.core.errors import FatalError
from connectors.runtime.instruments import Instruments

__all__ = ["running", "started", "summary"]

_log = logging.getLogger("connectors.runtime.lifecycle")


def summary(pipeline: Pipeline) -> str:
    """`topics a, b -> types x.A, y.B -> transforms t1, t2 -> writer kv, group g`."""
    bound = pipeline.schemas.items()
    topics = ", ".join(topic for topic, _ in bound)
    types = ", ".join(schema.type_name for _, schema in bound)
    transforms = ", ".join(pipeline.chain.names) or "none"
    return (
        f"topics {topics} -> types {types} -> transforms {transforms} -> writer "
        f"{pipeline.writer.name}, group {pipeline.group_id}"
    )


def started(pipeline: Pipeline) -> None:
    _log.info(
        "started: %s",
        summary(pipeline),
        extra={
            "topics": [topic for topic, _ in pipeline.schemas.items()],
            "transforms": list(pipeline.chain.names),
            "writer": pipeline.writer.name,
            "group": pipeline.group_id,
        },
    )


def _committed(offsets: dict[tuple[str, int], int]) -> str:
    if not offsets:
        return "nothing committed"
    return "committed " + " ".join(f"{t}[{p}]={o}" for (t, p), o in sorted(offsets.items()))


def _stopped(reason: str, instruments: Instruments, code: int) -> None:
    offsets = dict(instruments.last_committed)
    fields: dict[str, Any] = {
        "reason": reason,
        "records": instruments.records_committed,
        "committed": {f"{t}[{p}]": o for (t, p), o in sorted(offsets.items())},
        "exit_code": code,
    }
    _log.info(
        "stopped: %s; %d records processed, %s; exit code %d",
        reason,
        instruments.records_committed,
        _committed(offsets),
        code,
        extra=fields,
    )


@contextmanager
def running(
    instruments: Instruments, stopping: asyncio.Event, caught_up: Callable[[], bool]
) -> Iterator[None]:
    """Log the `stopped` line however the block ends, with the exit code it leads to."""
    try:
        yield
    except FatalError as exc:
        _stopped(f"fatal: {exc}", instruments, 1)
        raise
    except asyncio.CancelledError:
        reason = "stop requested; the batch in flight was abandoned after SHUTDOWN_GRACE_S"
        _stopped(reason, instruments, 0)
        raise
    except Exception as exc:
        _stopped(f"failed: {type(exc).__name__}: {exc}", instruments, 1)
        raise
    if stopping.is_set():
        _stopped("stop requested", instruments, 0)
    else:
        _stopped("caught up" if caught_up() else "reader finished", instruments, 0)
