"""The cooperative stop: the batch in flight gets the grace period, then is abandoned.

`connectors.runtime.shutdown` takes the signal and calls `Runner.stop()`; this is what the
run does then. A batch that cannot finish within the grace period is cancelled, not
committed: the next owner of its partitions reads it again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import suppress
from typing import Any

from connectors.runtime.runner import Runner

# the runner's logger: operators filter the loop's lines by that name
_log = logging.getLogger("connectors.runtime.runner")


#: Seconds an abandoned batch's task gets to leave the group and close the writer.
CLOSE_S = 2.0


async def run_until_stopped(runner: Runner, grace_s: float) -> None:
    """Run; once `runner.stop()` was called, allow `grace_s` for the batch in flight, then
    abandon it (uncommitted: the next owner of its partitions replays it)."""
    task = asyncio.ensure_future(runner.run())
    stop_wait = asyncio.ensure_future(runner.stop_requested())
    try:
        done, _ = await asyncio.wait({task, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        if task not in done:
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=grace_s)
            except TimeoutError:
                await _abandon(runner, task, grace_s)
                return
    finally:
        stop_wait.cancel()
    await task


async def _abandon(runner: Runner, task: asyncio.Future[Any], grace_s: float) -> None:
    stage, since = runner.activity()
    where = f" (in {stage} for {time.monotonic() - since:.1f}s)" if stage is not None else ""
    _log.warning("batch in flight abandoned after %.1fs%s; it will be replayed", grace_s, where)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=CLOSE_S)
    if task in done and not task.cancelled():
        with suppress(Exception):
            failure = task.exception()
            if failure is not None:
                _log.warning("while abandoning the batch: %s: %s", type(failure).__name__, failure)
