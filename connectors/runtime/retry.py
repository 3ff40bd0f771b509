"""Retrying a call that failed with a RetriableError: capped, jittered backoff (RETRY_*).

One policy for every call the runner makes (start, poll, write, dead-letter, commit), so a
dependency that is down at start is waited for exactly as one that goes down later. A
stop request ends the wait (`Abandoned`); RETRY_MAX_ATTEMPTS attempts end it with a
FatalError.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from connectors.config.settings import RetrySettings
from connectors.core.errors import FatalError, RetriableError, one_line
from connectors.core.reader import Reader
from connectors.runtime.instruments import Instruments

_log = logging.getLogger("connectors.runtime.retry")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Waiting:
    """A call that failed retriably and waits for its next attempt: `stage` (write,
    transform, poll, commit, writer.start, ...), the last failure, and the
    `time.monotonic()` of the first failure of this run of them."""

    stage: str
    reason: str
    since: float
    attempt_started: float | None = None
    """When the attempt running now began; None between attempts."""


class Abandoned(Exception):  # noqa: N818 - control flow, caught by the runner
    """A stop request arrived while a call waited for its next attempt; what it was for
    (a batch) is not committed."""


class Retrier:
    """Retries calls; `waiting` says, to any thread, which call is waiting for its next
    attempt, why and since when (None while nothing is): the health checks tell a pipeline
    blocked on a dependency from a wedged one by it."""

    def __init__(
        self,
        settings: RetrySettings,
        reader: Reader,
        instruments: Instruments,
        stopping: asyncio.Event,
    ) -> None:
        self._settings = settings
        self._reader = reader
        self._instruments = instruments
        self._stopping = stopping
        self.waiting: Waiting | None = None

    async def __call__(self, stage: str, call: Callable[[], Awaitable[T]], *, keepalive: bool) -> T:
        """`call()` until it succeeds; raises Abandoned when a stop request ends the wait.

        With `keepalive`, the reader is paused but keeps polling while waiting, so the
        group sees a live member (no rebalance) and nothing new is fetched into memory;
        it is resumed once the call succeeds.
        """
        try:
            return await self._attempts(stage, call, keepalive=keepalive)
        finally:
            self.waiting = None

    async def _attempts(
        self, stage: str, call: Callable[[], Awaitable[T]], *, keepalive: bool
    ) -> T:
        attempt = 0
        while True:
            if self.waiting is not None:
                self.waiting = replace(self.waiting, attempt_started=time.monotonic())
            try:
                result = await call()
            except RetriableError as exc:
                # A failure that still stored part of what was asked is progress: the
                # backoff and RETRY_MAX_ATTEMPTS start again, counting attempts that
                # stored nothing.
                attempt = 1 if exc.stored else attempt + 1
                delay = self._delay(stage, attempt, exc)
                self._instruments.retried(stage, exc)
                since = self.waiting.since if self.waiting is not None else time.monotonic()
                self.waiting = Waiting(stage, one_line(str(exc))[:300], since)
                _log.warning(
                    "%s failed (attempt %d), retrying in %.2fs: %s", stage, attempt, delay, exc
                )
                if await self.wait(delay, keepalive=keepalive):
                    raise Abandoned(stage) from exc
            else:
                if attempt and keepalive:
                    self._reader.resume()
                    self._instruments.paused.set(0)
                return result

    def _delay(self, stage: str, attempt: int, exc: RetriableError) -> float:
        settings = self._settings
        if settings.max_attempts and attempt >= settings.max_attempts:
            raise FatalError(f"{stage} still failing after {attempt} attempts: {exc}") from exc
        delay = settings.delay_s(attempt, random.random())  # noqa: S311 - jitter
        if exc.retry_after is not None:
            delay = max(delay, exc.retry_after)
        return delay

    async def wait(self, seconds: float, *, keepalive: bool) -> bool:
        """Wait `seconds` or until a stop request (True); poll paused meanwhile if asked."""
        stopping = self._stopping
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            if stopping.is_set():
                return True
            if keepalive:
                self._instruments.paused.set(len(self._reader.assignment()))
                await self._reader.keepalive(min(remaining, 0.5))
            else:
                try:
                    await asyncio.wait_for(stopping.wait(), timeout=remaining)
                except TimeoutError:
                    return False
        return stopping.is_set()
