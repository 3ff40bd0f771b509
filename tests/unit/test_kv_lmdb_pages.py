"""The LMDB store unmaps the pages of its file after each commit (writers/kv/lmdb_pages.py).

What is measured is the kernel's own account of the mapping (/proc/self/smaps `Rss`), and
what must not change is what the store holds.
"""

from __future__ import annotations

import logging
import mmap
from pathlib import Path

import pytest

from tests.unit.test_kv_lmdb_staged import batch, entry, store_at
from writers.kv.lmdb_pages import MappedFile


def mapped_kb(path: Path) -> int:
    """Resident kB of every mapping of `path` in this process."""
    target, total, inside = str(path.resolve()), 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and not head[0].endswith(":"):
            inside = len(head) == 6 and head[5] == target
        elif inside and line.startswith("Rss:"):
            total += int(head[1])
    return total


def values(count: int, round_: int) -> list[tuple[bytes, bytes]]:
    return [(b"key-%06d" % n, b"%d-" % round_ + bytes(200)) for n in range(count)]


async def test_a_commit_leaves_none_of_the_file_mapped_and_the_data_whole(tmp_path: Path) -> None:
    store = await store_at(tmp_path)
    data = tmp_path / "data.mdb"
    first = values(20_000, 1)
    await store.write(batch(*(entry(n, k, v) for n, (k, v) in enumerate(first))))
    env = store._open()
    with env.begin(db=store._data) as txn:  # reading every value maps the whole tree
        assert [txn.get(k) for k, _ in first] == [v for _, v in first]
    assert mapped_kb(data) > 2_000, "the read should have mapped several MB of the file"

    second = values(20_000, 2)
    await store.write(batch(*(entry(20_000 + n, k, v) for n, (k, v) in enumerate(second))))
    # The commit's puts read the whole tree again; its end unmapped it.
    assert mapped_kb(data) < 200
    with env.begin(db=store._data) as txn:  # the pages come back from the page cache
        assert [txn.get(k) for k, _ in second] == [v for _, v in second]
    await store.close()


def test_only_shared_mappings_of_the_file_are_found(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_bytes(bytes(mmap.PAGESIZE * 4))
    with path.open("rb") as handle:
        private = mmap.mmap(handle.fileno(), 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ)
        assert MappedFile.of(path).ranges == ()
        shared = mmap.mmap(handle.fileno(), 0, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
        assert [length for _, length in MappedFile.of(path).ranges] == [mmap.PAGESIZE * 4]
        shared.close()
        private.close()
    assert MappedFile.of(tmp_path / "not-mapped").ranges == ()


def test_a_refused_release_is_logged_once_and_stops(caplog: pytest.LogCaptureFixture) -> None:
    """An address madvise refuses (here unaligned) must not fail a commit that succeeded."""
    mapped = MappedFile(((mmap.PAGESIZE + 1, mmap.PAGESIZE),))
    with caplog.at_level(logging.WARNING, "connectors.writers.kv"):
        mapped.release()
        mapped.release()
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert "cannot unmap the store's read pages (Invalid argument)" in warnings[0]
