"""The decisions of `/healthz`, as pure functions of offsets, activity and time.

Per partition, the consumer check that Cloudflare describes for its Kafka connectors
("Tales of Kafka at Cloudflare", InfoQ): compare the committed offset with the end offset
and with the previous look. One change: "did not move since the previous check" becomes
"did not move for `stuck_after_s` while behind", so how often something probes cannot make
a slow consumer look stuck.

Per process, a stage (decode, transform, write, dead-letter, commit) that has run for
longer than the wedge deadline is *wedged*. That is seen even before any partition is
assigned or any offset exists: a transform that hangs in the first batch leaves nothing
behind for the offset check to find. A stage that is waiting to retry a call that failed
retriably (the writer's target down, a transform's lookup answering 503, the broker
unreachable) is *blocked* instead: it is waiting on the outside, which a restart cannot
cure, so it is reported (partitions behind it are `blocked`, with the reason) but does
not fail liveness. An attempt of such a call that itself runs past the deadline is wedged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

__all__ = [
    "HEALTHY",
    "Blocked",
    "Observation",
    "PartitionHealth",
    "Reason",
    "Waiting",
    "Wedged",
    "blocked",
    "judge",
    "wedged",
]

Reason = Literal[
    "idle", "progressing", "stuck", "blocked", "offsets_unavailable", "offsets_refused"
]
HEALTHY: frozenset[str] = frozenset({"idle", "progressing"})


@dataclass(frozen=True, slots=True)
class Observation:
    """What the previous look at one partition saw.

    `behind_since` is when the committed offset was last seen to move (or work first seen)
    while behind the end; None when the partition was caught up.
    """

    committed: int | None
    behind_since: float | None


def judge(
    previous: Observation | None,
    committed: int | None,
    end: int | None,
    now: float,
    stuck_after_s: float,
) -> tuple[Reason, Observation | None]:
    """The reason code for one partition, and what to remember for the next look.

    No end offset: `offsets_unavailable`. Committed at (or past) the end, or an empty
    partition never committed: `idle`. Behind: `progressing` while the committed offset
    moved within `stuck_after_s` (a first look, or work that just appeared, gets that
    long), `stuck` after.
    """
    if end is None:
        return "offsets_unavailable", previous
    caught_up = committed >= end if committed is not None else end == 0
    if caught_up:
        return "idle", Observation(committed, None)
    if previous is None or previous.behind_since is None or previous.committed != committed:
        return "progressing", Observation(committed, now)
    if now - previous.behind_since >= stuck_after_s:
        return "stuck", previous
    return "progressing", previous


@dataclass(frozen=True, slots=True)
class PartitionHealth:
    topic: str
    partition: int
    reason: Reason
    committed: int | None
    end: int | None
    unchanged_for_s: float | None = None

    @property
    def healthy(self) -> bool:
        return self.reason in HEALTHY

    @property
    def lag(self) -> int | None:
        if self.end is None or self.committed is None:
            return None
        return max(0, self.end - self.committed)

    def as_dict(self) -> dict[str, Any]:
        unchanged = None if self.unchanged_for_s is None else round(self.unchanged_for_s, 3)
        return {
            "topic": self.topic,
            "partition": self.partition,
            "reason": self.reason,
            "committed": self.committed,
            "end": self.end,
            "lag": self.lag,
            "unchanged_for_s": unchanged,
        }


@dataclass(frozen=True, slots=True)
class Wedged:
    """A stage of the pipeline that has been running for `for_s` seconds."""

    stage: str
    for_s: float

    def as_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "for_s": round(self.for_s, 1)}


class Waiting(Protocol):
    """A call of the pipeline waiting to be retried (the runtime's `Retrier.waiting`)."""

    @property
    def stage(self) -> str: ...

    @property
    def reason(self) -> str: ...

    @property
    def since(self) -> float: ...

    @property
    def attempt_started(self) -> float | None: ...


@dataclass(frozen=True, slots=True)
class Blocked:
    """A stage waiting on a dependency for `for_s` seconds; `reason` is its last failure."""

    stage: str
    reason: str
    for_s: float

    def as_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "reason": self.reason, "for_s": round(self.for_s, 1)}


def blocked(waiting: Waiting | None, now: float) -> Blocked | None:
    if waiting is None:
        return None
    return Blocked(waiting.stage, waiting.reason, now - waiting.since)


def wedged(
    activity: tuple[str | None, float],
    now: float,
    stuck_after_s: float,
    waiting: Waiting | None = None,
) -> Wedged | None:
    """The stage running for `stuck_after_s` or longer, from the pipeline's `activity()`
    (the stage running now, or None when idle or polling, and when it began); None when
    the pipeline is idle, polling, or within its time. While a call waits to be retried
    (`waiting`), only its current attempt's time counts: waiting is not wedged."""
    stage, since = activity
    if waiting is not None:
        if waiting.attempt_started is None:
            return None
        stage, since = stage or waiting.stage, waiting.attempt_started
    if stage is None:
        return None
    running_for = now - since
    return Wedged(stage, running_for) if running_for >= stuck_after_s else None
