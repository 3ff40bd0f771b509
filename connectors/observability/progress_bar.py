"""`--until-caught-up` on a terminal: a progress bar (records done of total, rate, ETA).

Drawn with `rich` on stderr, where the catch-up lines go otherwise; when stderr is not a
terminal (a pod's log, a pipe, CI) the plain lines stay, one every second, because a log
store cannot show a bar redrawn in place (`reporter`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from rich.progress import TaskID

__all__ = ["Bar", "reporter"]


class Bar:
    """The catch-up bar: `show` moves it; a plain line (`bar(line)`) prints above it."""

    def __init__(self, stream: TextIO) -> None:
        # imported here: `rich` is 2 MB of every connector process that never draws a bar
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
        )

        self._console = Console(file=stream, force_terminal=True)
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("records"),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]} records/s"),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[partitions]} partitions"),
            console=self._console,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._task: TaskID | None = None

    def __call__(self, line: str) -> None:
        self._console.print(line, markup=False, highlight=False)

    def show(self, done: int, total: int, rate: float, partitions: int, finished: bool) -> None:
        shown = f"{rate:,.0f}"
        state = "caught up" if finished else "catching up"
        if self._task is None:
            self._progress.start()
            self._task = self._progress.add_task(
                state, total=total, rate=shown, partitions=partitions
            )
        self._progress.update(
            self._task,
            description=state,
            completed=done,
            total=total,
            rate=shown,
            partitions=partitions,
        )
        if finished:
            self.close()

    def close(self) -> None:
        if self._task is not None:
            self._progress.refresh()
            self._progress.stop()


def reporter(stream: TextIO | None = None) -> Callable[[str], None]:
    """Where catch-up progress goes: a `Bar` on a terminal, plain lines otherwise."""
    out = stream if stream is not None else sys.stderr
    if out.isatty():
        return Bar(out)

    def line(text: str) -> None:
        print(text, file=out, flush=True)

    return line
