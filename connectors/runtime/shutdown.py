"""SIGTERM and SIGINT: stop within SHUTDOWN_GRACE_S, even when the pipeline cannot answer.

The runner stops cooperatively: a stop request lets the batch in flight finish within the
grace period, then the reader leaves the group (`connectors.runtime.stopping`). A transform stuck
in a loop or a blocking call holds the event loop, though, and then neither an asyncio
signal handler nor that grace timer ever runs. So signals are taken by a thread of its
own, woken through `signal.set_wakeup_fd` (the interpreter writes the signal number there
as the signal arrives, whatever the main thread is doing). The thread hands the stop
request to the loop and, if the process is still there SHUTDOWN_GRACE_S plus `MARGIN_S`
later, says that the batch in flight was abandoned, flushes the logs and ends the process
with exit code 0. Nothing of that batch was committed: the next owner of its partitions
reads it again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

_log = logging.getLogger("connectors.runtime.shutdown")

#: Seconds after the grace period before the process ends without the pipeline's answer:
#: the time the cooperative path needs to leave the group and close the writer.
MARGIN_S = 2.0
SIGNALS = (signal.SIGTERM, signal.SIGINT)

Activity = Callable[[], tuple[str | None, float]]


def _ignore(signum: int, frame: FrameType | None) -> None:
    """The Python-level handler: the watchdog thread acts on the signal, not the main one."""


def flush_logs() -> None:
    for handler in logging.getLogger().handlers:
        try:
            handler.flush()
        except Exception:  # noqa: BLE001, S110 - leaving anyway; nothing left to tell
            pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


class Watchdog:
    """Installed from the main thread around `run_until_stopped`; see the module docstring."""

    def __init__(
        self,
        grace_s: float,
        *,
        margin_s: float = MARGIN_S,
        leave: Callable[[int], Any] = os._exit,
    ) -> None:
        self._grace_s = grace_s
        self._margin_s = margin_s
        self._activity: Activity | None = None
        self._leave = leave
        self._done = threading.Event()
        self._previous: dict[int, Any] = {}
        self._previous_fd = -1
        self._sockets: tuple[socket.socket, socket.socket] | None = None
        self._thread: threading.Thread | None = None

    def install(
        self,
        stop: Callable[[], None],
        loop: asyncio.AbstractEventLoop,
        activity: Activity | None = None,
    ) -> None:
        """Route SIGTERM and SIGINT to `stop` (called on `loop`) and arm the deadline;
        `activity` names the stage a batch was stuck in when it is abandoned."""
        self._activity = activity
        receiver, sender = socket.socketpair()
        sender.setblocking(False)
        self._sockets = (receiver, sender)
        self._previous_fd = signal.set_wakeup_fd(sender.fileno(), warn_on_full_buffer=False)
        self._previous = {sig: signal.signal(sig, _ignore) for sig in SIGNALS}
        self._thread = threading.Thread(
            target=self._watch, args=(receiver, stop, loop), name="shutdown", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """The process is leaving by itself: stand down and restore the signal handlers."""
        self._done.set()
        if self._sockets is None:
            return
        signal.set_wakeup_fd(self._previous_fd)
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        receiver, sender = self._sockets
        try:
            sender.send(b"\0")
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        receiver.close()
        sender.close()
        self._sockets = None

    def _watch(
        self, receiver: socket.socket, stop: Callable[[], None], loop: asyncio.AbstractEventLoop
    ) -> None:
        received = self._wait_for_signal(receiver)
        if received is None:
            return
        _log.info(
            "%s: finishing the batch in flight (SHUTDOWN_GRACE_S=%s)",
            signal.Signals(received).name,
            f"{self._grace_s:g}",
        )
        try:
            loop.call_soon_threadsafe(stop)
        except RuntimeError:
            pass  # the loop is closed: the process is on its way out already
        if not self._done.wait(self._grace_s + self._margin_s):
            self._abandon()

    def _wait_for_signal(self, receiver: socket.socket) -> int | None:
        while not self._done.is_set():
            try:
                data = receiver.recv(64)
            except OSError:
                return None
            if not data:
                return None
            for number in data:
                if number in SIGNALS:
                    return number
        return None

    def _abandon(self) -> None:
        stage, since = self._activity() if self._activity is not None else (None, 0.0)
        where = (
            f" (stuck in {stage} for {time.monotonic() - since:.1f}s)" if stage is not None else ""
        )
        _log.warning(
            "batch in flight abandoned after %.1fs%s; it will be replayed",
            self._grace_s + self._margin_s,
            where,
        )
        flush_logs()
        self._leave(0)
