"""A throwaway Redis server for the KV writer's tests.

Debian's ``redis-server`` runs on a free loopback port with persistence off, so each
test session starts from an empty keyspace and leaves nothing on disk.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

from harness.ports import free_port
from harness.process import ServerProcess, tail

__all__ = ["RedisServer", "RedisStartError"]


class RedisStartError(RuntimeError):
    """redis-server did not answer PING in time; the message ends with its log."""


def _ping(port: int, timeout: float) -> bool:
    """Speak RESP directly, so readiness does not depend on the client library under
    test."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer(ServerProcess):
    """One ``redis-server`` process; :attr:`url` is what a connector's config takes."""

    name = "redis-server"

    def __init__(
        self,
        *,
        port: int | None = None,
        executable: str = "redis-server",
        start_timeout: float = 20.0,
    ) -> None:
        super().__init__(None, prefix="redis-server-", start_timeout=start_timeout)
        self.port = port or free_port()
        self.executable = executable

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.directory / "redis.log"

    def _command(self) -> list[str]:
        binary = shutil.which(self.executable)
        if binary is None:
            raise RedisStartError(f"{self.executable} not found (apt-get install redis-server)")
        return [
            binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--dir", str(self.directory),
            "--logfile", str(self.log_path),
        ]  # fmt: skip

    def start(self) -> RedisServer:
        """Start the server and return once it answers PING."""
        if not self.is_running():
            self._launch(self._command(), output=None)
        return self

    def _wait_until_answering(self) -> None:
        self._poll(
            lambda: _ping(self.port, 1.0),
            RedisStartError,
            f"on port {self.port} (PING)",
            interval=0.05,
        )

    def diagnostics(self) -> str:
        return self.log_tail()

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)
