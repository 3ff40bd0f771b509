"""Health over HTTP on the metrics port: `/metrics`, `/livez`, `/readyz`, `/healthz`.

Why a thread and an event loop of its own: a transform that hogs the pipeline's loop, or a
write that never returns, must not also silence the endpoints that would reveal it. The
server, its Kafka clients and the offset sampler run apart from the pipeline and reach
into it only through `PipelineStatus`, every call bounded by a timeout.

Why separate Kafka clients: committed offsets are read with an admin client and end
offsets with a consumer that has no group, so no probe ever joins, leaves or rebalances
the group that the pipeline consumes in.

`/healthz` is the consumer check of Cloudflare's connector framework: per assigned
partition, compare the committed offset with the end offset and with the previous look.
One change: "did not move since the previous check" becomes "did not move for
`stuck_after_s` while behind", so how often something probes cannot make a slow consumer
look stuck. Each answer is 200 when healthy and 503 when not, with a JSON body of figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer
from aiokafka import TopicPartition as KafkaPartition
from aiokafka import errors as kafka_errors
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from connectors.config.observability import HealthSettings
from connectors.core.reader import Reader
from connectors.core.records import TopicPartition
from connectors.core.writer import Writer, flush_policy
from connectors.kafka import client_options
from connectors.observability import metrics

if TYPE_CHECKING:
    from connectors.runtime.runner import Runner

__all__ = [
    "HealthServer",
    "HealthSettings",
    "Observation",
    "PartitionHealth",
    "PipelineStatus",
    "Reason",
    "RunnerStatus",
    "judge",
]

_log = logging.getLogger("connectors.observability.health")
T = TypeVar("T")
Reason = Literal["idle", "progressing", "stuck", "offsets_unavailable"]
_HEALTHY: frozenset[str] = frozenset({"idle", "progressing"})
_BROKER_ERRORS = (kafka_errors.KafkaError, OSError, TimeoutError)


# -- the decision, a pure function ---------------------------------------------------------


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
        return self.reason in _HEALTHY

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


# -- what the health server needs from the pipeline ----------------------------------------


class PipelineStatus(Protocol):
    """The running pipeline as the health server sees it.

    The coroutines are awaited on the health server's loop, not the pipeline's; an
    implementation must make that safe (`RunnerStatus` does) and may raise TimeoutError.
    `commit_interval_s` is the longest the pipeline may legitimately go without a commit
    while behind (a writer's flush interval), 0 when it commits every batch.
    """

    @property
    def connector(self) -> str: ...

    @property
    def group_id(self) -> str: ...

    @property
    def kafka_options(self) -> dict[str, Any]:
        """aiokafka connection options (`connectors.kafka.client_options`): bootstrap
        servers, TLS and SASL, so the probes connect exactly as the pipeline does."""

    @property
    def commit_interval_s(self) -> float: ...

    async def assignment(self) -> set[TopicPartition]: ...

    async def writer_check(self) -> None: ...


class RunnerStatus:
    """A `PipelineStatus` over a reader and writer that live on another thread's loop.

    Calls are shipped to that loop and bounded by `timeout_s`; if the loop does not answer
    (a blocked transform, a wedged write), the last assignment seen is used, so the offset
    check still runs and can call the partitions stuck.
    """

    def __init__(
        self,
        reader: Reader,
        writer: Writer,
        *,
        connector: str,
        group_id: str,
        kafka_options: dict[str, Any],
        loop: asyncio.AbstractEventLoop,
        timeout_s: float = 5.0,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._loop = loop
        self._timeout_s = timeout_s
        self._last_assignment: set[TopicPartition] = set()
        self._answering = True
        self.connector = connector
        self.group_id = group_id
        self.kafka_options = kafka_options
        policy = flush_policy(writer)
        self.commit_interval_s = policy.max_interval_s if policy is not None else 0.0

    @classmethod
    def of(cls, runner: Runner, timeout_s: float = 5.0) -> RunnerStatus:
        """Call from the runner's own loop, before or while it runs."""
        pipeline = runner.pipeline
        return cls(
            runner.reader,
            runner.writer,
            connector=pipeline.name,
            group_id=pipeline.group_id,
            kafka_options=client_options(pipeline.kafka),
            loop=asyncio.get_running_loop(),
            timeout_s=timeout_s,
        )

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
        async def read() -> set[TopicPartition]:
            try:
                return set(self._reader.assignment())
            except RuntimeError:  # not started yet, or already closed
                return set()

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
        await self._on_pipeline(self._writer.check)


# -- offsets from the broker, outside the group --------------------------------------------


class OffsetsUnavailable(Exception):  # noqa: N818 - a state reported to the probe, not a bug
    """The broker did not give committed or end offsets in time."""


class BrokerOffsets:
    """Committed offsets of a group and end offsets, read without joining the group.

    Clients start on first use and are dropped after any failure, so a broker that comes
    back is found again without restarting the process.
    """

    def __init__(
        self, options: dict[str, Any], group_id: str, client_id: str, timeout_s: float
    ) -> None:
        self._options = options
        self._group_id = group_id
        self._client_id = client_id
        self._timeout_s = timeout_s
        self._admin: AIOKafkaAdminClient | None = None
        self._ends: AIOKafkaConsumer | None = None

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._admin is None:
            admin = AIOKafkaAdminClient(
                **self._options,
                client_id=self._client_id,
                request_timeout_ms=int(self._timeout_s * 1000),
            )
            self._admin = admin
            await admin.start()
        if self._ends is None:
            consumer = AIOKafkaConsumer(
                **self._options,
                client_id=self._client_id,
                group_id=None,
                enable_auto_commit=False,
                request_timeout_ms=int(self._timeout_s * 1000),
            )
            self._ends = consumer
            await consumer.start()
        return self._admin, self._ends

    async def _bounded(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await asyncio.wait_for(call(), self._timeout_s)
        except _BROKER_ERRORS as exc:
            await self.close()
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise OffsetsUnavailable(f"{what}: {detail}") from exc

    async def ping(self) -> None:
        async def call() -> None:
            admin, _ = await self._clients()
            await admin.list_topics()

        await self._bounded("list topics", call)

    async def fetch(
        self, partitions: set[TopicPartition]
    ) -> tuple[dict[TopicPartition, int | None], dict[TopicPartition, int]]:
        """(committed, end) per partition; committed is None where the group has none."""
        wanted = [KafkaPartition(t, p) for t, p in sorted(partitions)]

        async def call() -> tuple[dict[TopicPartition, int | None], dict[TopicPartition, int]]:
            admin, consumer = await self._clients()
            found = await admin.list_consumer_group_offsets(self._group_id, partitions=wanted)
            ends = await consumer.end_offsets(wanted)
            committed: dict[TopicPartition, int | None] = {}
            for tp in wanted:
                meta = found.get(tp)
                offset = None if meta is None else int(meta.offset)
                committed[(tp.topic, tp.partition)] = (
                    offset if offset is not None and offset >= 0 else None
                )
            return committed, {(tp.topic, tp.partition): int(o) for tp, o in ends.items()}

        return await self._bounded("read offsets", call)

    async def close(self) -> None:
        admin, consumer = self._admin, self._ends
        self._admin = self._ends = None
        if admin is not None:
            with contextlib.suppress(*_BROKER_ERRORS):
                await admin.close()
        if consumer is not None:
            with contextlib.suppress(*_BROKER_ERRORS):
                await consumer.stop()


# -- the consumer check ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConsumerReport:
    partitions: tuple[PartitionHealth, ...]
    error: str | None = None

    @property
    def healthy(self) -> bool:
        return all(p.healthy for p in self.partitions)


class ConsumerCheck:
    """The seed's consumer check over this process's partitions, remembering each look.

    Every run also refreshes the offset gauges (committed, end, lag) for exactly the
    partitions assigned now: series of partitions that moved to another pod are removed,
    so they cannot keep an alert firing here.
    """

    def __init__(
        self,
        status: PipelineStatus,
        offsets: BrokerOffsets,
        stuck_after_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._status = status
        self._offsets = offsets
        self._stuck_after_s = stuck_after_s
        self._clock = clock
        self._seen: dict[TopicPartition, Observation] = {}
        self._reasons: dict[TopicPartition, Reason] = {}
        self._exported: set[TopicPartition] = set()
        self._lock = asyncio.Lock()

    @property
    def stuck_after_s(self) -> float:
        return self._stuck_after_s

    async def run(self) -> ConsumerReport:
        async with self._lock:
            partitions = await self._status.assignment()
            if not partitions:
                self._keep_only(set())
                return ConsumerReport(())
            try:
                committed, ends = await self._offsets.fetch(partitions)
            except OffsetsUnavailable as exc:
                metrics.OFFSET_FETCH_FAILURES.labels(self._status.connector).inc()
                report = ConsumerReport(
                    tuple(
                        PartitionHealth(t, p, "offsets_unavailable", None, None)
                        for t, p in sorted(partitions)
                    ),
                    str(exc),
                )
                self._note_transitions(report)
                return report
            now = self._clock()
            found = []
            for tp in sorted(partitions):
                reason, seen = judge(
                    self._seen.get(tp), committed.get(tp), ends.get(tp), now, self._stuck_after_s
                )
                if seen is not None:
                    self._seen[tp] = seen
                since = seen.behind_since if seen is not None else None
                found.append(
                    PartitionHealth(
                        tp[0],
                        tp[1],
                        reason,
                        committed.get(tp),
                        ends.get(tp),
                        None if since is None else now - since,
                    )
                )
            report = ConsumerReport(tuple(found))
            self._keep_only(partitions)
            self._export(report)
            self._note_transitions(report)
            return report

    def _keep_only(self, partitions: set[TopicPartition]) -> None:
        for tp in set(self._seen) - partitions:
            del self._seen[tp]
        for tp in set(self._reasons) - partitions:
            del self._reasons[tp]
        name = self._status.connector
        for topic, partition in self._exported - partitions:
            for gauge in (metrics.COMMITTED_OFFSET, metrics.END_OFFSET, metrics.CONSUMER_LAG):
                with contextlib.suppress(KeyError):
                    gauge.remove(name, topic, str(partition))
        self._exported &= partitions

    def _export(self, report: ConsumerReport) -> None:
        name = self._status.connector
        for p in report.partitions:
            labels = (name, p.topic, str(p.partition))
            if p.end is not None:
                metrics.END_OFFSET.labels(*labels).set(p.end)
            if p.committed is not None and p.lag is not None:
                metrics.COMMITTED_OFFSET.labels(*labels).set(p.committed)
                metrics.CONSUMER_LAG.labels(*labels).set(p.lag)
            self._exported.add((p.topic, p.partition))

    def _note_transitions(self, report: ConsumerReport) -> None:
        """One log line when a partition changes state, not one per probe."""
        for p in report.partitions:
            tp = (p.topic, p.partition)
            if self._reasons.get(tp) == p.reason:
                continue
            self._reasons[tp] = p.reason
            level = logging.INFO if p.healthy else logging.WARNING
            _log.log(
                level,
                "partition %s[%d] is %s: committed %s, end %s%s",
                p.topic,
                p.partition,
                p.reason,
                p.committed,
                p.end,
                f" ({report.error})" if report.error else "",
                extra={"topic": p.topic, "partition": p.partition, "reason": p.reason},
            )


# -- the HTTP server ------------------------------------------------------------------------

_PHRASES = {
    200: "OK",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_ENDPOINTS = ("/metrics", "/livez", "/readyz", "/healthz")
_JSON = "application/json"


def _json(status: int, body: dict[str, Any]) -> tuple[int, str, bytes]:
    return status, _JSON, json.dumps(body, sort_keys=True).encode()


def _parse_head(head: bytes) -> tuple[str, str, str]:
    """(method, path, Accept header) of a request head; the query string is ignored."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    method, target = (parts[0], parts[1]) if len(parts) >= 2 else ("", "")
    accept = ""
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "accept":
            accept = value.strip()
    return method.upper(), target.split("?", 1)[0], accept


class HealthServer:
    """`/metrics` and the three probes, served from a thread of its own.

    `start()` returns once the port is bound (port 0 picks a free one, for tests) and
    raises the bind error otherwise; `stop()` closes the server and its Kafka clients.
    """

    def __init__(
        self,
        status: PipelineStatus,
        *,
        port: int,
        host: str = "0.0.0.0",  # noqa: S104 - probes and scrapers come from outside the pod
        settings: HealthSettings | None = None,
        registry: CollectorRegistry = metrics.REGISTRY,
    ) -> None:
        self._status = status
        self._host = host
        self._requested_port = port
        self._settings = settings or HealthSettings.model_validate({})
        self._registry = registry
        self._stuck_after_s = max(self._settings.stuck_after_s, 2 * status.commit_interval_s)
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._port = 0
        self._offsets: BrokerOffsets | None = None
        self._check: ConsumerCheck | None = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def stuck_after_s(self) -> float:
        return self._stuck_after_s

    def start(self) -> None:
        self._thread = threading.Thread(target=self._serve, name="health-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=30):
            raise RuntimeError("health server did not start within 30 s")
        if self._error is not None:
            raise self._error

    def stop(self, timeout: float = 10.0) -> None:
        loop, stopping, thread = self._loop, self._stopping, self._thread
        if loop is not None and stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop finished meanwhile
                loop.call_soon_threadsafe(stopping.set)
        if thread is not None:
            thread.join(timeout)

    def _serve(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # noqa: BLE001 - reported to start(), not lost in a thread
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        status = self._status
        self._offsets = BrokerOffsets(
            status.kafka_options,
            status.group_id,
            f"{status.connector}-health",
            self._settings.timeout_s,
        )
        self._check = ConsumerCheck(status, self._offsets, self._stuck_after_s)
        try:
            server = await asyncio.start_server(self._handle, self._host, self._requested_port)
        except OSError as exc:
            self._error = exc
            self._ready.set()
            return
        self._port = int(server.sockets[0].getsockname()[1])
        self._ready.set()
        sampler = asyncio.create_task(self._sample(self._check, self._stopping))
        try:
            async with server:
                await self._stopping.wait()
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
            await self._offsets.close()

    async def _sample(self, check: ConsumerCheck, stopping: asyncio.Event) -> None:
        """Refresh the offset gauges even when nobody probes: alerts are computed from them."""
        while not stopping.is_set():
            try:
                await check.run()
            except Exception:  # noqa: BLE001 - the sampler must outlive any one failure
                _log.exception("offset sample failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self._settings.sample_interval_s)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self._settings.timeout_s)
            method, path, accept = _parse_head(head)
            status, content_type, body = await self._respond(method, path, accept)
            lines = (
                f"HTTP/1.1 {status} {_PHRASES[status]}\r\n"
                f"Content-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\n"
                "Cache-Control: no-store\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(lines.encode("latin-1") + (b"" if method == "HEAD" else body))
            await writer.drain()
        except (
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            TimeoutError,
            ConnectionError,
        ):
            pass  # a client that went away or sent garbage gets nothing more
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _respond(self, method: str, path: str, accept: str) -> tuple[int, str, bytes]:
        if path not in _ENDPOINTS:
            return _json(404, {"error": "not found", "endpoints": list(_ENDPOINTS)})
        if method not in ("GET", "HEAD"):
            return _json(405, {"error": f"{method} not allowed"})
        try:
            if path == "/metrics":
                encoder, content_type = choose_encoder(accept)
                return 200, content_type, encoder(self._registry)
            if path == "/livez":
                return await self._livez()
            if path == "/readyz":
                return await self._readyz()
            return await self._healthz()
        except Exception as exc:  # noqa: BLE001 - a probe answers 500, the server lives on
            _log.exception("%s failed", path)
            return _json(500, {"error": f"{type(exc).__name__}: {exc}"})

    async def _livez(self) -> tuple[int, str, bytes]:
        assert self._offsets is not None  # noqa: S101 - set before the server listens
        started = time.monotonic()
        try:
            await self._offsets.ping()
        except OffsetsUnavailable as exc:
            return _json(503, {"live": False, "error": str(exc)})
        return _json(200, {"live": True, "broker_ms": round(1000 * (time.monotonic() - started))})

    async def _readyz(self) -> tuple[int, str, bytes]:
        assigned = await self._status.assignment()
        writer = "ok"
        try:
            await self._status.writer_check()
        except TimeoutError:
            writer = f"check did not answer within {self._settings.timeout_s:g}s"
        except Exception as exc:  # noqa: BLE001 - any writer failure means "not ready"
            writer = f"{type(exc).__name__}: {exc}"
        ready = bool(assigned) and writer == "ok"
        body = {"ready": ready, "assigned_partitions": len(assigned), "writer": writer}
        return _json(200 if ready else 503, body)

    async def _healthz(self) -> tuple[int, str, bytes]:
        assert self._check is not None  # noqa: S101 - set before the server listens
        report = await self._check.run()
        body = {
            "status": "healthy" if report.healthy else "unhealthy",
            "connector": self._status.connector,
            "group": self._status.group_id,
            "stuck_after_s": self._stuck_after_s,
            "partitions": [p.as_dict() for p in report.partitions],
            "error": report.error,
        }
        return _json(200 if report.healthy else 503, body)
