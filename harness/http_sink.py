"""A real HTTP server on loopback that records what it receives and fails on demand.

The HTTP writer's tests need a receiver that behaves like the services a connector pushes to
(an email service, a CRM) on a bad day: 5xx, 429 with `Retry-After`, answers slower than
the client's timeout, connections dropped mid-request, requests that never get an answer.
Faults are planned per path, first in first out, so tests sharing one server do not
disturb each other::

    sink = HttpSink().start()
    sink.plan("/crm", Fault(status=503), Fault(status=429, retry_after="2"), Fault(drop=True))
    ... POST to sink.url("/crm") ...
    sink.accepted("/crm")        # requests answered 2xx, in arrival order

Chaos by ratio, drawn from a random generator given its start value so a run repeats, and
a receiver that deduplicates on an idempotency header, as a careful partner API does::

    sink.chaos("/crm", fail_ratio=0.2, stall_ratio=0.05, stall_s=2.0, rng=7)
    sink.idempotent("/crm", header="Idempotency-Key")
    sink.repeats("/crm")         # requests whose key was already accepted: answered as the
                                 # first time (2xx) and not accepted again

It is the standard library's threading HTTP/1.1 server, keep-alive included, so the client
under test meets real sockets and real framing.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from harness.process import Service

__all__ = ["Fault", "HttpSink", "Received"]


@dataclass(frozen=True, slots=True)
class Fault:
    """How to answer one request. `drop`: read it, then close the connection without a
    word; `hang`: read it and answer nothing until :meth:`HttpSink.release` or close."""

    status: int = 200
    retry_after: str | None = None
    delay_s: float = 0.0
    drop: bool = False
    hang: bool = False
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Received:
    """One request as it arrived; `status` is what it was answered (None: no answer)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int | None
    at: float = field(default=0.0, compare=False)
    repeat: bool = field(default=False, compare=False)
    """Its idempotency key had been accepted before: answered as then, not accepted again."""

    def json(self) -> Any:
        return json.loads(self.body)

    def documents(self) -> list[Any]:
        """The JSON documents of the body: an array's items, NDJSON lines, or the one."""
        if self.headers.get("content-type", "").startswith("application/x-ndjson"):
            return [json.loads(line) for line in self.body.decode().splitlines() if line]
        parsed = json.loads(self.body)
        return parsed if isinstance(parsed, list) else [parsed]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    sink: HttpSink


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        return

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        sink = self.server.sink
        fault = sink._next_fault(path, body)
        headers = {k.lower(): v for k, v in self.headers.items()}
        status = None if fault.drop or fault.hang else fault.status
        repeat = sink._repeat(path, headers, status)
        if repeat is not None:
            fault, status = Fault(status=repeat), repeat
        received = Received(self.command, path, headers, body, status, time.monotonic())
        sink._record(received if repeat is None else replace(received, repeat=True))
        with sink._in_flight(path):
            if fault.hang:
                sink._released.wait()
                self._abort()
                return
            if fault.delay_s:
                time.sleep(fault.delay_s)
            if fault.drop:
                self._abort()
                return
            self.send_response(fault.status)
            if fault.retry_after is not None:
                self.send_header("Retry-After", fault.retry_after)
            self.send_header("Content-Length", str(len(fault.body)))
            self.end_headers()
            self.wfile.write(fault.body)

    def _abort(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    do_POST = _handle
    do_PUT = _handle
    do_PATCH = _handle
    do_DELETE = _handle
    do_GET = _handle


class HttpSink(Service):
    """The recording, fault-injecting server; see the module docstring."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = _Server((host, port), _Handler)
        self._server.sink = self
        self.host = host
        self.port: int = self._server.server_address[1]
        self._lock = threading.Lock()
        self._plans: dict[str, list[Fault]] = {}
        self._rules: dict[str, list[tuple[Callable[[bytes], bool], Fault]]] = {}
        self._received: list[Received] = []
        self._chaos_status = 500
        self._released = threading.Event()
        self._current: dict[str, int] = {}
        self._peak: dict[str, int] = {}
        self._thread: threading.Thread | None = None
        self._chaos: dict[str, tuple[float, float, float, random.Random]] = {}
        self._keys: dict[str, str] = {}  # path -> idempotency header (lower case)
        self._accepted_keys: dict[str, dict[str, int]] = {}  # path -> key -> status

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def start(self) -> HttpSink:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="http-sink", daemon=True
        )
        self._thread.start()
        return self

    def plan(self, path: str, *faults: Fault) -> None:
        """Answer the next requests to `path` with `faults`, in order, then 200 again."""
        with self._lock:
            self._plans.setdefault(path, []).extend(faults)

    def reject_when(self, path: str, matches: Callable[[bytes], bool], fault: Fault) -> None:
        """Answer every request to `path` whose body `matches` with `fault` (e.g. a 400)."""
        with self._lock:
            self._rules.setdefault(path, []).append((matches, fault))

    def chaos(
        self,
        path: str,
        *,
        fail_ratio: float = 0.0,
        stall_ratio: float = 0.0,
        stall_s: float = 0.0,
        status: int = 500,
        rng: int | random.Random = 0,
    ) -> None:
        """Answer `fail_ratio` of the requests to `path` that no plan or rule decides with
        `status`, and hold `stall_ratio` of them `stall_s` before answering 200 (past the
        client's timeout, it has given up: the request still counts as accepted)."""
        draw = rng if isinstance(rng, random.Random) else random.Random(rng)  # noqa: S311
        with self._lock:
            self._chaos[path] = (fail_ratio, stall_ratio, stall_s, draw)
            self._chaos_status = status

    def idempotent(self, path: str, header: str = "Idempotency-Key") -> None:
        """Deduplicate requests to `path` on `header`: a key already accepted (2xx) is
        answered as the first time and not accepted again (`Received.repeat`)."""
        with self._lock:
            self._keys[path] = header.lower()
            self._accepted_keys.setdefault(path, {})

    def repeats(self, path: str | None = None) -> list[Received]:
        """Requests answered as repeats of a key accepted before."""
        return [r for r in self.received(path) if r.repeat]

    def _repeat(self, path: str, headers: dict[str, str], status: int | None) -> int | None:
        """The status a repeated key is answered with, None for a first time (which is
        remembered when it is accepted)."""
        with self._lock:
            header = self._keys.get(path)
            if header is None or header not in headers:
                return None
            seen = self._accepted_keys[path]
            key = headers[header]
            if key in seen:
                return seen[key]
            if status is not None and 200 <= status < 300:
                seen[key] = status
            return None

    def release(self) -> None:
        """Let hanging requests go: their connections are closed without an answer."""
        self._released.set()

    def received(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self._received if path is None or r.path == path]

    def accepted(self, path: str | None = None) -> list[Received]:
        """Requests answered 2xx, in arrival order (not the repeats of an idempotency key
        already accepted)."""
        return [
            r
            for r in self.received(path)
            if r.status is not None and r.status < 300 and not r.repeat
        ]

    def _next_fault(self, path: str, body: bytes) -> Fault:
        with self._lock:
            for matches, fault in self._rules.get(path, []):
                if matches(body):
                    return fault
            planned = self._plans.get(path)
            if planned:
                return planned.pop(0)
            chaos = self._chaos.get(path)
            if chaos is not None:
                fail_ratio, stall_ratio, stall_s, draw = chaos
                roll = draw.random()
                if roll < fail_ratio:
                    return Fault(status=self._chaos_status)
                if roll < fail_ratio + stall_ratio:
                    return Fault(delay_s=stall_s)
            return Fault()

    def _record(self, received: Received) -> None:
        with self._lock:
            self._received.append(received)

    def peak_in_flight(self, path: str) -> int:
        """The most requests to `path` that were being answered at the same time."""
        with self._lock:
            return self._peak.get(path, 0)

    def _in_flight(self, path: str) -> _InFlight:
        return _InFlight(self, path)

    def close(self) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()


class _InFlight:
    """Counts requests being answered, so tests can check a client's concurrency cap."""

    def __init__(self, sink: HttpSink, path: str) -> None:
        self._sink = sink
        self._path = path

    def __enter__(self) -> None:
        sink, path = self._sink, self._path
        with sink._lock:
            sink._current[path] = sink._current.get(path, 0) + 1
            sink._peak[path] = max(sink._peak.get(path, 0), sink._current[path])

    def __exit__(self, *exc: object) -> None:
        with self._sink._lock:
            self._sink._current[self._path] -= 1
