"""The pod's `/metrics` and probes under `WORKERS=N`: asked of every worker, combined.

Why an aggregating parent rather than prometheus_client's multiprocess mode: the probes
need each worker's live state (its partitions, its wedged stage, its writer check), which
no shared metrics directory holds; and the per-partition gauges are removed when a
partition moves to another pod, which the multiprocess mode cannot do (a dead series
would keep an alert firing). Each worker therefore runs the one-process server unchanged
on a loopback port of its own (`HealthServer`), and this server, on METRICS_PORT, asks
them all at each request and combines the answers (`combine`). A scrape costs one
loopback request per worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric

from connectors.config.observability import HealthSettings
from connectors.observability.health import combine, page
from connectors.observability.health.server import Answer, answer
from connectors.observability.health.serving import ThreadedServer

__all__ = ["Member", "WorkersServer"]

_ENDPOINTS = ("/metrics", "/livez", "/readyz", "/healthz", "/", "/status.json")
_OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Member:
    """One worker as the server sees it: its index, pid, and loopback port (None until it
    has told)."""

    worker: int
    pid: int | None
    port: int | None


def _json(status: int, body: dict[str, Any]) -> Answer:
    return status, "application/json", json.dumps(body, sort_keys=True).encode()


class _Families:
    """A collector that yields families already combined, for prometheus_client's encoders."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


async def _get(port: int, path: str, accept: str, timeout_s: float) -> tuple[int, bytes]:
    """One GET to a worker on loopback; its server closes the connection after answering."""

    async def call() -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: {accept}\r\n"
                "Connection: close\r\n\r\n".encode("latin-1")
            )
            await writer.drain()
            raw = await reader.read()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        head, _, body = raw.partition(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]), body

    return await asyncio.wait_for(call(), timeout_s)


class WorkersServer(ThreadedServer):
    """`/metrics` and the three probes on METRICS_PORT, combined from the workers'.

    `members()` says who the workers are now; it is called from this server's thread.
    """

    def __init__(
        self,
        members: Callable[[], Sequence[Member]],
        *,
        connector: str,
        group: str,
        port: int,
        host: str,
        settings: HealthSettings,
    ) -> None:
        super().__init__(host, port)
        self._members = members
        self._connector = connector
        self._group = group
        self._settings = settings
        # A worker's /healthz makes two bounded calls (its pipeline, then the brokers).
        self._timeout_s = 2 * settings.timeout_s + 1.0

    async def _main(self) -> None:
        assert self._stopping is not None  # noqa: S101 - set by ThreadedServer._run

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await answer(reader, writer, self._respond, self._timeout_s)

        server = await self._listen(handle)
        if server is None:
            return
        async with server:
            await self._stopping.wait()

    async def _ask(self, member: Member, path: str, accept: str) -> tuple[int | None, bytes, str]:
        if member.port is None:
            return None, b"", "not listening yet"
        try:
            status, body = await _get(member.port, path, accept, self._timeout_s)
        except (OSError, TimeoutError, ValueError, IndexError) as exc:
            return None, b"", f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return status, body, ""

    async def _gather(self, path: str) -> list[combine.Answer]:
        members = list(self._members())
        found = await asyncio.gather(*(self._ask(m, path, "application/json") for m in members))
        answers = []
        for member, (status, raw, error) in zip(members, found, strict=True):
            body: dict[str, Any] = {}
            if status is not None:
                try:
                    body = json.loads(raw)
                except ValueError:
                    status, error = None, "not JSON"
            answers.append(combine.Answer(member.worker, member.pid, status, body, error or None))
        return answers

    async def _metrics(self, accept: str) -> Answer:
        members = list(self._members())
        found = await asyncio.gather(*(self._ask(m, "/metrics", _OPENMETRICS) for m in members))
        texts = [raw.decode() for status, raw, _ in found if status == 200]
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Families(combine.metrics(texts)))
        encoder, content_type = choose_encoder(accept)
        return 200, content_type, encoder(registry)

    async def _healthz(self) -> tuple[int, dict[str, Any]]:
        answers = await self._gather("/healthz")
        stuck_after_s = max(
            [float(a.body["stuck_after_s"]) for a in answers if "stuck_after_s" in a.body]
            or [self._settings.stuck_after_s]
        )
        return combine.healthz(answers, self._connector, self._group, stuck_after_s)

    async def _status(self) -> dict[str, Any]:
        answers = await self._gather("/status.json")
        return combine.status(answers, self._connector, self._group)

    async def _respond(self, method: str, path: str, accept: str) -> Answer:
        if path not in _ENDPOINTS:
            return _json(404, {"error": "not found", "endpoints": list(_ENDPOINTS)})
        if method not in ("GET", "HEAD"):
            return _json(405, {"error": f"{method} not allowed"})
        try:
            if path == "/metrics":
                return await self._metrics(accept)
            if path == "/status.json":
                return _json(200, await self._status())
            if path == "/":
                (_, health), status = await asyncio.gather(self._healthz(), self._status())
                return 200, "text/html; charset=utf-8", page.render(health, status)
            if path == "/healthz":
                return _json(*await self._healthz())
            answers = await self._gather(path)
            if path == "/livez":
                return _json(*combine.livez(answers))
            return _json(*combine.readyz(answers))
        except Exception as exc:  # noqa: BLE001 - a probe answers 500, the server lives on
            return _json(500, {"error": f"{type(exc).__name__}: {exc}"})
