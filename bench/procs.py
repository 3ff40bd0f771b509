"""Child processes measured by the kernel: wall time, CPU time and peak RSS.

`os.wait4` gives a child's CPU time exactly. Its `ru_maxrss` does not give the child's peak
memory: Linux keeps the larger of the process's own peak and that of the address space it
replaced at `exec`, and a child started by `subprocess` (vfork) replaces the *driver's*
address space, so every child reported at least the driver's own RSS (a `python -c pass`
started from a 400 MB driver reports 413 MB). The peak is therefore read from
`/proc/<pid>/status` `VmHWM` (the high-water mark of the process's own address space, kept
by the kernel) of the child and every process below it, every 50 ms until it exits; only
growth in its last 50 ms could be missed. `max_rss_mb` is the largest of them: the peak
*per process*, which is what a pod's memory limit per worker has to cover.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Finished:
    returncode: int
    wall_s: float
    cpu_s: float
    max_rss_mb: float
    stdout: str
    stderr: str
    rss_samples: list[tuple[float, float]] = field(default_factory=list)
    #: The largest VmRSS seen in any process of the tree, split as the kernel splits it:
    #: `anon` (heap, stacks: the process's own) and `file` (mapped files, e.g. LMDB's map,
    #: which the kernel can drop and read again). Sampled every 50 ms, so it can be a little
    #: below VmHWM.
    peak_parts_mb: dict[str, float] = field(default_factory=dict)

    def check(self, what: str) -> Finished:
        if self.returncode != 0:
            raise RuntimeError(
                f"{what} exited {self.returncode}:\n{self.stdout[-3000:]}\n{self.stderr[-3000:]}"
            )
        return self


def proc_cpu_s(pid: int) -> float | None:
    """utime + stime of a live process (all its threads), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def proc_status_mb(pid: int, field_name: str) -> float | None:
    return proc_status_fields_mb(pid).get(field_name.rstrip(":"))


def proc_status_fields_mb(pid: int) -> dict[str, float]:
    """Every `kB` line of /proc/<pid>/status, in MB, by name (VmHWM, VmRSS, RssAnon...)."""
    fields: dict[str, float] = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return fields
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == "kB":
            fields[name] = int(parts[0]) / 1024
    return fields


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it, from the kernel's per-thread children lists."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            tasks = list(Path(f"/proc/{current}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                todo.extend(int(c) for c in (task / "children").read_text().split())
            except (OSError, ValueError):
                continue
    return found


def proc_rss_mb(pid: int) -> float | None:
    return proc_status_mb(pid, "VmRSS")


def base_env(**overrides: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    keep["PYTHONPATH"] = str(ROOT)
    keep["DLQ_CREATE"] = "true"  # the harness's brokers create no topic by themselves
    keep.update(overrides)
    return keep


class Child:
    """A started process whose end is collected with wait4."""

    def __init__(
        self,
        cmd: Sequence[str],
        env: Mapping[str, str],
        logdir: Path,
        name: str,
        *,
        sample_rss_every: float | None = None,
        cwd: Path = ROOT,
    ) -> None:
        logdir.mkdir(parents=True, exist_ok=True)
        self.out_path = logdir / f"{name}.out"
        self.err_path = logdir / f"{name}.err"
        self.started = time.monotonic()
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.popen = subprocess.Popen(
                list(cmd), env=dict(env), stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                cwd=cwd, start_new_session=True,
            )  # fmt: skip
        self.pid = self.popen.pid
        self.rss_samples: list[tuple[float, float]] = []
        #: VmHWM (MB) of every process seen in the tree, by pid.
        self.peaks: dict[int, float] = {}
        self.peak_parts: dict[str, float] = {}
        self._sampling = threading.Event()
        self._sampler = threading.Thread(target=self._sample, args=(sample_rss_every,), daemon=True)
        self._sampler.start()

    def _sample(self, rss_every: float | None) -> None:
        next_rss = 0.0
        while not self._sampling.is_set():
            for pid in descendants(self.pid):
                status = proc_status_fields_mb(pid)
                hwm = status.get("VmHWM")
                if hwm is not None and hwm > self.peaks.get(pid, 0.0):
                    self.peaks[pid] = hwm
                if status.get("VmRSS", 0.0) > self.peak_parts.get("rss", 0.0):
                    self.peak_parts = {
                        "rss": status["VmRSS"],
                        "anon": status.get("RssAnon", 0.0),
                        "file": status.get("RssFile", 0.0),
                    }
            now = time.monotonic() - self.started
            if rss_every and now >= next_rss:
                rss = proc_rss_mb(self.pid)
                if rss is not None:
                    self.rss_samples.append((now, rss))
                next_rss = now + rss_every
            self._sampling.wait(0.05)

    def alive(self) -> bool:
        return self.popen.returncode is None and self._reap(os.WNOHANG) is None

    _result: tuple[int, float, float, float] | None = None

    def _reap(self, flags: int) -> tuple[int, float, float, float] | None:
        if self._result is not None:
            return self._result
        pid, status, usage = os.wait4(self.pid, flags)
        if pid == 0:
            return None
        code = os.waitstatus_to_exitcode(status)
        self.popen.returncode = code
        cpu = usage.ru_utime + usage.ru_stime
        self._result = (code, time.monotonic() - self.started, cpu, usage.ru_maxrss / 1024)
        return self._result

    def signal(self, sig: int) -> None:
        if self.popen.returncode is None and self._result is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def wait(self, timeout: float) -> Finished:
        deadline = time.monotonic() + timeout
        while (result := self._reap(os.WNOHANG)) is None:
            if time.monotonic() > deadline:
                self.signal(signal.SIGKILL)
                self._reap(0)
                self._finish()
                raise TimeoutError(
                    f"{self.popen.args} did not finish in {timeout:.0f} s; "
                    f"see {self.out_path} and {self.err_path}"
                )
            time.sleep(0.02)
        self._finish()
        code, wall, cpu, maxrss = result
        # wait4's figure only when the process was too short-lived to be sampled.
        rss = max(self.peaks.values()) if self.peaks else maxrss
        return Finished(
            code, wall, cpu, rss,
            self.out_path.read_text(errors="replace"),
            self.err_path.read_text(errors="replace"),
            self.rss_samples,
            dict(self.peak_parts),
        )  # fmt: skip

    def _finish(self) -> None:
        self._sampling.set()
        if self._sampler is not None:
            self._sampler.join(2)

    def stop(self, timeout: float = 30.0) -> Finished:
        self.signal(signal.SIGTERM)
        return self.wait(timeout)


def run(
    cmd: Sequence[str],
    env: Mapping[str, str],
    logdir: Path,
    name: str,
    timeout: float,
    cwd: Path = ROOT,
) -> Finished:
    return Child(cmd, env, logdir, name, cwd=cwd).wait(timeout)
