"""`WORKERS=N`: N members of the consumer group in N processes, one pod.

One Python process moves batches on one core. With N > 1, `connector run` validates the
environment once, then becomes a parent that starts N workers (multiprocessing, spawn:
fresh interpreters, no state shared) and does nothing else but watch them:

- each worker is the one-process `connector run` unchanged, a full pipeline (reader,
  writer, health server) on the partitions the group gives it; with static membership its
  `KAFKA_GROUP_INSTANCE_ID` gets the suffix `-<index>`;
- each worker serves its probes on a loopback port it tells the parent; the parent serves
  METRICS_PORT, combining them (`connectors.observability.health.gather`);
- SIGTERM (or SIGINT) to the parent is passed to every worker, which finishes its batch
  within SHUTDOWN_GRACE_S, commits and leaves; the parent exits 0 when all of them did;
- a worker that ends by itself (a crash, `kill -9`, a fatal error) leaves its partitions
  without a consumer until the group notices: the parent stops the others the same way
  and exits 1 naming the worker and how it ended, so that Kubernetes restarts the pod
  rather than it running on with a hole;
- a worker whose parent is gone (killed) stops as on SIGTERM;
- `--until-caught-up`: each worker reports its assignment and whether that is caught up
  (`CatchUp`), but keeps its membership; the parent stops them all once every partition
  of TOPICS is held by a worker that is caught up. A worker never leaves early on its
  own, so no worker's exit moves partitions to the others while they finish, and a
  worker that holds no partition (more workers than partitions) simply waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Mapping
from multiprocessing.connection import Connection
from typing import Any

from connectors.config.pipeline import Pipeline
from connectors.core.errors import ConfigError, Problem
from connectors.runtime.catch_up import CatchUp
from connectors.runtime.runner import Runner
from connectors.runtime.stopping import run_until_stopped

__all__ = ["Link", "current", "worker_environment"]

_log = logging.getLogger("connectors.cli.workers")
_LINK: Link | None = None
#: Seconds between a worker's catch-up reports.
REPORT_EVERY_S = 1.0


def current() -> Link | None:
    """This process's link to its parent when it is a worker, else None."""
    return _LINK


def worker_environment(
    environ: Mapping[str, str], index: int, pipeline: Pipeline
) -> dict[str, str]:
    """The environment of worker `index`: the parent's, with its own static member id."""
    env = {k: v for k, v in environ.items() if k.upper() not in ("WORKERS",)}
    env["WORKERS"] = "1"
    member = pipeline.kafka.group_instance_id
    if member is not None:
        for key in [k for k in env if k.upper() == "KAFKA_GROUP_INSTANCE_ID"]:
            del env[key]
        env["KAFKA_GROUP_INSTANCE_ID"] = f"{member}-{index}"
    return env


def check_member_ids(pipeline: Pipeline, count: int) -> None:
    """Every worker's suffixed static member id must still be a valid one."""
    member = pipeline.kafka.group_instance_id
    if member is not None and len(f"{member}-{count - 1}") > 249:
        raise ConfigError(
            [
                Problem(
                    "KAFKA_GROUP_INSTANCE_ID",
                    f"at most {249 - len(f'-{count - 1}')} characters with WORKERS={count} "
                    f"(each worker adds -<n>)",
                    member,
                )
            ]
        )


class Link:
    """A worker's end of the pipe to its parent: where its probes listen, and how far it
    has caught up. Sends never raise: a parent that is gone is noticed by `_follow_parent`."""

    def __init__(self, index: int, conn: Connection) -> None:
        self.index = index
        self._conn = conn
        self._lock = threading.Lock()

    def _send(self, message: tuple[Any, ...]) -> None:
        with self._lock, contextlib.suppress(OSError, ValueError):
            self._conn.send(message)

    def serving(self, port: int) -> None:
        self._send(("port", port))

    async def run(self, runner: Runner, grace_s: float, until_caught_up: bool) -> None:
        """`run_until_stopped`, reporting catch-up to the parent instead of ending on it."""
        watch = asyncio.ensure_future(self._watch(runner)) if until_caught_up else None
        try:
            await run_until_stopped(runner, grace_s)
        finally:
            if watch is not None:
                watch.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watch

    async def _watch(self, runner: Runner) -> None:
        def report(line: str) -> None:
            _log.info("worker %d: %s", self.index, line)

        catch_up = CatchUp(runner.reader, report, every_s=10.0)
        while True:
            try:
                finished = await catch_up.done()
                assigned = runner.reader.assignment()
            except Exception:  # noqa: BLE001 - not started, or revoked meanwhile: ask again
                finished, assigned = False, set()
            self._send(("caught_up", sorted(assigned), finished))
            await asyncio.sleep(REPORT_EVERY_S)


def _follow_parent() -> None:
    """Stop this worker as on SIGTERM if its parent goes away (killed, not just exiting:
    a parent that exits waits for its workers first)."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    sentinel = parent.sentinel

    def watch() -> None:
        multiprocessing.connection.wait([sentinel])
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def work(index: int, environ: dict[str, str], until_caught_up: bool, conn: Connection) -> None:
    """A worker process: `connector run` with a link to the parent; leaves with its code."""
    global _LINK  # noqa: PLW0603 - one link per process, set before anything runs
    _LINK = Link(index, conn)
    _follow_parent()
    from connectors.cli.main import main  # here: main imports this module

    args = ["run", "--until-caught-up"] if until_caught_up else ["run"]
    code = main(args, environ)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
