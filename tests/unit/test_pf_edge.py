"""`pf_edge`: what the edge gets from a zone settings change."""

from __future__ import annotations

from typing import Any

from connectors import Delete, Put, Record, TransformContext
from transforms.pf_edge import pf_edge
from transforms.proto.edge import EdgeZoneConfig, ZoneSettingsChanged

CTX = TransformContext.of(Record("zone-settings", 0, 7, b"z1", b""))


def change(**fields: Any) -> Any:
    return ZoneSettingsChanged(**fields)


def test_keeps_only_edge_settings_normalised_and_sorted_features() -> None:
    out = pf_edge(
        change(
            zone_id="z1",
            zone_name="example.com",
            settings={"ssl": " Full ", "dashboard_theme": "dark", "cache_level": "AGGRESSIVE"},
            features=["waf", "http3", "waf"],
            version=9,
            updated_at_ms=1234,
        ),
        CTX,
    )
    assert isinstance(out, Put)
    assert out.key == "zone:z1"
    assert out.value == EdgeZoneConfig(
        zone_id="z1",
        settings={"ssl": "full", "cache_level": "aggressive"},
        features=["http3", "waf"],
        version=9,
        updated_at_ms=1234,
    )


def test_deleted_zone_deletes_its_key() -> None:
    assert pf_edge(change(zone_id="z1", deleted=True), CTX) == Delete("zone:z1")


def test_event_without_zone_is_dropped() -> None:
    assert pf_edge(change(zone_name="orphan"), CTX) is None
