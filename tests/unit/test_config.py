"""Bad environments: exit code 2, one line per problem naming the variable, nothing connected.

`connector check` and `connector run` validate the same way; these run the CLI in-process
with an explicit environment. `tests/integration/test_bad_env.py` checks that no connection
is attempted, against a listening socket.
"""

from __future__ import annotations

import pytest

from connectors.cli import main
from tests.conftest import EDGE_DESCRIPTORS

GOOD = {
    "CONNECTOR_NAME": "edge-sync",
    "TOPICS": "zone-settings",
    "TOPIC_SCHEMAS": "zone-settings=edge.v1.ZoneSettingsChanged",
    "PROTO_DESCRIPTOR_SET": str(EDGE_DESCRIPTORS),
    "TRANSFORMS": "pf_edge",
    "KV_URL": "lmdb:/tmp/never-opened",
}

BAD: list[tuple[str, dict[str, str | None], str]] = [
    ("missing TOPICS", {"TOPICS": None}, "TOPICS"),
    ("empty TOPICS", {"TOPICS": " , "}, "TOPICS"),
    ("missing CONNECTOR_NAME", {"CONNECTOR_NAME": None}, "CONNECTOR_NAME"),
    ("bad CONNECTOR_NAME", {"CONNECTOR_NAME": "a b"}, "CONNECTOR_NAME"),
    ("unknown writer", {"WRITER": "nosuch"}, "WRITER"),
    ("unknown reader", {"READER": "nosuch"}, "READER"),
    ("malformed TOPIC_SCHEMAS", {"TOPIC_SCHEMAS": "zone-settings"}, "TOPIC_SCHEMAS"),
    (
        "type not in descriptor set",
        {"TOPIC_SCHEMAS": "zone-settings=edge.v1.Nope"},
        "TOPIC_SCHEMAS",
    ),
    (
        "topic bound twice",
        {"TOPIC_SCHEMAS": "zone-settings=edge.v1.ZoneSettingsChanged,zone-settings=bytes"},
        "TOPIC_SCHEMAS",
    ),
    ("topic without a type", {"TOPICS": "zone-settings,audit"}, "TOPIC_SCHEMAS"),
    ("unknown transform", {"TRANSFORMS": "pf_edge,nosuch"}, "TRANSFORMS"),
    ("non-numeric batch size", {"BATCH_MAX_MESSAGES": "many"}, "BATCH_MAX_MESSAGES"),
    ("zero batch size", {"BATCH_MAX_MESSAGES": "0"}, "BATCH_MAX_MESSAGES"),
    ("negative wait", {"BATCH_MAX_WAIT_MS": "-1"}, "BATCH_MAX_WAIT_MS"),
    ("bad KV_URL scheme", {"KV_URL": "postgres://db/kv"}, "KV_URL"),
    ("lmdb without path", {"KV_URL": "lmdb:"}, "KV_URL"),
    (
        "missing descriptor file",
        {"PROTO_DESCRIPTOR_SET": "/nonexistent.binpb"},
        "PROTO_DESCRIPTOR_SET",
    ),
    ("not a descriptor set", {"PROTO_DESCRIPTOR_SET": __file__}, "PROTO_DESCRIPTOR_SET"),
    ("unimportable module", {"TRANSFORM_MODULES": "no.such.module"}, "TRANSFORM_MODULES"),
    ("a path as a module", {"TRANSFORM_MODULES": "/tmp/evil.py"}, "TRANSFORM_MODULES"),
    ("code as a module", {"PROTO_MODULES": "os;print(1)"}, "PROTO_MODULES"),
    ("bad bootstrap", {"KAFKA_BOOTSTRAP_SERVERS": "localhost"}, "KAFKA_BOOTSTRAP_SERVERS"),
    ("bad offset reset", {"KAFKA_AUTO_OFFSET_RESET": "middle"}, "KAFKA_AUTO_OFFSET_RESET"),
    ("bad metrics port", {"METRICS_PORT": "70000"}, "METRICS_PORT"),
]


def environ(changes: dict[str, str | None]) -> dict[str, str]:
    env = dict(GOOD)
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


@pytest.mark.parametrize(("case", "changes", "variable"), BAD, ids=[c[0] for c in BAD])
@pytest.mark.parametrize("command", ["check", "run"])
def test_bad_environment_exits_2_naming_the_variable(
    case: str,
    changes: dict[str, str | None],
    variable: str,
    command: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main([command], environ(changes))
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line]
    assert lines and all(line.startswith("config error: ") for line in lines)
    assert any(line.startswith(f"config error: {variable}") for line in lines), err


def test_every_problem_is_reported_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    env = environ({"WRITER": "nosuch", "TRANSFORMS": "nosuch", "BATCH_MAX_MESSAGES": "x"})
    assert main(["check"], env) == 2
    err = capsys.readouterr().err
    for variable in ("WRITER", "TRANSFORMS", "BATCH_MAX_MESSAGES"):
        assert f"config error: {variable}" in err


def test_unknown_transform_lists_the_available_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check"], environ({"TRANSFORMS": "pf_egde"})) == 2
    err = capsys.readouterr().err
    assert "'pf_egde'" in err and "identity" in err and "pf_edge" in err


def test_secrets_in_urls_are_never_printed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check"], environ({"KV_URL": "redis://:hunter2@:6379/0"})) == 2
    assert main(["check"], environ({"KV_URL": "redis://:hunter2@cache:6379/0"})) == 0
    out = capsys.readouterr()
    assert "hunter2" not in out.err + out.out
    assert "redis://:*****@cache:6379/0" in out.out


def test_check_prints_the_resolved_pipeline(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check"], environ({"WRITER": "quicksilver"})) == 0
    out = capsys.readouterr().out
    assert "zone-settings -> edge.v1.ZoneSettingsChanged" in out
    assert "transforms: pf_edge" in out
    assert "writer:    kv" in out
    assert "group edge-sync" in out


def test_raw_topics_and_modules_resolve(capsys: pytest.CaptureFixture[str]) -> None:
    env = environ(
        {
            "TOPICS": "zone-settings,audit",
            "TOPIC_SCHEMAS": "zone-settings=edge.v1.ZoneSettingsChanged,audit=bytes",
            "PROTO_DESCRIPTOR_SET": None,
            "PROTO_MODULES": "transforms.proto.edge",
            "TRANSFORMS": "",
        }
    )
    assert main(["check"], env) == 0
    out = capsys.readouterr().out
    assert "audit -> bytes" in out and "(pass-through)" in out
