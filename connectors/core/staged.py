"""Applying a chain that has async or batch steps: one step at a time over the whole batch.

A chain of sync steps only never comes here (`Chain.apply_batch` runs it inline). Otherwise
each step is applied to every record still in play before the next step starts:

- a sync step calls the function inline, record after record;
- an async step awaits its calls concurrently: `concurrency` workers take the records in
  order, so at most that many calls are in flight, and each record's outputs are kept at
  its own position;
- a batch step calls the function once per partition (records in offset order), with the
  messages and contexts of the records still in play; async batch calls of different
  partitions run concurrently, `concurrency` at most.

Outcomes are the sync chain's, record by record (`Applied`): entries in record order,
poison with stage `transform:<name>`, and, when some call asked to be tried again
(RetriableError), `stopped` at the first such record in batch order: the records before it
are kept, nothing from it on is (the calls that already ran for later records ran for
nothing and will run again: transforms are idempotent per record). Running out of memory
or file descriptors raises FatalError once the step's calls are done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any, Protocol

from connectors.core.context import TRACE
from connectors.core.errors import ConnectorError, FatalError, PoisonError, RetriableError
from connectors.core.outputs import MakeEntry, absorb, entry
from connectors.core.records import Entry, Headers, Record
from connectors.core.transform import (
    _UNSET,
    Applied,
    Chain,
    Decoded,
    Transform,
    TransformContext,
    _step,
    failure,
)
from connectors.core.transform_kinds import BatchTransform

__all__ = ["CallObserver", "apply_staged"]

Output = tuple[bytes | None, Any]


class CallObserver(Protocol):
    def calls(self, name: str, delta: int) -> None:
        """Async calls of transform `name` in flight changed by `delta` (+1, -1)."""


class _Quiet:
    def calls(self, name: str, delta: int) -> None:
        return None


@dataclass(slots=True)
class _Item:
    """One record's way through the chain."""

    position: int
    index: int
    record: Record
    ctx: TransformContext
    pending: list[Output]
    entries: list[Entry] = field(default_factory=list)
    produced: list[Output] = field(default_factory=list)
    failed: bool = False
    poison: PoisonError | None = None
    dropped_by: str | None = None


async def apply_staged(
    chain: Chain,
    decoded: Sequence[Decoded],
    *,
    concurrency: int,
    observer: CallObserver | None = None,
    trace_headers: Callable[[Record], Headers] | None = None,
) -> Applied:
    """Every record's entries through a chain with async or batch steps (see the module).

    `trace_headers(record)` gives the headers whose trace context `ctx.http` sends on for
    the record (the record's own headers when None)."""
    of = TransformContext.of
    items = [
        _Item(position, index, record, of(record), [(record.key, message)], [], [])
        for position, (index, record, message) in enumerate(decoded)
    ]
    run = _Run(max(1, concurrency), observer or _Quiet(), timed=len(chain.steps) > 1)
    run.trace_headers = trace_headers
    run.entry = chain.entry
    live = items
    last = len(chain.steps) - 1
    for number, ((name, fn), kind) in enumerate(zip(chain.steps, chain.kinds, strict=True)):
        started = perf_counter()
        if isinstance(fn, BatchTransform):
            await run.batch_step(name, fn, live, number == last)
        elif kind == "async":
            await run.async_step(name, fn, live, number == last)
        else:
            run.sync_step(name, fn, live, number == last)
        if run.fatal is not None:
            raise run.fatal
        if run.timed:
            run.seconds[name] = run.seconds.get(name, 0.0) + perf_counter() - started
        live = [i for i in live if not i.failed and i.pending and i.position < run.stop_at]
    return run.applied(items)


