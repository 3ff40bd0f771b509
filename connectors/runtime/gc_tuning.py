"""Garbage collection tuned for a process that allocates per record and keeps per batch.

CPython's cyclic collector runs a young collection every 700 net allocations of container
objects; a batch of 20,000 records allocates several per record (the record, its decoded
message, the entry, the transform's output), so with the defaults the collector runs
hundreds of times a batch and, every tenth and hundredth time, walks the older generations:
every module, class and function imported at start-up included. Almost nothing a batch
allocates is part of a cycle: reference counting frees it as soon as the batch is written.

So, once start-up is done:

- `gc.freeze()` moves everything alive (imports, settings, plugins, clients) to the
  permanent generation, which no collection walks again;
- the young generation holds `YOUNG` objects before a collection (the profile of R spent
  8 % of its CPU in the collector with the defaults), and the older ones are collected
  after `MIDDLE` and `OLD` collections of the generation below.

Measured on R (decode → pf_edge → LMDB, 500,000 messages, interleaved with the defaults):
see docs/fast-transforms.md, "Garbage collection".
"""

from __future__ import annotations

import gc

#: Young-generation threshold: container allocations (net) between young collections.
YOUNG = 50_000
#: Young collections between two collections of the middle generation.
MIDDLE = 20
#: Middle collections between two full collections.
OLD = 100


def tune_after_start_up() -> None:
    """Freeze what start-up left alive and raise the thresholds; call it once, after the
    pipeline is resolved and its plugins imported, before the first batch."""
    gc.collect()  # what start-up left as garbage is not frozen with the rest
    gc.freeze()
    gc.set_threshold(YOUNG, MIDDLE, OLD)
