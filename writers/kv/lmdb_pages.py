"""Unmapping the pages of LMDB's file the process has read, after each commit.

LMDB reads through a read-only shared map of its file, and a write transaction reads the
B-tree path to every key it puts. Each commit writes its pages into free pages of the file
(copy on write; pages a commit frees are reused two commits later), so after a few batches
the process has mapped every page of a file about three times the size of its live data:
in the benchmark's pass-through run (R0), 92 of its 208 MB of peak RSS were pages of the
store's file. They are the kernel's page cache, not memory the process owns, but they count
in its RSS and stay in the working set a pod's memory limit and the kubelet's evictions
look at. `madvise(MADV_DONTNEED)` on the map after a commit unmaps them: the page cache
keeps them, and the next transaction maps again, without I/O, only the pages it reads.

The map is found by its file in /proc/self/maps (py-lmdb does not give its address), once
per open environment: LMDB maps the whole `KV_MAP_SIZE_MB` at open and never moves it.
Only shared mappings are released (a private one could hold changes of its own); on a
system without /proc/self/maps, or when `madvise` refuses, nothing is released and the
store works as before.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from pathlib import Path

__all__ = ["MappedFile"]

_log = logging.getLogger("connectors.writers.kv")

_MADV_DONTNEED = 4  # the same value on every Linux architecture


def _madvise() -> ctypes._NamedFuncPointer | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        madvise = ctypes.CDLL(name, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    return madvise


class MappedFile:
    """The shared mappings of one file in this process, to unmap their pages with."""

    def __init__(self, ranges: tuple[tuple[int, int], ...]) -> None:
        self.ranges = ranges
        self._madvise = _madvise() if ranges else None

    @classmethod
    def of(cls, path: Path) -> MappedFile:
        """The mappings of `path` now (none when /proc/self/maps cannot be read)."""
        target = str(path.resolve())
        ranges: list[tuple[int, int]] = []
        try:
            maps = Path("/proc/self/maps").read_text()
        except OSError:
            return cls(())
        for line in maps.splitlines():
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5] == target and fields[1].endswith("s"):
                start, end = (int(bound, 16) for bound in fields[0].split("-"))
                ranges.append((start, end - start))
        return cls(tuple(ranges))

    def release(self) -> None:
        """Unmap every page of the file from the process; the next read maps it again."""
        madvise = self._madvise
        if madvise is None:
            return
        for start, length in self.ranges:
            if madvise(start, length, _MADV_DONTNEED) != 0:
                errno = ctypes.get_errno()
                _log.warning(
                    "LMDB: cannot unmap the store's read pages (%s); they stay mapped",
                    os.strerror(errno),
                )
                self._madvise = None
                return
