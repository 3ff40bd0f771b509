"""How many CPUs this process may use: what `WORKERS=auto` starts one worker per.

`os.cpu_count()` is the machine's count, not the container's. A container is limited two
ways: the CPUs it may be scheduled on (its affinity mask, what `--cpuset-cpus` and
Kubernetes' static CPU manager set) and its CFS quota (`resources.limits.cpu`, in
cgroup v2's `cpu.max` as "quota period", or "max" when unlimited). The smaller wins; a
fractional quota is rounded down (two busy processes under a 1.5-CPU quota would both be
throttled), but never below one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator

__all__ = ["CPU_MAX", "Workers", "available_cpus", "workers_or_auto"]

CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def _quota(cpu_max: Path) -> float | None:
    """The CFS quota in CPUs, or None when there is none (or no cgroup v2 file to read)."""
    try:
        fields = cpu_max.read_text().split()
    except OSError:
        return None
    if len(fields) != 2 or fields[0] == "max":
        return None
    try:
        quota, period = int(fields[0]), int(fields[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def available_cpus(cpu_max: Path = CPU_MAX) -> int:
    """The CPUs this process may use: its affinity, capped by the cgroup's quota; >= 1."""
    count = len(os.sched_getaffinity(0))
    quota = _quota(cpu_max)
    if quota is not None:
        count = min(count, int(quota))
    return max(1, count)


def workers_or_auto(value: Any) -> Any:
    """`WORKERS`: `auto` becomes the CPUs this process may use (at most 64)."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return min(64, available_cpus())
    return value


#: The type of `WORKERS`: a count, `auto` resolved at validation.
Workers = Annotated[int, BeforeValidator(workers_or_auto)]
