"""Cutting one path's records into objects no larger than `S3_OBJECT_MAX_BYTES`.

The cap is on the bytes uploaded, after compression: that is what a reader downloads and
what the bucket bills. A gzip body's size is only known once compressed, so the cut is made
in raw bytes at the ratio the records compress to, each piece is compressed, and a piece
still over the cap is cut again at its own ratio. Every step depends only on the records,
so the same records always give the same objects (and the same names). A record is never
split; one that alone is over the cap goes in an object of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

FILL = 0.9
"""Share of the cap a cut aims at when compressed: a smaller piece compresses a little
worse than the whole it was estimated from."""


@dataclass(frozen=True, slots=True)
class Piece:
    """Units `start` to `end` (exclusive) and their body as uploaded."""

    start: int
    end: int
    body: bytes


def split(units: Sequence[bytes], cap: int, pack: Callable[[bytes], bytes]) -> list[Piece]:
    """Consecutive pieces of `units` whose packed bodies are at most `cap` bytes, but for a
    piece of one unit that is larger on its own. `pack` turns raw bytes into the body
    (compression, or nothing)."""
    body = pack(b"".join(units))
    if len(body) <= cap or len(units) <= 1:
        return [Piece(0, len(units), body)]
    raw = sum(len(unit) for unit in units) or 1
    budget = cap * FILL * raw / len(body)
    pieces: list[Piece] = []
    for start, end in _cuts(units, budget):
        pieces.extend(
            Piece(start + p.start, start + p.end, p.body)
            for p in split(units[start:end], cap, pack)
        )
    return pieces


def _cuts(units: Sequence[bytes], budget: float) -> list[tuple[int, int]]:
    """Greedy runs of at most `budget` raw bytes (a unit larger than that alone); at least
    two runs, so that every recursion of `split` works on fewer units."""
    cuts: list[tuple[int, int]] = []
    start, size = 0, 0
    for index, unit in enumerate(units):
        if index > start and size + len(unit) > budget:
            cuts.append((start, index))
            start, size = index, 0
        size += len(unit)
    cuts.append((start, len(units)))
    if len(cuts) == 1:
        middle = len(units) // 2
        cuts = [(0, middle), (middle, len(units))]
    return cuts
