"""The producer library's contract, offline: one type per topic, refused before sending;
and `dlq replay` keeping to the catalog's types."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors import ConfigError, Producer, SyncProducer
from connectors.cli.dlq import contract
from connectors.config.settings import KafkaSettings
from connectors.producer import metrics
from transforms.proto.edge import EdgeZoneConfig, ZoneSettingsChanged

ZONES, CONFIGS = "edge.v1.ZoneSettingsChanged", "edge.v1.EdgeZoneConfig"


async def test_a_message_of_another_type_is_refused_naming_both() -> None:
    producer = Producer({"zones": ZONES}, KafkaSettings())
    before = metrics.ERRORS.labels("zones", "type")._value.get()
    with pytest.raises(TypeError) as refused:
        await producer.send("zones", EdgeZoneConfig(zone_id="z"))
    assert str(refused.value) == f"topic 'zones' carries {ZONES} only; got a {CONFIGS}"
    assert metrics.ERRORS.labels("zones", "type")._value.get() == before + 1
    with pytest.raises(TypeError, match="topic 'elsewhere' is not in the catalog; known: zones"):
        await producer.send("elsewhere", ZoneSettingsChanged())
    with pytest.raises(TypeError, match="got a bytes"):
        await producer.send("zones", b"raw")  # type: ignore[arg-type]
    assert producer.check("zones", ZoneSettingsChanged()) == ZONES


def test_from_env_needs_a_catalog(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as missing:
        Producer.from_env({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092"})
    assert [p.variable for p in missing.value.problems] == ["TOPIC_CATALOG"]
    (tmp_path / "zones.yaml").write_text("name: zones\n")
    with pytest.raises(ConfigError) as broken:
        SyncProducer.from_env({"TOPIC_CATALOG": str(tmp_path)})
    assert str(broken.value.problems[0]).startswith(f"TOPIC_CATALOG={str(tmp_path)!r}: a valid")


def test_replay_keeps_to_the_catalog() -> None:
    header = [("content-type", f"application/x-protobuf; messageType={CONFIGS}".encode())]
    types = {"zones": ZONES, "configs": CONFIGS}
    assert contract(None, "anything", header) is None
    assert contract(types, "configs", header) is None
    assert contract(types, "zones", []) is None
    assert contract(types, "zones", header) == (
        f"it declares type {CONFIGS!r}; topic 'zones' carries {ZONES} only"
    )
    assert contract(types, "other", header) == "topic 'other' is not in TOPIC_CATALOG"
