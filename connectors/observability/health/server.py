"""`/metrics`, `/livez`, `/readyz` and `/healthz` over HTTP on METRICS_PORT, and the
status page (`/`, with its `/status.json`).

Why a thread and an event loop of its own: a transform that hogs the pipeline's loop, or a
write that never returns, must not also silence the endpoints that would reveal it. The
server, its Kafka clients and the offset sampler run apart from the pipeline and reach
into it only through `PipelineStatus`, every call bounded by a timeout.

Why separate Kafka clients: committed offsets are read with an admin client and end
offsets with a consumer that has no group (`connectors.kafka.offsets`), so no probe ever
joins, leaves or rebalances the group that the pipeline consumes in.

Each answer is 200 when healthy and 503 when not, with a JSON body of figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from connectors.config.observability import HealthSettings
from connectors.kafka.offsets import BrokerOffsets
from connectors.observability import metrics
from connectors.observability.health import page
from connectors.observability.health.check import ConsumerCheck
from connectors.observability.health.judge import blocked
from connectors.observability.health.serving import ThreadedServer, cannot_listen
from connectors.observability.health.status import PipelineStatus

__all__ = ["Answer", "HealthServer", "answer", "cannot_listen"]

_log = logging.getLogger("connectors.observability.health")
_PHRASES = {
    200: "OK",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_ENDPOINTS = ("/metrics", "/livez", "/readyz", "/healthz", "/", "/status.json")
_JSON = "application/json"
_HTML = "text/html; charset=utf-8"
Answer = tuple[int, str, bytes]


def _json(status: int, body: dict[str, Any]) -> Answer:
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


async def answer(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    respond: Callable[[str, str, str], Awaitable[Answer]],
    timeout_s: float,
) -> None:
    """Read one request, answer it with `respond(method, path, accept)`, close."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout_s)
        method, path, accept = _parse_head(head)
        status, content_type, body = await respond(method, path, accept)
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


class HealthServer(ThreadedServer):
    """`/metrics` and the three probes, served from a thread of its own.

    `start()` returns once the port is bound (port 0 picks a free one, for tests) and
    raises a `FatalError` naming METRICS_HOST or METRICS_PORT otherwise; `stop()` closes
    the server and its Kafka clients.
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
        super().__init__(host, port)
        self._status = status
        self._settings = settings or HealthSettings.model_validate({})
        self._registry = registry
        self._stuck_after_s = max(self._settings.stuck_after_s, 2 * status.commit_interval_s)
        self._offsets: BrokerOffsets | None = None
        self._check: ConsumerCheck | None = None

    async def _main(self) -> None:
        assert self._stopping is not None  # noqa: S101 - set by ThreadedServer._run
        status, settings = self._status, self._settings
        self._offsets = BrokerOffsets(
            status.kafka, status.group_id, f"{status.connector}-health", settings.timeout_s
        )
        self._check = ConsumerCheck(
            status, self._offsets, self._stuck_after_s, settings.wedge_deadline_s
        )
        server = await self._listen(self._handle)
        if server is None:
            await self._offsets.close()
            return
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
        await answer(reader, writer, self._respond, self._settings.timeout_s)

    async def _respond(self, method: str, path: str, accept: str) -> Answer:
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
            if path == "/status.json":
                return _json(200, self._page_status())
            if path == "/":
                _, health = await self._health()
                return 200, _HTML, page.render(health, self._page_status())
            return await self._healthz()
        except Exception as exc:  # noqa: BLE001 - a probe answers 500, the server lives on
            _log.exception("%s failed", path)
            return _json(500, {"error": f"{type(exc).__name__}: {exc}"})

    async def _livez(self) -> Answer:
        """Fails only when a restart can help: a stage running past the wedge deadline
        without waiting on anything. Asks no broker and no writer: a dependency that is
        down blocks the pipeline, and restarting it would not bring the dependency back."""
        assert self._check is not None  # noqa: S101 - set before the server listens
        stuck = self._check.wedge()
        waiting = blocked(self._status.blocked(), time.monotonic())
        body = {
            "live": stuck is None,
            "wedged": None if stuck is None else stuck.as_dict(),
            "blocked": None if waiting is None else waiting.as_dict(),
        }
        return _json(200 if stuck is None else 503, body)

    async def _readyz(self) -> Answer:
        """Ready once a member of its group whose writer answers its check: a replica that
        holds no partitions (more replicas than partitions) is ready too, or a rollout of
        such a Deployment would never complete."""
        assigned = await self._status.assignment()
        writer = "ok"
        try:
            await self._status.writer_check()
        except TimeoutError:
            writer = f"check did not answer within {self._settings.timeout_s:g}s"
        except Exception as exc:  # noqa: BLE001 - any writer failure means "not ready"
            writer = f"{type(exc).__name__}: {exc}"
        joined = self._status.joined
        ready = joined and writer == "ok"
        body = {
            "ready": ready,
            "joined": joined,
            "assigned_partitions": len(assigned),
            "writer": writer,
        }
        return _json(200 if ready else 503, body)

    def _page_status(self) -> dict[str, Any]:
        """`/status.json`: the pipeline, records processed, records/s, the last dead letters."""
        status = self._status
        return {
            "connector": status.connector,
            "group": status.group_id,
            "pipeline": status.outline,
            **status.recent(),
        }

    async def _healthz(self) -> Answer:
        healthy, body = await self._health()
        return _json(200 if healthy else 503, body)

    async def _health(self) -> tuple[bool, dict[str, Any]]:
        assert self._check is not None  # noqa: S101 - set before the server listens
        report = await self._check.run()
        body = {
            "status": "healthy" if report.healthy else "unhealthy",
            "connector": self._status.connector,
            "group": self._status.group_id,
            "stuck_after_s": self._stuck_after_s,
            "partitions": [p.as_dict() for p in report.partitions],
            "error": report.error,
            "wedged": None if report.wedged is None else report.wedged.as_dict(),
            "blocked": None if report.blocked is None else report.blocked.as_dict(),
        }
        return report.healthy, body
