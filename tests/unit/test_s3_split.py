"""S3_OBJECT_MAX_BYTES is a cap on the bytes uploaded: objects are cut before they pass it."""

from __future__ import annotations

import gzip
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from writers.s3.formats import pack
from writers.s3.split import split


def gz(raw: bytes) -> bytes:
    return pack(raw, "gzip")


def lines(count: int, size: int) -> list[bytes]:
    rng = random.Random(count * 7919 + size)
    return [
        (b'{"n":%d,"pad":"%s"}\n' % (n, rng.randbytes(size).hex().encode())) for n in range(count)
    ]


def test_pieces_are_under_the_cap_in_order_and_deterministic() -> None:
    units = lines(2000, 60)
    pieces = split(units, 16_384, gz)
    assert len(pieces) > 1
    assert all(len(p.body) <= 16_384 for p in pieces)
    assert [p.start for p in pieces] == [0] + [p.end for p in pieces[:-1]]
    assert pieces[-1].end == len(units)
    assert all(gzip.decompress(p.body) == b"".join(units[p.start : p.end]) for p in pieces)
    assert split(units, 16_384, gz) == pieces
    fill = sum(len(p.body) for p in pieces) / (len(pieces) * 16_384)
    assert fill > 0.6, f"objects only {fill:.0%} full"


def test_uncompressed_pieces_fill_the_cap() -> None:
    units = [b"x" * 100 + b"\n"] * 1000
    pieces = split(units, 10_100, lambda raw: raw)
    assert all(len(p.body) <= 10_100 for p in pieces)
    assert len(pieces) <= 12


def test_a_record_larger_than_the_cap_goes_alone() -> None:
    units = lines(3, 100) + [b"y" * 50_000] + lines(3, 100)
    pieces = split(units, 2048, lambda raw: raw)
    alone = [p for p in pieces if len(p.body) > 2048]
    assert [(p.start, p.end) for p in alone] == [(3, 4)]
    assert all(len(p.body) <= 2048 for p in pieces if p is not alone[0])


def test_under_the_cap_is_one_piece() -> None:
    units = lines(10, 10)
    (piece,) = split(units, 1_000_000, gz)
    assert piece.body == gz(b"".join(units))
    assert split([], 1024, gz)[0].end == 0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.binary(min_size=1, max_size=3000), min_size=1, max_size=60),
    st.integers(min_value=1024, max_value=20_000),
    st.booleans(),
)
def test_any_records_any_cap(units: list[bytes], cap: int, compress: bool) -> None:
    packer = gz if compress else (lambda raw: raw)
    pieces = split(units, cap, packer)
    assert [p.start for p in pieces] == [0] + [p.end for p in pieces[:-1]]
    assert pieces[-1].end == len(units)
    for p in pieces:
        assert len(p.body) <= cap or p.end - p.start == 1
