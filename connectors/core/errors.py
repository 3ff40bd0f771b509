"""The one error hierarchy of the runtime.

Client libraries' errors (aiokafka, lmdb, redis, ...) are converted into these where they
enter, so that the runner decides what to do from the class alone::

    ConnectorError
    ├── ConfigError            bad environment; exit code 2, nothing connected
    ├── PoisonError            one record cannot be processed (decode, contract, transform,
    │                          permanent rejection by a writer); carries the stage and record
    ├── RetriableError         try the same batch again later (timeouts, 5xx, unreachable)
    │                          optional `retry_after` seconds from the server
    └── FatalError             stop without committing (credentials, permissions, a
                               dead-letter topic that cannot be written); exit code 1
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from connectors.core.records import Record


class ConnectorError(Exception):
    """Base of every error the runtime raises on purpose."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One invalid setting: the variable, its value (None when secret) and what is expected."""

    variable: str
    expected: str
    value: str | None = None

    def __str__(self) -> str:
        """One line, whatever the value or the message holds: a value with a line break in
        it must not be able to print a line of its own (a forged `fatal:`)."""
        shown = "" if self.value is None else f"={quoted(self.value)}"
        return f"{one_line(self.variable)}{shown}: {one_line(self.expected)}"


QUOTED_LIMIT = 200


def quoted(text: str, limit: int = QUOTED_LIMIT) -> str:
    """`text` as a quoted literal on one line (line breaks and control characters escaped),
    cut after `limit` characters with its length said, so that an echoed value can neither
    forge a line nor flood one."""
    if len(text) > limit:
        return f"{text[:limit]!r}... ({len(text)} characters)"
    return repr(text)


def one_line(text: str) -> str:
    """`text` with every line break and other unprintable character escaped as in a Python
    literal: messages that echo a value (an exception's text, a parser's) stay one line."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


class ConfigError(ConnectorError):
    """The environment does not describe a runnable connector."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


class PoisonError(ConnectorError):
    """A single record cannot be processed; retrying it would fail the same way.

    A writer that stored part of the batch before the rejection says which part in
    `stored` (see `RetriableError`), so that the rest is written again without it."""

    def __init__(
        self,
        stage: str,
        message: str,
        record: Record | None = None,
        *,
        stored: Collection[int] = (),
    ) -> None:
        self.stage = stage
        self.record = record
        self.stored = frozenset(stored)
        super().__init__(message)


class RetriableError(ConnectorError):
    """What is not stored of the batch may succeed if tried again later.

    `stored` is the partial success of a writer: the indices, in the `WriteBatch.entries`
    it was given, of the entries that are durably stored despite the failure (requests the
    receiver accepted, objects uploaded). The runner's next attempt hands the writer only
    the others, so a flaky receiver is not sent again what it already took; offsets are
    still committed only once every entry is stored.

    `reason` labels the retry in `connector_retries_by_reason_total` (`http_503`, ...);
    without it the class of the error's cause (or of the error) is the reason."""

    def __init__(
        self,
        message: str,
        retry_after: float | None = None,
        *,
        stored: Collection[int] = (),
        reason: str | None = None,
    ) -> None:
        self.retry_after = retry_after
        self.stored = frozenset(stored)
        self.reason = reason
        super().__init__(message)


class FatalError(ConnectorError):
    """Going on would lose or corrupt data; stop without committing."""


def worst(failures: list[BaseException]) -> BaseException:
    """Of failures met in parallel, the one that decides: fatal before poison before
    retriable, so one retriable partition cannot hide a fatal one; anything unexpected is
    reported as it is."""
    for kind in (FatalError, PoisonError, RetriableError):
        for failure in failures:
            if isinstance(failure, kind):
                return failure
    return failures[0]
