"""Decoding checks a declared `content-type` per record, though it parses each distinct
header value once: the verdict must be the same as parsing it every time."""

from __future__ import annotations

import pytest

from connectors import PoisonError, Record
from connectors.config.schemas import TopicSchema
from transforms.proto.edge import ZoneSettingsChanged

TYPE = "edge.v1.ZoneSettingsChanged"
VALUE = ZoneSettingsChanged(zone_id="z1").SerializeToString()


def record(*headers: tuple[str, bytes]) -> Record:
    return Record("zones", 0, 1, b"k", VALUE, tuple(headers))


def schema() -> TopicSchema:
    return TopicSchema("zones", TYPE, ZoneSettingsChanged)


def test_a_record_without_headers_decodes() -> None:
    assert schema().decode(record()).zone_id == "z1"


def test_the_verdict_holds_for_every_record_that_repeats_the_header() -> None:
    s = schema()
    right = ("content-type", f"application/x-protobuf; messageType={TYPE}".encode())
    wrong = ("content-type", b"application/x-protobuf; messageType=edge.v1.EdgeZoneConfig")
    for _ in range(3):
        assert s.decode(record(right)).zone_id == "z1"
        with pytest.raises(PoisonError, match="declares type 'edge.v1.EdgeZoneConfig'"):
            s.decode(record(("other", b"x"), wrong))
        assert s.decode(record(wrong, right)).zone_id == "z1"  # the last value counts


def test_many_distinct_headers_keep_the_memory_bounded_and_the_verdicts_right() -> None:
    s = schema()
    for n in range(500):
        wrong = ("content-type", f"application/x-protobuf; messageType=t{n}".encode())
        with pytest.raises(PoisonError, match=f"declares type 't{n}'"):
            s.decode(record(wrong))
    assert len(s._verdicts) <= 64  # noqa: SLF001
