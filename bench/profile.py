"""Profiles of R, the runtime's hot path: `python -m bench --profile` (or `--only profile`).

- py-spy samples every thread of the `connector run --until-caught-up` process (the asyncio
  loop and the LMDB worker thread) while on CPU, with no instrumentation in the process; the
  summary gives each thread's share, the functions where CPU is spent (self) and the
  runtime's own functions with everything they call (inclusive).
- pyinstrument (`--profiler pyinstrument`) gives the main thread's wall-clock call tree,
  where awaiting the writer's thread shows up as time the loop is not fetching.
"""

from __future__ import annotations

import re
import shutil
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from bench.procs import PYTHON, ROOT, Child

CONNECTOR = ["-m", "connectors.cli", "run", "--until-caught-up"]
PROJECT = ("connectors/", "readers/", "writers/", "transforms/")
# Leaves where a thread waits without using the CPU, though py-spy (in this container) does
# not always mark them idle: the executor's workers waiting for work and the loop in epoll.
IDLE_LEAVES = (
    "_worker (concurrent/futures/thread.py",
    "select (selectors.py",
    "wait (threading.py",
    "_wait_for_signal (connectors/runtime/shutdown.py",  # blocked in recv, for SIGTERM
)
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]*)(?::(?P<line>\d+))?\)$")


def _frame_name(frame: str, with_line: bool) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    file = match["file"]
    for marker in ("site-packages/", "python3.11/"):
        if marker in file:
            file = file.split(marker, 1)[1]
    if with_line and match["line"]:
        return f"{match['func']} ({file}:{match['line']})"
    return f"{match['func']} ({file})"


def summarize_py_spy(raw: Path, top: int = 20) -> str:
    """A text summary of py-spy's collapsed stacks (`-f raw`)."""
    threads: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    idle = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        if any(marker in frames[-1] for marker in IDLE_LEAVES):
            idle += count
            continue
        thread = re.sub(r"thread \(\d+\)(: )?", "", frames[0]) or "(unnamed)"
        threads[thread] += count
        total += count
        leaf[_frame_name(frames[-1], with_line=True)] += count
        for name in {_frame_name(f, with_line=False) for f in frames[1:]}:
            inclusive[name] += count
    if not total:
        return "(no samples)"

    def pct(n: int) -> str:
        return f"{100.0 * n / total:5.1f}%"

    lines = [
        f"{total} busy samples, every thread ({idle} more in idle waits left out: the "
        "executor's workers waiting for work, the event loop in epoll)",
        "",
        "by thread (the LMDB write runs in asyncio_N, the executor's threads):",
    ]
    lines += [f"  {pct(n)}  {name}" for name, n in threads.most_common()]
    lines += ["", f"self time, top {top} (where the CPU is):"]
    lines += [f"  {pct(n)}  {name}" for name, n in leaf.most_common(top)]
    ours = [(k, v) for k, v in inclusive.most_common() if any(p in k for p in PROJECT)]
    lines += ["", "inclusive time, the runtime's own functions (with what they call):"]
    lines += [f"  {pct(n)}  {name}" for name, n in ours[:top]]
    libs = [
        (k, v)
        for k, v in inclusive.most_common()
        if any(p in k for p in ("aiokafka/", "google/protobuf", "prometheus_client/"))
    ]
    lines += ["", "inclusive time, library functions:"]
    lines += [f"  {pct(n)}  {name}" for name, n in libs[:top]]
    return "\n".join(lines)


def py_spy(env: Mapping[str, str], run_dir: Path, rate: int = 250) -> tuple[str, Path]:
    spy = shutil.which("py-spy", path=str(ROOT / ".venv" / "bin")) or shutil.which("py-spy")
    if spy is None:
        raise RuntimeError("py-spy not installed (.venv/bin/pip install py-spy)")
    raw = run_dir / "py-spy.txt"
    cmd = [spy, "record", "-r", str(rate), "--threads", "-f", "raw", "-o", str(raw), "--"]
    Child([*cmd, PYTHON, *CONNECTOR], env, run_dir, "py-spy").wait(7200).check("py-spy")
    return summarize_py_spy(raw), raw


def pyinstrument(env: Mapping[str, str], run_dir: Path, max_lines: int = 80) -> tuple[str, Path]:
    out = run_dir / "pyinstrument.txt"
    cmd = [
        PYTHON, "-m", "pyinstrument", "-r", "text", "--no-color", "--no-unicode",
        "-i", "0.002", "--show", "*/aiokafka/*", "-o", str(out),
        "-m", "bench.connector_main", *CONNECTOR[2:],
    ]  # fmt: skip
    Child(cmd, env, run_dir, "pyinstrument").wait(7200).check("pyinstrument")
    text = out.read_text(errors="replace").splitlines()
    return "\n".join(text[:max_lines]), out
