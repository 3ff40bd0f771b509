"""A slice of typed records decoded in one pass (`typed_slice`) is what decoding each record
(`decode_slice`) gives: the same messages at the same indices, the same poison with the same
reasons, whatever the slice mixes (topics, headers that declare a type, right or wrong,
tombstones, bytes that do not parse)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from connectors import Record
from connectors.config.schemas import TopicSchema, TopicSchemas
from connectors.runtime.decoding import decode_slice, slicer, typed_slice
from transforms.proto.edge import ZoneSettingsChanged

SCHEMAS = TopicSchemas(
    {
        "zones": TopicSchema("zones", "edge.v1.ZoneSettingsChanged", ZoneSettingsChanged),
        "raw": TopicSchema("raw", "bytes", None),
    }
)

valid = st.builds(
    lambda zone, version, settings: ZoneSettingsChanged(
        zone_id=zone, version=version, settings=settings
    ).SerializeToString(),
    st.text(max_size=8),
    st.integers(0, 2**40),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
)
# Truncated varints and a length that runs past the end: bytes upb refuses.
invalid = st.sampled_from([b"\xff\xff", b"\x0a\x05ab", b"\x08"])
header = st.sampled_from(
    [
        ("content-type", b"application/x-protobuf; messageType=edge.v1.ZoneSettingsChanged"),
        ("content-type", b"application/x-protobuf; messageType=edge.v1.Other"),
        ("trace", b"1"),
    ]
)


@st.composite
def slices(draw: st.DrawFn) -> list[Record]:
    plain = draw(st.booleans())  # most slices in a run are plain: draw many of them
    out = []
    for offset in range(draw(st.integers(0, 12))):
        if plain:
            out.append(Record("zones", 0, offset, b"k", draw(valid)))
            continue
        topic = draw(st.sampled_from(["zones", "zones", "zones", "raw"]))
        value = draw(st.one_of(valid, valid, invalid, st.none()))
        headers: tuple[tuple[str, bytes], ...] = ()
        if draw(st.integers(0, 3)) == 0:
            headers = (draw(header),)
        out.append(Record(topic, 0, offset, b"k", value, headers))
    return out


def outcome(result: tuple[list[Any], list[Any]]) -> tuple[list[Any], list[Any]]:
    decoded, poison = result
    return (
        [(i, r, m) for i, r, m in decoded],
        [(i, r, e.stage, str(e)) for i, r, e in poison],
    )


@settings(max_examples=300, deadline=None)
@given(slices(), st.integers(0, 5_000))
def test_a_slice_decodes_as_its_records_do_one_by_one(records: list[Record], first: int) -> None:
    assert outcome(typed_slice(SCHEMAS, records, first)) == outcome(
        decode_slice(SCHEMAS.decode, records, first)
    )


def test_the_runner_decodes_typed_topics_in_one_pass() -> None:
    assert slicer(SCHEMAS).func is typed_slice  # type: ignore[attr-defined]
    records = [
        Record("zones", 0, o, b"k", ZoneSettingsChanged(zone_id="z").SerializeToString())
        for o in range(3)
    ]
    decoded, poison = typed_slice(SCHEMAS, records, 10)
    assert [(i, m.zone_id) for i, _, m in decoded] == [(10, "z"), (11, "z"), (12, "z")]
    assert poison == []


def test_a_record_that_does_not_parse_is_poison_and_the_rest_decode() -> None:
    good = ZoneSettingsChanged(zone_id="z").SerializeToString()
    records = [Record("zones", 0, o, b"k", good if o != 1 else b"\xff\xff") for o in range(3)]
    decoded, poison = typed_slice(SCHEMAS, records, 0)
    assert [i for i, _, _ in decoded] == [0, 2]
    assert [(i, e.stage) for i, _, e in poison] == [(1, "decode")]


def test_a_raw_topic_in_the_slice_keeps_its_bytes() -> None:
    value = ZoneSettingsChanged(zone_id="z").SerializeToString()
    records = [Record("zones", 0, 0, b"k", value), Record("raw", 0, 0, b"k", value)]
    decoded, _ = typed_slice(SCHEMAS, records, 0)
    assert decoded[0][2].zone_id == "z" and decoded[1][2] == value


def test_a_topic_without_a_schema_is_poison_not_a_crash() -> None:
    decoded, poison = typed_slice(SCHEMAS, [Record("elsewhere", 0, 0, b"k", b"v")], 0)
    assert decoded == [] and [e.stage for _, _, e in poison] == ["decode"]
