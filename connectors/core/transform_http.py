"""`ctx.http`: the one `httpx.AsyncClient` transforms share, answers already classified.

The client's transport turns what a dependency answers into the runtime's errors, so that a
transform author writes `await ctx.http.get(url)` and gets the right outcome for free:

- connection errors and timeouts, 5xx, 408 and 429: `RetriableError` (with `Retry-After`
  when the server sent one): the record is tried again with the runner's backoff;
- any other 4xx: `PoisonError`: the record is dead-lettered (stage `transform:<name>`);
- 1xx-3xx: the response, as httpx returns it (redirects are not followed).

Each request also carries the trace headers (`traceparent`, `tracestate`) of the record
being transformed, when it has them and the request does not set its own, so a dependency's
spans join the record's trace. Imported only when a transform first uses `ctx.http`.
"""

from __future__ import annotations

import email.utils
import ssl
import time
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from connectors.core.context import TRACE
from connectors.core.errors import PoisonError, RetriableError
from connectors.core.records import TRACE_HEADERS

__all__ = ["HttpRetriable", "new_client", "retry_after_s"]

#: Longest `Retry-After` honoured, in seconds: a server cannot park the connector for days.
RETRY_AFTER_MAX_S = 3600.0

RETRIABLE_STATUSES = frozenset({408, 429})


class HttpRetriable(RetriableError):
    """A retriable answer or failure of `ctx.http`; `reason` labels the retry metric
    (`http_503`, `timeout`, `connection`)."""

    def __init__(self, message: str, retry_after: float | None = None, *, reason: str) -> None:
        super().__init__(message, retry_after)
        self.reason = reason


def retry_after_s(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` (delay-seconds or an HTTP-date) as seconds from now, capped."""
    if not value:
        return None
    value = value.strip()
    seconds: float | None
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), RETRY_AFTER_MAX_S)


def _shown(request: httpx.Request) -> str:
    """Method and URL without query or credentials: tokens are often passed there."""
    url = request.url.copy_with(query=None, fragment=None, username=None, password=None)
    return f"{request.method} {url}"


def _failed(request: httpx.Request, exc: Exception) -> HttpRetriable:
    """A request that got no answer: a timeout or a connection failure, both retriable.

    The aiohttp transport maps some of aiohttp's connection errors to httpx's
    `ConnectTimeout`; the aiohttp error it came from says which it really was."""
    cause = exc.__cause__ if isinstance(exc.__cause__, aiohttp.ClientError) else exc
    if isinstance(cause, (TimeoutError, httpx.TimeoutException)):
        return HttpRetriable(f"{_shown(request)} timed out ({cause!r})", reason="timeout")
    return HttpRetriable(
        f"{_shown(request)} failed: {type(cause).__name__}: {cause}", reason="connection"
    )


class ClassifyingTransport(httpx.AsyncBaseTransport):
    """A transport that adds the record's trace headers and raises the runtime's errors
    for answers that are not a success."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        trace = TRACE.get()
        for name, value in trace:
            if name.lower() in TRACE_HEADERS and name not in request.headers:
                request.headers[name] = value.decode("latin-1")
        try:
            response = await self._inner.handle_async_request(request)
        except (httpx.TransportError, aiohttp.ClientError) as exc:
            raise _failed(request, exc) from exc
        status = response.status_code
        if status < 400:
            return response
        await response.aclose()
        if status >= 500 or status in RETRIABLE_STATUSES:
            raise HttpRetriable(
                f"{_shown(request)} answered {status}",
                retry_after_s(response.headers.get("retry-after")),
                reason=f"http_{status}",
            )
        raise PoisonError("transform", f"{_shown(request)} answered {status}")

    async def aclose(self) -> None:
        await self._inner.aclose()


def new_client(
    timeout_s: float, verify_tls: bool, ca_file: str | None, max_connections: int = 100
) -> httpx.AsyncClient:
    """The shared client: TRANSFORM_HTTP_TIMEOUT_S for connect, read, write and pool waits;
    certificates verified against TRANSFORM_HTTP_CA_FILE (or the system's bundle) unless
    TRANSFORM_HTTP_VERIFY_TLS is false; no retries of its own (the runner retries). The pool
    keeps as many connections as calls may be in flight (TRANSFORM_CONCURRENCY, 100 at
    least), so concurrent calls neither wait for a connection nor open one per call.

    Requests go out through aiohttp (`httpx-aiohttp`'s transport): its C parser and
    connection pool cost 0.45-0.5 ms of CPU a call where httpcore's cost 0.75-1.2 ms
    (`python -m bench.transforms`), and at 16 calls in flight that is the difference between
    8x and 11x the sequential rate. The client transforms see is still httpx's."""
    verify: Any = False
    if verify_tls:
        verify = ssl.create_default_context(cafile=ca_file) if ca_file else True
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    inner = AiohttpTransport(verify=verify, limits=limits, trust_env=False)
    return httpx.AsyncClient(
        transport=ClassifyingTransport(inner),
        timeout=httpx.Timeout(timeout_s),
        follow_redirects=False,
    )