class _Run:
    def __init__(self, concurrency: int, observer: CallObserver, *, timed: bool) -> None:
        self.concurrency = concurrency
        self.observer = observer
        self.timed = timed
        self.seconds: dict[str, float] = {}
        self.stop_at = 1 << 62
        self.stopped: RetriableError | None = None
        self.fatal: FatalError | None = None
        self.trace_headers: Callable[[Record], Headers] | None = None
        self.entry: MakeEntry = entry

    def applied(self, items: list[_Item]) -> Applied:
        entries: list[Entry] = []
        poison: list[tuple[int, Record, PoisonError]] = []
        dropped: dict[str, int] = {}
        for item in items:
            if item.position >= self.stop_at:
                break
            if item.poison is not None:
                poison.append((item.index, item.record, item.poison))
                continue
            entries.extend(item.entries)
            if item.dropped_by is not None:
                dropped[item.dropped_by] = dropped.get(item.dropped_by, 0) + 1
        stopped = None if self.stopped is None else (self.stop_at, self.stopped)
        return Applied(entries, poison, self.seconds, stopped, dropped)

    def fail(self, item: _Item, name: str, exc: Exception) -> None:
        """`item`'s record failed in step `name`: poison, retriable or fatal."""
        error: ConnectorError = failure(name, item.record, exc)
        error.__cause__ = exc
        item.failed = True
        if isinstance(error, FatalError):
            self.fatal = self.fatal or error
        elif isinstance(error, RetriableError):
            if item.position < self.stop_at:
                self.stop_at, self.stopped = item.position, error
        elif isinstance(error, PoisonError):
            item.poison = error

    def finish(self, item: _Item, name: str, last: bool) -> None:
        """After step `name` for `item`: the last step's outputs become entries (a result
        that cannot be stored is that step's failure); a record left with nothing was
        dropped by this step."""
        if last:
            record, entries = item.record, item.entries
            for key, value in item.pending:
                entries.append(self.entry(record, key, value))
            item.pending = []
        if not item.pending and not item.entries:
            item.dropped_by = name

    def sync_step(self, name: str, fn: Transform, live: list[_Item], last: bool) -> None:
        for item in live:
            if item.position >= self.stop_at:
                break
            try:
                item.pending = _step(
                    name, fn, item.record, item.ctx, item.pending, item.entries, None, _UNSET, last
                )
                self.finish(item, name, last)
            except Exception as exc:  # noqa: BLE001 - the record's failure, classified
                self.fail(item, name, exc)

    async def async_step(self, name: str, fn: Transform, live: list[_Item], last: bool) -> None:
        queue = iter(live)
        calls = self.observer.calls
        traced = self.trace_headers

        async def worker() -> None:
            for item in queue:
                if item.position >= self.stop_at:
                    continue
                try:
                    TRACE.set(item.record.headers if traced is None else traced(item.record))
                    produced: list[Output] = []
                    ctx = item.ctx
                    for key, value in item.pending:
                        step_ctx = ctx if key == ctx.key else ctx._replace(key=key)
                        calls(name, 1)
                        try:
                            result = await fn(value, step_ctx)
                        finally:
                            calls(name, -1)
                        absorb(item.record, key, result, item.entries, produced)
                    item.pending = produced
                    self.finish(item, name, last)
                except Exception as exc:  # noqa: BLE001 - the record's failure, classified
                    self.fail(item, name, exc)

        await asyncio.gather(*(worker() for _ in range(min(self.concurrency, len(live)))))

    async def batch_step(
        self, name: str, fn: BatchTransform, live: list[_Item], last: bool
    ) -> None:
        groups: dict[tuple[str, int], list[tuple[_Item, bytes | None, Any]]] = {}
        members: list[_Item] = []
        for item in live:
            if item.position >= self.stop_at:
                continue
            item.produced = []
            members.append(item)
            for key, value in item.pending:
                groups.setdefault(item.record[:2], []).append((item, key, value))
        if fn.is_async:
            limit = asyncio.Semaphore(self.concurrency)

            async def call(group: list[tuple[_Item, bytes | None, Any]]) -> None:
                async with limit:
                    await self._batch_call(name, fn, group)

            await asyncio.gather(*(call(group) for group in groups.values()))
        else:
            for group in groups.values():
                await self._batch_call(name, fn, group)
        for item in members:
            if item.failed:
                continue
            item.pending, item.produced = item.produced, []
            try:
                self.finish(item, name, last)
            except Exception as exc:  # noqa: BLE001 - the record's failure, classified
                self.fail(item, name, exc)

    async def _batch_call(
        self, name: str, fn: BatchTransform, group: list[tuple[_Item, bytes | None, Any]]
    ) -> None:
        """One call of a batch transform for one partition's outputs, and what each
        output item makes of its record."""
        messages = [value for _, _, value in group]
        contexts = [i.ctx if k == i.ctx.key else i.ctx._replace(key=k) for i, k, _ in group]
        try:
            if fn.is_async:
                self.observer.calls(name, 1)
                try:
                    results = await fn.fn(messages, contexts)
                finally:
                    self.observer.calls(name, -1)
            else:
                results = fn.fn(messages, contexts)
            _check_length(name, results, len(group))
        except RetriableError as exc:  # the call is tried again, from its first record
            self.fail(group[0][0], name, exc)
            return
        except Exception as exc:  # noqa: BLE001 - the record's failure, classified
            for item, _, _ in group:
                if not item.failed:
                    self.fail(item, name, exc)
            return
        for (item, key, _), result in zip(group, results, strict=True):
            if item.failed:
                continue
            if isinstance(result, BaseException):
                self._failed_item(item, name, result)
                continue
            try:
                absorb(item.record, key, result, item.entries, item.produced)
            except Exception as exc:  # noqa: BLE001 - the record's failure, classified
                self.fail(item, name, exc)

    def _failed_item(self, item: _Item, name: str, result: BaseException) -> None:
        """An Exception returned in a batch transform's list: its record alone failed."""
        if isinstance(result, PoisonError):  # said on purpose: its own words
            item.failed = True
            item.poison = PoisonError(f"transform:{name}", str(result), item.record)
            item.poison.__cause__ = result
        elif isinstance(result, Exception):
            self.fail(item, name, result)
        else:
            self.fail(item, name, TypeError(f"returned {type(result).__name__} as an output"))


def _check_length(name: str, results: Any, expected: int) -> None:
    if isinstance(results, str | bytes) or not isinstance(results, Sequence):
        raise TypeError(
            f"batch transform {name!r} returned {type(results).__name__}; expected a list of "
            f"{expected} outputs, one per message"
        )
    if len(results) != expected:
        raise TypeError(
            f"batch transform {name!r} returned {len(results)} outputs for {expected} "
            f"messages; expected one per message"
        )
