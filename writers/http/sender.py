"""The HTTP writer: send entries as JSON, classify each answer, report what was taken.

Error tree at this boundary (httpx → ours)::

    2xx                                      → written
    408, 429, 5xx, connect/read/write errors,
      timeouts, a dropped connection         → RetriableError (retry_after from Retry-After)
    3xx (redirects are not followed),
      HTTP_FATAL_STATUSES (401, 403, 407),
      a TLS certificate that does not verify → FatalError
    any other 4xx                            → PoisonError naming a record
    an output without a field HTTP_URL names → PoisonError naming its record

How entries become requests, and their idempotency keys, is `planning`'s job: lanes (one
partition, one URL) are sent one request after the other in offset order, lanes in
parallel (`HTTP_MAX_CONCURRENCY` requests at once, `HTTP_MAX_REQUESTS_PER_S` at most).

Partial success: the writer keeps each request's outcome. When some fail, the error it
raises carries `stored`, the entries of the requests the receiver took (answered 2xx), so
the runner's next attempt hands over only the rest: a 500 on one request resends that
request, not its accepted siblings. A lane stops at its first failure, so a later change
to a resource never overtakes an earlier one that still has to be resent.

In batch mode a rejection (4xx) covers a whole request. The writer then sends the
request's records again in two halves, and halves of a rejected half, in offset order,
until the rejected request holds one record: that record is named in the PoisonError, and
every request the receiver took is in its `stored`. The points where requests were split
are kept while the runner writes the same batch again, so the requests repeat exactly.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections import deque
from collections.abc import Sequence
from email.utils import parsedate_to_datetime

from connectors import (
    TRACE_HEADERS,
    Batch,
    ConnectorError,
    Entry,
    FatalError,
    PoisonError,
    RetriableError,
    WriteBatch,
    WriterContext,
    document,
    trace_headers,
    worst,
)
from writers.http import metrics
from writers.http.documents import route
from writers.http.planning import (
    CONTENT_TYPES,
    Request,
    Routed,
    batch_request,
    halves,
    lane_requests,
    lanes,
    record_groups,
    record_request,
    render_body,
)
from writers.http.settings import HTTPSettings, mask_query

try:
    import httpx
    from aiolimiter import AsyncLimiter
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "WRITER=http needs httpx and aiolimiter: pip install 'kafka-connectors[http]'"
    ) from exc

__all__ = ["HttpWriter", "body", "plan", "record_groups", "retry_after"]

_log = logging.getLogger("connectors.writers.http")


def body(entries: Sequence[Entry], fmt: str, as_array: bool) -> bytes:
    """The body of a request holding `entries`, without envelope."""
    return render_body([document(e) for e in entries], fmt, as_array)


def plan(entries: Sequence[Entry], size: int, cuts: set[int]) -> list[list[Entry]]:
    """The batch-mode requests for one partition's entries to one URL (see `planning`)."""
    routed = [Routed(n, e, "POST", "", None) for n, e in enumerate(entries)]
    return [[r.entry for r in request] for request in lane_requests(routed, size, cuts)]


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


def _limiter(rate: float) -> AsyncLimiter | None:
    if rate <= 0:
        return None
    # A bucket holds at least one request: below 1/s, one per 1/rate seconds.
    return AsyncLimiter(rate, 1.0) if rate >= 1 else AsyncLimiter(1, 1.0 / rate)


