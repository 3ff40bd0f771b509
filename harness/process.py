"""The lifecycle every server of the harness shares: a child process in its own session,
ready only once it answers, stopped with SIGTERM and then SIGKILL, and never outliving the
Python process that started it (an atexit hook kills what a test run forgot).

Subclasses build the command and say what "answers" means; the rest lives here once.
"""

from __future__ import annotations

import atexit
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self


def tail(path: Path, lines: int) -> str:
    """The end of a log, for an error message; says so when there is none."""
    try:
        content = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(content.splitlines()[-lines:]) or f"({path} is empty)"


class Service:
    """Something a test starts and closes: `with X() as x:` starts it and closes it after."""

    def start(self) -> Self:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class ServerProcess(Service):
    """A local server run as a child process, with a working directory of its own.

    `directory=None` makes a temporary one, removed on close; a given one is kept.
    """

    name = "server"

    def __init__(self, directory: Path | None, *, prefix: str, start_timeout: float) -> None:
        self._owned_dir = directory is None
        self.directory = Path(
            tempfile.mkdtemp(prefix=prefix) if directory is None else directory
        ).resolve()
        self.start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._atexit_registered = False

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def diagnostics(self) -> str:
        """What to show when the server fails to start: its logs, by default none."""
        return ""

    def _launch(self, command: list[str], *, output: Path | None, detach: bool = False) -> None:
        """Spawn `command` (stdout and stderr appended to `output`, or discarded), then wait
        for `_wait_until_answering`; a server that does not come up is killed.

        `detach=True` leaves the server running after this Python process exits."""
        if output is None:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, cwd=self.directory, start_new_session=True,
            )  # fmt: skip
        else:
            with output.open("ab") as log:
                self._process = subprocess.Popen(
                    command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    cwd=self.directory, start_new_session=True,
                )  # fmt: skip
        if not detach and not self._atexit_registered:
            atexit.register(self._atexit)
            self._atexit_registered = True
        try:
            self._wait_until_answering()
        except BaseException:
            self.kill()
            raise

    def _wait_until_answering(self) -> None:
        raise NotImplementedError

    def _poll(
        self,
        answers: Callable[[], bool],
        error: type[Exception],
        where: str,
        interval: float = 0.1,
    ) -> None:
        """Call `answers()` until it is true; raise `error` (with the diagnostics) when the
        process dies or `start_timeout` runs out."""
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise error(
                    f"{self.name} exited with {self._process.returncode}\n{self.diagnostics()}"
                )
            if answers():
                return
            time.sleep(interval)
        raise error(
            f"{self.name} {where} did not answer within {self.start_timeout:.0f} s\n"
            f"{self.diagnostics()}"
        )

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM for a clean shutdown, then SIGKILL if it takes longer than `timeout`."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.send_signal(signal.SIGCONT)  # a paused process cannot act on SIGTERM
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        self._process = None

    def kill(self) -> None:
        """SIGKILL: a crash, for tests of what survives one."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
            process.wait(10)
        self._process = None

    def pause(self) -> None:
        """SIGSTOP: the server keeps its sockets but answers nothing, like a hung host."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after `pause`."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGCONT)

    def close(self) -> None:
        """Stop, and remove the directory if this object created it."""
        self.stop()
        if self._owned_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def _atexit(self) -> None:
        self.kill()
        if self._owned_dir:
            shutil.rmtree(self.directory, ignore_errors=True)
