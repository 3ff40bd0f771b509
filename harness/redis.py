"""A throwaway Redis server for the KV writer's tests.

Debian's ``redis-server`` runs on a free loopback port with persistence off, so each
test session starts from an empty keyspace and leaves nothing on disk.
"""

from __future__ import annotations

import atexit
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from harness.ports import free_port

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


class RedisServer:
    """One ``redis-server`` process; :attr:`url` is what a connector's config takes."""

    def __init__(
        self,
        *,
        port: int | None = None,
        executable: str = "redis-server",
        start_timeout: float = 20.0,
    ) -> None:
        self.port = port or free_port()
        self.executable = executable
        self.start_timeout = start_timeout
        self.directory = Path(tempfile.mkdtemp(prefix="redis-server-"))
        self._process: subprocess.Popen[bytes] | None = None
        self._atexit_registered = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.directory / "redis.log"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

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
        if self.is_running():
            return self
        self._process = subprocess.Popen(
            self._command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, cwd=self.directory, start_new_session=True,
        )  # fmt: skip
        if not self._atexit_registered:
            atexit.register(self.close)
            self._atexit_registered = True
        try:
            self._wait_until_answering()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_answering(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RedisStartError(
                    f"redis-server exited with {self._process.returncode}\n{self.log_tail()}"
                )
            if _ping(self.port, 1.0):
                return
            time.sleep(0.05)
        raise RedisStartError(
            f"redis-server on port {self.port} did not answer PING within "
            f"{self.start_timeout:.0f} s\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return f"({self.log_path} does not exist)"
        return "\n".join(text.splitlines()[-lines:])

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it lingers; nothing is saved either way."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        self._process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