class HttpWriter:
    def __init__(self, settings: HTTPSettings, context: WriterContext) -> None:
        self._settings = settings
        self._context = context
        self._template = settings.template
        self._where = mask_query(settings.url)
        self._client: httpx.AsyncClient | None = None
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._limiter = _limiter(settings.max_requests_per_s)
        self._last_failure: str | None = None
        # What earlier attempts at the batch being written learnt: where rejected requests
        # were split (per lane), which keys the receiver took, and the place of each entry
        # among its record's outputs (per-record keys stay the same when only some outputs
        # are resent). Forgotten once the batch is written, or when another batch comes.
        self._batch: Batch | None = None
        self._cuts: dict[tuple[str, int, str], set[int]] = {}
        self._taken: set[str] = set()
        self._ordinals: dict[int, int] = {}
        self._entries: Sequence[Entry] = ()

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
                max_connections=s.concurrency, max_keepalive_connections=s.concurrency
            ),
        )

    async def write(self, batch: WriteBatch) -> None:
        if batch.batch is not self._batch:
            self._begin(batch)
        routed = self._route(batch.entries)
        taken: set[int] = set()
        jobs = [self._lane(self._requests(items), taken) for items in lanes(routed).values()]
        results = await asyncio.gather(*jobs, return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            failure = worst(failures)
            if isinstance(failure, RetriableError | PoisonError):
                failure.stored = frozenset(taken)
            raise failure
        self._forget()

    def _begin(self, batch: WriteBatch) -> None:
        self._forget()
        self._batch = batch.batch
        self._entries = batch.entries  # keeps the ids below valid
        previous, n = None, 0
        for entry in batch.entries:
            n = n + 1 if entry.source is previous else 0
            previous = entry.source
            self._ordinals[id(entry)] = n

    def _forget(self) -> None:
        self._batch = None
        self._entries = ()
        self._cuts.clear()
        self._taken.clear()
        self._ordinals.clear()

    def _route(self, entries: Sequence[Entry]) -> list[Routed]:
        """Every entry with its method, URL and document; the first one HTTP_URL cannot
        place is poison (nothing was sent yet)."""
        template, settings = self._template, self._settings
        return [route(n, entry, template, settings) for n, entry in enumerate(entries)]

    def _requests(self, items: list[Routed]) -> list[Request]:
        name, fmt = self._context.connector_name, self._settings.format
        if not self._settings.batch:
            return [record_request(name, i, self._ordinals.get(id(i.entry), 0), fmt) for i in items]
        cuts = self._cuts.setdefault(items[0].lane, set())
        planned = lane_requests(items, self._settings.batch_max_messages, cuts)
        cuts.update(request[0].offset for request in planned)
        return [batch_request(name, request, fmt) for request in planned]

    async def _lane(self, requests: list[Request], taken: set[int]) -> None:
        """Send one lane's requests in order; stop at the first failure. A rejected batch
        request is split in halves, first half first, until the rejected record is alone."""
        pending = deque(requests)
        while pending:
            request = pending.popleft()
            try:
                await self._send(request)
            except PoisonError as exc:
                split = halves(request.items) if self._settings.batch else None
                if split is None:
                    raise
                cuts = self._cuts.setdefault(request.items[0].lane, set())
                cuts.add(split[1][0].offset)
                name, fmt = self._context.connector_name, self._settings.format
                pending.extendleft(reversed([batch_request(name, h, fmt) for h in split]))
                (
                    _log.debug
                    if len(request.items) < self._settings.batch_max_messages
                    else _log.info
                )(
                    "%s; sending its records again in smaller requests to find the rejected one",
                    exc,
                )
                continue
            taken.update(request.indices)

    async def _send(self, request: Request) -> None:
        if self._client is None:
            raise FatalError("HTTP writer used before start()")
        if request.key in self._taken:
            return  # taken by the receiver in an earlier attempt at this batch
        entries = [item.entry for item in request.items]
        headers = {self._settings.idempotency_header: request.key, **trace_headers(entries)}
        if len(entries) == 1 and "traceparent" not in headers:
            # Tracing off: forward the producer's context as it came.
            for name in TRACE_HEADERS:
                found = entries[0].source.header(name)
                if found is not None:
                    headers[name] = found.decode("latin-1")
        if self._limiter is not None:
            await self._limiter.acquire()
        async with self._slots:
            started = time.perf_counter()
            try:
                response = await self._client.request(
                    request.method, request.url, content=request.content, headers=headers
                )
            except httpx.HTTPError as exc:
                self._observe(
                    request.method,
                    started,
                    "timeout" if isinstance(exc, httpx.TimeoutException) else "error",
                )
                raise self._transport_error(exc, request) from exc
            self._observe(request.method, started, str(response.status_code))
        self._classify(response, request)
        self._taken.add(request.key)

    def _observe(self, method: str, started: float, code: str) -> None:
        name = self._context.connector_name
        metrics.REQUEST_SECONDS.labels(name, method).observe(time.perf_counter() - started)
        metrics.REQUESTS.labels(name, method, code).inc()

    def _transport_error(self, exc: httpx.HTTPError, request: Request) -> ConnectorError:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
            return FatalError(f"HTTP_URL {self._where} cannot be used: {text}")
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            return FatalError(f"TLS certificate of {self._where} does not verify: {text}")
        self._last_failure = f"{self._where}: {text}"
        return RetriableError(f"{request.method} {self._where} ({request.key}) failed: {text}")

    def _classify(self, response: httpx.Response, request: Request) -> None:
        code = response.status_code
        if 200 <= code < 300:
            self._last_failure = None
            return
        said = self._redacted(response.text)[:300].strip()
        what = f"{request.method} {self._where} ({request.key}) answered {code}" + (
            f": {said}" if said else ""
        )
        if code in (408, 429) or code >= 500:
            self._last_failure = what
            retry = retry_after(response.headers.get("Retry-After"))
            raise RetriableError(what, retry, reason=f"http_{code}")
        if 300 <= code < 400:
            moved = response.headers.get("Location", "?")
            raise FatalError(f"{what}; redirects are not followed, set HTTP_URL to {moved}")
        if code in self._settings.fatal_statuses:
            raise FatalError(f"{what}; check HTTP_HEADERS (credentials) and HTTP_URL")
        raise PoisonError("write", f"{what}; rejected for good", request.first.source)

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
