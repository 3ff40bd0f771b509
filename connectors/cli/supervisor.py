"""The parent of `WORKERS=N`: start the workers, serve their probes, stop them together.

What the workers are and why is in `connectors.cli.workers`. The parent holds no Kafka
membership and no writer; it waits on the workers' exits, their messages and the signals,
all through one `multiprocessing.connection.wait`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

from connectors.cli import workers
from connectors.config.pipeline import Pipeline
from connectors.core.errors import FatalError
from connectors.core.records import TopicPartition
from connectors.kafka.offsets import BrokerOffsets, OffsetsUnavailable
from connectors.observability import logs
from connectors.observability.health.gather import Member, WorkersServer
from connectors.runtime.shutdown import MARGIN_S, SIGNALS

__all__ = ["Supervisor", "ended", "supervise"]

_log = logging.getLogger("connectors.cli.supervisor")
#: Seconds past SHUTDOWN_GRACE_S plus the workers' own margin before a worker that has not
#: left is killed.
KILL_AFTER_S = 5.0


def ended(exitcode: int | None) -> str:
    """How a process ended, in words: 'exited with status 1', 'was killed by SIGKILL'."""
    if exitcode is None:
        return "is still running"
    if exitcode < 0:
        try:
            return f"was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"was killed by signal {-exitcode}"
    return f"exited with status {exitcode}"


@dataclass
class _Worker:
    index: int
    process: BaseProcess
    conn: Connection
    port: int | None = None
    assigned: frozenset[TopicPartition] | None = None
    caught_up: bool = False
    open: bool = field(default=True)

    @property
    def name(self) -> str:
        return f"worker {self.index} (pid {self.process.pid})"

    def receive(self) -> None:
        """Every message waiting on the pipe: its port, its catch-up reports."""
        try:
            while self.open and self.conn.poll():
                message: tuple[Any, ...] = self.conn.recv()
                if message[0] == "port":
                    self.port = int(message[1])
                elif message[0] == "caught_up":
                    self.assigned = frozenset((str(t), int(p)) for t, p in message[1])
                    self.caught_up = bool(message[2])
        except (EOFError, OSError):
            self.open = False


class Supervisor:
    def __init__(
        self, pipeline: Pipeline, environ: Mapping[str, str], *, until_caught_up: bool
    ) -> None:
        self._pipeline = pipeline
        self._environ = environ
        self._count = pipeline.runtime.workers
        self._until_caught_up = until_caught_up
        self._workers: list[_Worker] = []
        self._stopping: str | None = None
        self._wake_r, self._wake_w = os.pipe()
        self._last_look = 0.0

    def run(self) -> int:
        server = self._serve()
        previous = {sig: signal.signal(sig, self._on_signal) for sig in SIGNALS}
        failed: _Worker | None = None
        try:
            self._start_all()
            failed = self._watch()
            if failed is not None:
                _log.error(
                    "%s %s; stopping the other workers", failed.name, ended(failed.process.exitcode)
                )
            self._stop_all()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if server is not None:
                server.stop()
            for worker in self._workers:
                worker.conn.close()
            os.close(self._wake_r)
            os.close(self._wake_w)
        return self._verdict(failed)

    def _members(self) -> list[Member]:
        return [Member(w.index, w.process.pid, w.port) for w in list(self._workers)]

    def _serve(self) -> WorkersServer | None:
        runtime = self._pipeline.runtime
        if not runtime.metrics_port:
            return None
        server = WorkersServer(
            self._members,
            connector=self._pipeline.name,
            group=self._pipeline.group_id,
            port=runtime.metrics_port,
            host=runtime.metrics_host,
            settings=self._pipeline.health,
        )
        server.start()
        return server

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._stopping is None:
            self._stopping = signal.Signals(signum).name
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"\0")

    def _start_all(self) -> None:
        context = multiprocessing.get_context("spawn")
        for index in range(self._count):
            if self._stopping is not None:
                return
            env = workers.worker_environment(self._environ, index, self._pipeline)
            ours, theirs = context.Pipe(duplex=False)
            process = context.Process(
                target=workers.work,
                args=(index, env, self._until_caught_up, theirs),
                name=f"worker-{index}",
            )
            process.start()
            theirs.close()
            self._workers.append(_Worker(index, process, ours))
            _log.info("worker %d of %d started (pid %s)", index, self._count, process.pid)

    def _wait(self, timeout: float) -> None:
        """Until a worker exits, a message or a signal arrives, or `timeout` passes."""
        waited: list[Any] = [self._wake_r]
        for worker in self._workers:
            waited.append(worker.process.sentinel)
            if worker.open:
                waited.append(worker.conn)
        if self._wake_r in wait(waited, timeout):
            os.read(self._wake_r, 64)
        for worker in self._workers:
            worker.receive()

    def _watch(self) -> _Worker | None:
        """Until a stop is asked or every partition is caught up (None), or a worker ends
        by itself (that worker)."""
        while True:
            if self._stopping is not None:
                _log.info(
                    "%s: stopping %d workers (SHUTDOWN_GRACE_S=%g)",
                    self._stopping,
                    len(self._workers),
                    self._pipeline.shutdown.grace_s,
                )
                return None
            for worker in self._workers:
                if worker.process.exitcode is not None:
                    return worker
            if self._until_caught_up and self._caught_up():
                _log.info("every partition is caught up: stopping %d workers", self._count)
                self._stopping = "caught up"
                return None
            self._wait(workers.REPORT_EVERY_S)

    def _caught_up(self) -> bool:
        """Every partition of TOPICS held by a worker that reports it caught up. Asked of
        the brokers (which partitions exist) only once the workers' reports say so."""
        reports = [w.assigned for w in self._workers]
        if any(r is None for r in reports) or not all(
            w.caught_up for w in self._workers if w.assigned
        ):
            return False
        held = [tp for r in reports if r is not None for tp in r]
        now = time.monotonic()
        if not held or len(held) != len(set(held)) or now - self._last_look < 1.0:
            return False
        self._last_look = now
        try:
            existing = asyncio.run(self._partitions())
        except OffsetsUnavailable as exc:
            _log.warning("cannot tell which partitions exist yet: %s", exc)
            return False
        return bool(existing) and existing <= set(held)

    async def _partitions(self) -> set[TopicPartition]:
        pipeline = self._pipeline
        offsets = BrokerOffsets(
            pipeline.kafka,
            pipeline.group_id,
            f"{pipeline.name}-supervisor",
            pipeline.health.timeout_s,
        )
        try:
            return await offsets.partitions(pipeline.runtime.topics)
        finally:
            await offsets.close()

    def _stop_all(self) -> None:
        """SIGTERM to every worker still there; they get SHUTDOWN_GRACE_S for their batch,
        then their own margin; whoever is left after that is killed."""
        for worker in self._workers:
            if worker.process.exitcode is None:
                worker.process.terminate()
        deadline = time.monotonic() + self._pipeline.shutdown.grace_s + MARGIN_S + KILL_AFTER_S
        while any(w.process.exitcode is None for w in self._workers):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._wait(left)
        for worker in self._workers:
            if worker.process.exitcode is None:
                _log.error("%s did not stop in time: killed", worker.name)
                worker.process.kill()
            worker.process.join(KILL_AFTER_S)

    def _verdict(self, failed: _Worker | None) -> int:
        if failed is not None:
            raise FatalError(
                f"{failed.name} {ended(failed.process.exitcode)}; the other workers were stopped"
            )
        bad = [
            w
            for w in self._workers
            if w.process.exitcode not in (0, -signal.SIGTERM)  # -SIGTERM: before it began
        ]
        if bad:
            raise FatalError(
                ", ".join(f"{w.name} {ended(w.process.exitcode)}" for w in bad) + " while stopping"
            )
        return 0


def supervise(pipeline: Pipeline, environ: Mapping[str, str], *, until_caught_up: bool) -> int:
    """`connector run` with WORKERS > 1: the parent's whole life; its exit code."""
    workers.check_member_ids(pipeline, pipeline.runtime.workers)
    logs.setup(pipeline.runtime.log_level, pipeline.name, pipeline.logging)
    return Supervisor(pipeline, environ, until_caught_up=until_caught_up).run()
