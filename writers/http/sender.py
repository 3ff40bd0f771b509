"""The HTTP writer: POST entries as JSON, classify the answer, never retry on its own.

Error tree at this boundary (httpx → ours)::

    2xx                                      → written
    408, 429, 5xx, connect/read/write errors,
      timeouts, a dropped connection         → RetriableError (retry_after from Retry-After)
    3xx (redirects are not followed),
      HTTP_FATAL_STATUSES (401, 403, 407),
      a TLS certificate that does not verify → FatalError
    any other 4xx                            → PoisonError naming a record

Batch mode sends at most `HTTP_BATCH_MAX_MESSAGES` records per request, so a runtime batch
sized for the commit (`BATCH_MAX_MESSAGES`) does not become a body the receiver refuses as
too large; the requests of one partition go one after the other, in offset order.

Per-record mode (`HTTP_BATCH=false`) sends the records of one partition one after the
other (other partitions in parallel, `HTTP_MAX_IN_FLIGHT` at most), so the receiver sees
them in offset order; a rejected record stops its partition there and is named in the
PoisonError, and the runner dead-letters it and writes the batch again without it.

In batch mode a rejection covers a whole request. The writer then sends the request's
records again in two halves, and halves of a rejected half, in offset order, until the
rejected request holds one record: that record is named in the PoisonError; every other
record was sent in a request the receiver took. The outputs of one record always travel in
one request. The points where requests were split are kept while the runner writes the
same batch again (without the rejected record), so the requests repeat exactly, each under
its key, and those the receiver already took are not sent again.

Idempotency key, sent in `HTTP_IDEMPOTENCY_HEADER` and the same on every replay:
`<connector>:<topic>:<partition>:<first>-<last>` per request in batch mode (the offsets of
its first and last record: one key, one set of records), and
`<connector>:<topic>:<partition>:<offset>` per record (`.<n>` for the n-th extra output of
one record). A receiver that deduplicates on it sees each replay as a repeat.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
import ssl
import time
from collections import deque
from collections.abc import Iterator, Sequence
from email.utils import parsedate_to_datetime

from connectors import (
    TRACE_HEADERS,
    Batch,
    ConnectorError,
    Entry,
    FatalError,
    PoisonError,
    Record,
    RetriableError,
    WriteBatch,
    WriterContext,
    document,
    trace_headers,
    worst,
)
from writers.http.settings import HTTPSettings, mask_query

try:
    import httpx
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "WRITER=http needs the httpx client: pip install 'kafka-connectors[http]'"
    ) from exc

_log = logging.getLogger("connectors.writers.http")
CONTENT_TYPES = {"json": "application/json", "ndjson": "application/x-ndjson"}


def body(entries: Sequence[Entry], fmt: str, as_array: bool) -> bytes:
    docs = [document(e) for e in entries]
    if fmt == "ndjson":
        return "".join(json.dumps(d, separators=(",", ":")) + "\n" for d in docs).encode()
    return json.dumps(docs if as_array else docs[0], separators=(",", ":")).encode()


def record_groups(entries: Sequence[Entry]) -> Iterator[list[Entry]]:
    """The entries of one partition, record by record (the outputs of a record are adjacent)."""
    for _, group in itertools.groupby(entries, key=lambda e: e.source.offset):
        yield list(group)


def plan(entries: Sequence[Entry], size: int, cuts: set[int]) -> list[list[Entry]]:
    """The requests for one partition's entries: at most `size` entries each (a record with
    more outputs goes alone), a record's outputs never split, and a new request at each
    offset in `cuts` (where an earlier attempt split a rejected request)."""
    requests: list[list[Entry]] = []
    current: list[Entry] = []
    for group in record_groups(entries):
        if current and (group[0].source.offset in cuts or len(current) + len(group) > size):
            requests.append(current)
            current = []
        current.extend(group)
    if current:
        requests.append(current)
    return requests


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None if absent
    or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class HttpWriter:
    def __init__(self, settings: HTTPSettings, context: WriterContext) -> None:
        self._settings = settings
        self._context = context
        self._where = mask_query(settings.url)
        self._client: httpx.AsyncClient | None = None
        self._slots = asyncio.Semaphore(settings.max_in_flight)
        self._last_failure: str | None = None
        # What earlier attempts at the batch being written learnt: where rejected requests
        # were split (per partition) and which requests the receiver took (key → body
        # digest). Forgotten once the batch is written, or when another batch comes.
        self._batch: Batch | None = None
        self._cuts: dict[tuple[str, int], set[int]] = {}
        self._taken: dict[str, bytes] = {}

    async def start(self) -> None:
        # httpx logs every request line at INFO, URL included (tokens travel in queries).
        logging.getLogger("httpx").setLevel(max(logging.WARNING, _log.getEffectiveLevel()))
        s = self._settings
        if not s.verify_tls:
            _log.warning("HTTP_VERIFY_TLS=false: %s is not authenticated", self._where)
        headers = {"Content-Type": CONTENT_TYPES[s.format]}
        headers.update(dict(s.header_pairs()))
        self._client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(s.timeout_s),
            verify=(
                ssl.create_default_context(cafile=s.ca_file)
                if s.ca_file and s.verify_tls
                else s.verify_tls
            ),
            follow_redirects=False,
            limits=httpx.Limits(
                max_connections=s.max_in_flight, max_keepalive_connections=s.max_in_flight
            ),
        )

    async def write(self, batch: WriteBatch) -> None:
        if batch.batch is not self._batch:
            self._forget()
            self._batch = batch.batch
        groups = batch.by_partition()
        if self._settings.batch:
            jobs = [self._in_requests(entries) for entries in groups.values()]
        else:
            jobs = [self._one_by_one(entries) for entries in groups.values()]
        results = await asyncio.gather(*jobs, return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise worst(failures)
        self._forget()

    def _forget(self) -> None:
        self._batch = None
        self._cuts.clear()
        self._taken.clear()

    def _stream(self, source: Record) -> str:
        return f"{self._context.connector_name}:{source.topic}:{source.partition}"

    def _range_key(self, entries: Sequence[Entry]) -> str:
        first, last = entries[0].source, entries[-1].source
        return f"{self._stream(first)}:{first.offset}-{last.offset}"

    async def _in_requests(self, entries: Sequence[Entry]) -> None:
        first = entries[0].source
        where = (first.topic, first.partition)
        pending = deque(
            (request, False)
            for request in plan(
                entries, self._settings.batch_max_messages, self._cuts.get(where, set())
            )
        )
        while pending:
            request, part = pending.popleft()
            key = self._range_key(request)
            try:
                await self._post(request, key, True)
            except PoisonError as exc:
                groups = list(record_groups(request))
                if len(groups) == 1:
                    raise
                # Split in halves, first half first: the receiver keeps seeing offset order.
                half = len(groups) // 2
                cuts = self._cuts.setdefault(where, set())
                cuts.update((groups[0][0].source.offset, groups[half][0].source.offset))
                if pending:
                    cuts.add(pending[0][0][0].source.offset)
                pending.appendleft((list(itertools.chain(*groups[half:])), True))
                pending.appendleft((list(itertools.chain(*groups[:half])), True))
                (_log.debug if part else _log.info)(
                    "%s; sending its %d records again in smaller requests to find the rejected one",
                    exc,
                    len(groups),
                )

    async def _one_by_one(self, entries: Sequence[Entry]) -> None:
        previous, n = None, 0
        for entry in entries:
            source = entry.source
            n = n + 1 if source is previous else 0
            previous = source
            key = (
                f"{self._context.connector_name}:{source.topic}:{source.partition}:{source.offset}"
            )
            await self._post([entry], key + (f".{n}" if n else ""), False)

    async def _post(self, entries: Sequence[Entry], key: str, as_array: bool) -> None:
        if self._client is None:
            raise FatalError("HTTP writer used before start()")
        s = self._settings
        headers = {s.idempotency_header: key, **trace_headers(entries)}
        if len(entries) == 1 and "traceparent" not in headers:
            # Tracing off: forward the producer's context as it came.
            for name in TRACE_HEADERS:
                found = entries[0].source.header(name)
                if found is not None:
                    headers[name] = found.decode("latin-1")
        content = body(entries, s.format, as_array)
        digest = hashlib.blake2b(content, digest_size=16).digest()
        if self._taken.get(key) == digest:
            return  # taken by the receiver in an earlier attempt at this batch
        async with self._slots:
            try:
                response = await self._client.post(s.url, content=content, headers=headers)
            except httpx.HTTPError as exc:
                raise self._transport_error(exc, key) from exc
        self._classify(response, entries, key)
        self._taken[key] = digest

    def _transport_error(self, exc: httpx.HTTPError, key: str) -> ConnectorError:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
            return FatalError(f"HTTP_URL {self._where} cannot be used: {text}")
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            return FatalError(f"TLS certificate of {self._where} does not verify: {text}")
        self._last_failure = f"{self._where}: {text}"
        return RetriableError(f"POST {self._where} ({key}) failed: {text}")

    def _classify(self, response: httpx.Response, entries: Sequence[Entry], key: str) -> None:
        code = response.status_code
        if 200 <= code < 300:
            self._last_failure = None
            return
        said = self._redacted(response.text)[:300].strip()
        what = f"POST {self._where} ({key}) answered {code}" + (f": {said}" if said else "")
        if code in (408, 429) or code >= 500:
            self._last_failure = what
            raise RetriableError(what, retry_after(response.headers.get("Retry-After")))
        if 300 <= code < 400:
            moved = response.headers.get("Location", "?")
            raise FatalError(f"{what}; redirects are not followed, set HTTP_URL to {moved}")
        if code in self._settings.fatal_statuses:
            raise FatalError(f"{what}; check HTTP_HEADERS (credentials) and HTTP_URL")
        raise PoisonError("write", f"{what}; rejected for good", entries[0].source)

    def _redacted(self, text: str) -> str:
        """A receiver may echo the credential it refuses ("invalid token: Bearer abc"): each
        header value, and its last word (the token after "Bearer"), is masked before the
        answer reaches a log line or a dead letter."""
        for _, value in self._settings.header_pairs():
            for secret in {value, value.rsplit(" ", 1)[-1]}:
                if len(secret) >= 4:
                    text = text.replace(secret, "*****")
        return text

    async def check(self) -> None:
        """No request of its own (a receiver may not answer GET): unready while the last
        request failed for a retriable reason."""
        if self._last_failure is not None:
            raise RetriableError(f"last request failed: {self._last_failure}")

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
