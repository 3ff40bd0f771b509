"""The runner's transform stage: apply the chain to a decoded batch, retry what asks for it.

A chain of sync transforms runs inline (`Chain.apply_batch`: no event-loop hop per record);
one with async or batch steps goes through `connectors.core.staged`, at most
TRANSFORM_CONCURRENCY calls in flight. Either way a record whose transform raised
RetriableError stops the batch there: that record and those after it are applied again
under the runner's backoff (reader paused and polling, RETRY_MAX_ATTEMPTS), the ones before
it are kept, and nothing is committed until the batch passes.

The stage also owns the process's transform resources (`ctx.http`, `ctx.cache`):
configured from the TRANSFORM_* settings when the runner starts, the HTTP client closed when
it stops; and it counts drops, retries by reason, cache hits and misses and calls in flight.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import Counter, Gauge

from connectors.config.transforms import TransformSettings
from connectors.core.context import RESOURCES
from connectors.core.errors import RetriableError
from connectors.core.staged import apply_staged
from connectors.core.transform import Applied, Chain, Decoded, TransformRetriable
from connectors.observability import metrics, tracing
from connectors.runtime.retry import Retrier

__all__ = ["TransformMeters", "TransformStage"]


class TransformMeters:
    """The transform metrics of one connector, label sets bound on first use."""

    def __init__(self, connector: str, transforms: Sequence[str] = ()) -> None:
        self.connector = connector
        self.cache_hits: Counter = metrics.TRANSFORM_CACHE_HITS.labels(connector)
        self.cache_misses: Counter = metrics.TRANSFORM_CACHE_MISSES.labels(connector)
        self._dropped: dict[str, tuple[Counter, Counter]] = {}
        self._retries: dict[tuple[str, str], Counter] = {}
        self._in_flight: dict[str, Gauge] = {}
        for name in transforms:  # at 0 from the start, so increase() sees the first drop
            self._counters(name)

    def _counters(self, name: str) -> tuple[Counter, Counter]:
        """`connector_records_dropped_total` and its older name, the same count."""
        counters = self._dropped.get(name)
        if counters is None:
            counters = self._dropped[name] = (
                metrics.RECORDS_DROPPED.labels(self.connector, name),
                metrics.TRANSFORM_DROPPED.labels(self.connector, name),
            )
        return counters

    def dropped(self, counts: dict[str, int] | None) -> None:
        for name, count in (counts or {}).items():
            for counter in self._counters(name):
                counter.inc(count)

    def retried(self, error: RetriableError) -> None:
        name, reason = "", "retriable"
        if isinstance(error, TransformRetriable):
            name, reason = error.transform, error.reason or reason
        counter = self._retries.get((name, reason))
        if counter is None:
            counter = metrics.TRANSFORM_RETRIES.labels(self.connector, name, reason)
            self._retries[(name, reason)] = counter
        counter.inc()

    def calls(self, name: str, delta: int) -> None:
        gauge = self._in_flight.get(name)
        if gauge is None:
            gauge = self._in_flight[name] = metrics.TRANSFORM_IN_FLIGHT.labels(self.connector, name)
        gauge.inc(delta)

    def hit(self) -> None:
        self.cache_hits.inc()

    def miss(self) -> None:
        self.cache_misses.inc()


class TransformStage:
    def __init__(
        self, chain: Chain, settings: TransformSettings, retry: Retrier, connector: str
    ) -> None:
        self.chain = chain
        self.settings = settings
        self.meters = TransformMeters(connector, chain.names)
        self._retry = retry
        self._trace: tracing.BatchTrace = tracing.BatchTrace()

    def start(self) -> None:
        """Build `ctx.http` and `ctx.cache` from the settings (the client on first use)."""
        meters = self.meters
        RESOURCES.configure(self.settings.resources(), on_hit=meters.hit, on_miss=meters.miss)

    async def close(self) -> None:
        """Close the shared HTTP client."""
        await RESOURCES.aclose()

    async def apply(self, decoded: Sequence[Decoded], trace: tracing.BatchTrace) -> Applied:
        """Every record's entries and poison; retries until no transform asks for it.
        With tracing on, `ctx.http` sends each record's `process` span on (the context its
        writes carry too), so a dependency's spans join the record's trace."""
        self._trace = trace
        applied = await self._once(decoded)
        if applied.stopped is not None:
            applied = await self._retried(decoded, applied)
        self.meters.dropped(applied.dropped)
        return applied

    async def _once(self, decoded: Sequence[Decoded]) -> Applied:
        if self.chain.is_sync:
            return self.chain.apply_batch(decoded)
        trace = self._trace
        return await apply_staged(
            self.chain,
            decoded,
            concurrency=self.settings.concurrency,
            observer=self.meters,
            trace_headers=(lambda r: trace.carry_record(r).headers) if trace.active else None,
        )

    async def _retried(self, decoded: Sequence[Decoded], applied: Applied) -> Applied:
        """Finish a batch whose transform asked for a record to be tried again: that record
        and those after it are applied again, under the runner's backoff with the reader
        paused and polling, until they pass; what came before is kept, not redone."""
        entries, poison, seconds = applied.entries, applied.poison, dict(applied.seconds)
        dropped = dict(applied.dropped or {})
        stopped = applied.stopped

        async def attempt() -> None:
            nonlocal decoded, stopped
            if stopped is None:  # the first attempt reports the pass already made
                again = await self._once(decoded)
                entries.extend(again.entries)
                poison.extend(again.poison)
                for name, spent in again.seconds.items():
                    seconds[name] = seconds.get(name, 0.0) + spent
                for name, count in (again.dropped or {}).items():
                    dropped[name] = dropped.get(name, 0) + count
                stopped = again.stopped
            if stopped is not None:
                position, error = stopped
                decoded, stopped = decoded[position:], None
                self.meters.retried(error)
                raise error

        await self._retry("transform", attempt, keepalive=True)
        return Applied(entries, poison, seconds, None, dropped)
