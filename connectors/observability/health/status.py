"""What the health server needs from the running pipeline, and the bridge to its thread.

The server runs on a thread and event loop of its own (see `server`), so it reaches the
pipeline only through `PipelineStatus`. `RunnerStatus` implements it over a runner that
lives on another loop: coroutine calls are shipped to that loop and bounded by a timeout,
and `activity()` is read directly, without the pipeline's loop, because a transform that
hogs that loop is exactly what it must reveal.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from connectors.config.pipeline import Pipeline
from connectors.config.settings import KafkaSettings
from connectors.core.reader import Reader
from connectors.core.records import TopicPartition
from connectors.core.writer import Writer, flush_policy
from connectors.observability.health.judge import Waiting
from connectors.observability.health.recent import Recent

__all__ = ["Activity", "PipelineStatus", "Running", "RunnerStatus", "outline"]

_log = logging.getLogger("connectors.observability.health")
T = TypeVar("T")

#: The stage running now ("decode", "transform", "write", "dead_letter", "commit"), or
#: None when idle or polling, and the `time.monotonic()` at which it began.
Activity = tuple[str | None, float]


class PipelineStatus(Protocol):
    """The running pipeline as the health server sees it.

    The coroutines are awaited on the health server's loop, not the pipeline's; an
    implementation must make that safe (`RunnerStatus` does) and may raise TimeoutError.
    `activity()` is called from the health server's thread and must not need the
    pipeline's loop. `commit_interval_s` is the longest the pipeline may legitimately go
    without a commit while behind (a writer's flush interval), 0 when it commits every
    batch.
    """

    @property
    def connector(self) -> str: ...

    @property
    def group_id(self) -> str: ...

    @property
    def kafka(self) -> KafkaSettings:
        """The pipeline's Kafka settings, so the probes connect exactly as it does (TLS,
        SASL) and a refusal names the same principal."""

    @property
    def commit_interval_s(self) -> float: ...

    def activity(self) -> Activity: ...

    def blocked(self) -> Waiting | None:
        """The call waiting to be retried now, if any; from the health server's thread."""

    @property
    def joined(self) -> bool:
        """Whether the pipeline's consumer has started (a member of its group, holding
        partitions or not)."""

    async def assignment(self) -> set[TopicPartition]: ...

    async def writer_check(self) -> None: ...

    @property
    def outline(self) -> dict[str, Any]:
        """The pipeline for the status page: topics with their types, the transforms,
        the writer (`outline()`)."""

    def recent(self) -> dict[str, Any]:
        """Records processed, records/s and the last dead letters (`Recent.snapshot`);
        from the health server's thread."""


def outline(pipeline: Pipeline) -> dict[str, Any]:
    """What the status page draws: topics -> types -> transforms -> writer."""
    steps = zip(pipeline.chain.names, pipeline.chain.kinds, strict=True)
    return {
        "reader": pipeline.reader.name,
        "topics": [
            {"topic": topic, "type": schema.type_name} for topic, schema in pipeline.schemas.items()
        ],
        "transforms": [{"name": name, "kind": kind} for name, kind in steps],
        "writer": pipeline.writer.name,
        "dead_letters": pipeline.dlq_topic if pipeline.runtime.on_error == "dlq" else None,
    }


class Running(Protocol):
    """What `RunnerStatus.of` takes from the runner (`connectors.runtime.runner.Runner`),
    named here so that observability does not import the runtime above it."""

    @property
    def pipeline(self) -> Pipeline: ...

    @property
    def reader(self) -> Reader: ...

    @property
    def writer(self) -> Writer: ...

    def activity(self) -> Activity:
        """Safe to call from any thread: it reads one tuple the loop replaces whole."""

    def blocked(self) -> Waiting | None:
        """Safe to call from any thread, as `activity`."""

    @property
    def recent(self) -> Recent:
        """Safe to read from any thread."""


class RunnerStatus:
    """A `PipelineStatus` over a runner whose reader and writer live on another loop.

    Calls are shipped to that loop and bounded by `timeout_s`; if the loop does not answer
    (a blocked transform, a wedged write), the last assignment seen is used, so the offset
    check still runs and can call the partitions stuck.
    """

    def __init__(
        self, runner: Running, loop: asyncio.AbstractEventLoop, timeout_s: float = 5.0
    ) -> None:
        pipeline = runner.pipeline
        self._runner = runner
        self._loop = loop
        self._timeout_s = timeout_s
        self._last_assignment: set[TopicPartition] = set()
        self._answering = True
        self.joined = False
        self.connector = pipeline.name
        self.group_id = pipeline.group_id
        self.kafka = pipeline.kafka
        policy = flush_policy(runner.writer)
        self.commit_interval_s = policy.max_interval_s if policy is not None else 0.0
        self.outline = outline(pipeline)

    @classmethod
    def of(cls, runner: Running, timeout_s: float = 5.0) -> RunnerStatus:
        """Call from the runner's own loop, before or while it runs."""
        return cls(runner, asyncio.get_running_loop(), timeout_s)

    def activity(self) -> Activity:
        return self._runner.activity()

    def blocked(self) -> Waiting | None:
        return self._runner.blocked()

    def recent(self) -> dict[str, Any]:
        return self._runner.recent.snapshot()

    async def _on_pipeline(self, call: Callable[[], Awaitable[T]]) -> T:
        async def run() -> T:
            return await call()

        if self._loop.is_closed():
            raise TimeoutError("the pipeline has stopped")
        coro = run()
        try:
            future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        except RuntimeError as exc:  # the loop closed meanwhile
            coro.close()
            raise TimeoutError("the pipeline has stopped") from exc
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self._timeout_s)
        except TimeoutError:
            future.cancel()
            raise

    async def assignment(self) -> set[TopicPartition]:
        reader = self._runner.reader

        async def read() -> set[TopicPartition]:
            try:
                found = set(reader.assignment())
            except RuntimeError:  # not started yet, or already closed
                self.joined = False
                return set()
            self.joined = True
            return found

        try:
            self._last_assignment = await self._on_pipeline(read)
            self._answering = True
        except TimeoutError:
            if self._answering:  # once per episode, not once per probe
                _log.warning(
                    "pipeline did not answer in %.1fs; using its last assignment",
                    self._timeout_s,
                )
            self._answering = False
        return set(self._last_assignment)

    async def writer_check(self) -> None:
        await self._on_pipeline(self._runner.writer.check)
