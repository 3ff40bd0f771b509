"""Hostile input met by `connector kv`, the tool that reads a key-value store back:

- `kv dump --type T` / `kv get --type T` over values that are not a T (a store fed raw
  bytes, a wrong type): every entry is still listed, the unreadable ones marked with
  `error`, one summary line on stderr, exit 1, never a traceback;
- `kv get` / `kv dump` with `KV_URL` naming an empty or missing directory: one config error
  line naming KV_URL and saying no store is there, exit 2, and nothing created there.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from harness.kafka import KafkaBroker, consumer_group_offsets, create_topic
from harness.kcat import produce
from tests.conftest import ROOT, connector_env, run_connector
from transforms.proto.edge import message_class

EDGE = "edge.v1.EdgeZoneConfig"


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    return connector_env(
        KV_URL=f"lmdb:{tmp / 'kv'}",
        KV_SYNC="false",
        PROTO_MODULES="transforms.proto.edge",
        PYTHONPATH=str(ROOT),
        **extra,
    )


def _values() -> dict[bytes, bytes]:
    """Three EdgeZoneConfig values and two that are not one."""
    config, changed = message_class(EDGE), message_class("edge.v1.ZoneSettingsChanged")
    values = {
        f"zone:{n}".encode(): config(zone_id=f"z{n}", version=n).SerializeToString()
        for n in (1, 2, 3)
    }
    # Another type: its field 2 is a string where EdgeZoneConfig has a map.
    values[b"other:1"] = changed(zone_id="z9", zone_name="example.com").SerializeToString()
    values[b"junk:1"] = b"\xff\xff\xff"
    return values


@pytest.fixture
def mixed_store(kafka: KafkaBroker, unique: str, tmp_path: Path) -> dict[bytes, bytes]:
    """A store a real `connector run` filled from a raw-bytes topic holding mixed values."""
    topic = name = f"kvmixed-{unique}"
    create_topic(kafka.bootstrap, topic, partitions=1)
    values = _values()
    produce(kafka.bootstrap, topic, [(0, key, value) for key, value in values.items()])
    env = _env(
        tmp_path,
        CONNECTOR_NAME=name,
        TOPICS=topic,
        TOPIC_SCHEMAS=f"{topic}=bytes",
        TRANSFORMS="",
        ON_ERROR="fail",  # raw bytes are never poison: every value is stored as it came
        KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap,
        BATCH_MAX_WAIT_MS="100",
    )
    done = run_connector("run", "--until-caught-up", env=env)
    assert done.returncode == 0, done.stderr
    offsets = consumer_group_offsets(kafka.bootstrap, name)
    assert {tp: committed for tp, (committed, _end) in offsets.items()} == {(topic, 0): 5}
    return values


def test_kv_dump_type_marks_values_of_another_type_and_lists_every_entry(
    mixed_store: dict[bytes, bytes], tmp_path: Path
) -> None:
    done = run_connector("kv", "dump", "--type", EDGE, env=_env(tmp_path))

    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 1, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [row["key"] for row in rows] == sorted(key.decode() for key in mixed_store)
    for row in rows:
        stored = mixed_store[row["key"].encode()]
        assert base64.b64decode(row["value_b64"]) == stored
        if row["key"].startswith("zone:"):
            assert "error" not in row
            assert row["value"]["zone_id"] == "z" + row["key"].removeprefix("zone:")
        else:
            assert "value" not in row
            assert row["error"].startswith(f"not a {EDGE}: "), row
    assert done.stderr.splitlines() == [
        f'kv dump: 2 of 5 values are not a {EDGE} (their rows carry "error" instead of "value")'
    ]

    plain = run_connector("kv", "dump", env=_env(tmp_path))
    assert plain.returncode == 0, plain.stderr
    assert len(plain.stdout.splitlines()) == 5


def test_kv_get_type_of_another_type_is_a_marked_row_and_exit_1(
    mixed_store: dict[bytes, bytes], tmp_path: Path
) -> None:
    bad = run_connector("kv", "get", "junk:1", "--type", EDGE, env=_env(tmp_path))
    assert "Traceback" not in bad.stderr, bad.stderr
    assert bad.returncode == 1
    row = json.loads(bad.stdout)
    assert base64.b64decode(row["value_b64"]) == b"\xff\xff\xff"
    assert row["error"].startswith(f"not a {EDGE}: ") and "value" not in row
    assert bad.stderr.splitlines() == [f"kv get: the value of 'junk:1' is not a {EDGE}"]

    good = run_connector("kv", "get", "zone:2", "--type", EDGE, env=_env(tmp_path))
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["value"] == {"zone_id": "z2", "version": "2"}


@pytest.mark.parametrize("state", ["empty", "missing"])
@pytest.mark.parametrize("command", [("get", "some-key"), ("dump",)])
def test_kv_on_a_directory_without_a_store_names_kv_url_and_exits_2(
    tmp_path: Path, state: str, command: tuple[str, ...]
) -> None:
    place = tmp_path / "kv"
    if state == "empty":
        place.mkdir()
    done = run_connector("kv", *command, env=_env(tmp_path))

    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith(f"config error: KV_URL='lmdb:{place}': no key-value store there"), line
    assert "No such file or directory" not in line
    # Reading creates nothing: an empty directory stays empty, a missing one missing.
    assert (list(place.iterdir()) == []) if state == "empty" else not place.exists()
