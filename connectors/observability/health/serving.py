"""An HTTP server on a thread and event loop of its own, for the pod's endpoints.

Why a thread: a transform that hogs the pipeline's loop, or a write that never returns,
must not also silence the endpoints that would reveal it. The one-process server
(`server.HealthServer`) and the `WORKERS` parent's (`gather.WorkersServer`) share this
lifecycle: `start()` returns once the port is bound (port 0 picks a free one) or raises the
`FatalError` naming METRICS_HOST / METRICS_PORT; `stop()` ends the loop and joins.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import threading
from collections.abc import Awaitable, Callable

from connectors.core.errors import FatalError

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def cannot_listen(exc: Exception, host: str, port: int) -> FatalError:
    """Why the server could not listen, as one line naming the variable to fix."""
    where = f"cannot listen on {host}:{port}"
    if isinstance(exc, socket.gaierror | ValueError):  # ValueError: bad IDNA, a NUL
        reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
        return FatalError(
            f"METRICS_HOST={host!r}: {where}: not a host name or address this machine can "
            f"resolve ({reason})"
        )
    code = exc.errno if isinstance(exc, OSError) else None
    if code == errno.EADDRINUSE:
        return FatalError(
            f"METRICS_PORT={str(port)!r}: {where}: the port is already in use by another process"
        )
    if code == errno.EADDRNOTAVAIL:
        return FatalError(
            f"METRICS_HOST={host!r}: {where}: not an address of this machine "
            f"(0.0.0.0 listens on every interface)"
        )
    if code == errno.EACCES:
        return FatalError(
            f"METRICS_PORT={str(port)!r}: {where}: permission denied (ports below 1024 need "
            f"privileges)"
        )
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return FatalError(f"METRICS_HOST={host!r} METRICS_PORT={str(port)!r}: {where}: {detail}")


class ThreadedServer:
    """The lifecycle; a subclass implements `_main()`, which calls `_listen(handler)`
    once it is ready to answer and then awaits `self._stopping`."""

    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._requested_port = port
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._port = 0

    @property
    def port(self) -> int:
        return self._port

    def start(self) -> None:
        self._thread = threading.Thread(target=self._serve, name="health-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=30):
            raise FatalError(
                f"METRICS_HOST={self._host!r}: the health server did not listen within 30 s"
            )
        if self._error is not None:
            raise self._error

    def stop(self, timeout: float = 10.0) -> None:
        loop, stopping, thread = self._loop, self._stopping, self._thread
        if loop is not None and stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop finished meanwhile
                loop.call_soon_threadsafe(stopping.set)
        if thread is not None:
            thread.join(timeout)

    def _serve(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # noqa: BLE001 - reported to start(), not lost in a thread
            self._error = exc
            self._ready.set()

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        await self._main()

    async def _main(self) -> None:
        raise NotImplementedError

    async def _listen(self, handler: Handler) -> asyncio.Server | None:
        """Bind and tell `start()`; None (the error kept for `start()`) when it cannot."""
        try:
            server = await asyncio.start_server(handler, self._host, self._requested_port)
        except (OSError, ValueError) as exc:
            self._error = cannot_listen(exc, self._host, self._requested_port)
            self._ready.set()
            return None
        self._port = int(server.sockets[0].getsockname()[1])
        self._ready.set()
        return server
