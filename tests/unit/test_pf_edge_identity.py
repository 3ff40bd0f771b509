"""`pf_edge` is written for speed; its output must stay byte for byte what the plain
version (the constructor with keyword arguments) produces, for every input."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from connectors import Delete, Put, Record, TransformContext
from harness.samples import FEATURES, SETTING_VALUES, zone_events
from transforms.pf_edge import EDGE_SETTINGS, edge_key, pf_edge
from transforms.proto.edge import EdgeZoneConfig, ZoneSettingsChanged

CTX = TransformContext.of(Record("zone-settings", 0, 7, b"z1", b""))


def plain(message: Any) -> Put | Delete | None:
    """The specification: the straightforward construction, as first written."""
    if not message.zone_id:
        return None
    if message.deleted:
        return Delete(edge_key(message.zone_id))
    settings = message.settings
    return Put(
        edge_key(message.zone_id),
        EdgeZoneConfig(
            zone_id=message.zone_id,
            settings={k: settings[k].strip().lower() for k in settings if k in EDGE_SETTINGS},
            features=sorted(set(message.features)),
            version=message.version,
            updated_at_ms=message.updated_at_ms,
        ),
    )


def encoded(out: Any) -> Any:
    if isinstance(out, Put):
        return ("put", out.key, out.value.SerializeToString(deterministic=True))
    return out


def test_byte_identical_on_the_benchmark_events() -> None:
    for event in zone_events(20_000, zones=2_000, delete_every=53):
        assert encoded(pf_edge(event.message, CTX)) == encoded(plain(event.message))


names = st.sampled_from(sorted({*SETTING_VALUES, *EDGE_SETTINGS})) | st.text(max_size=12)
values = st.sampled_from([v for vs in SETTING_VALUES.values() for v in vs]) | st.text(max_size=12)
events = st.builds(
    ZoneSettingsChanged,
    zone_id=st.text(max_size=20),
    zone_name=st.text(max_size=10),
    account_id=st.integers(0, 2**64 - 1),
    settings=st.dictionaries(names, values, max_size=12),
    features=st.lists(st.sampled_from(FEATURES) | st.text(max_size=8), max_size=8),
    updated_at_ms=st.integers(-(2**63), 2**63 - 1),
    version=st.integers(0, 2**64 - 1),
    deleted=st.booleans(),
)


@settings(max_examples=2_000, deadline=None)
@given(events)
def test_byte_identical_on_any_event(message: Any) -> None:
    got, want = pf_edge(message, CTX), plain(message)
    assert encoded(got) == encoded(want)
    if isinstance(got, Put):
        assert got.value == want.value  # the message itself, not only its encoding
