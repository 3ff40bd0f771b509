"""Bad environments: exit code 2, one line per problem naming the variable, nothing connected.

`connector check` and `connector run` validate the same way; these run the CLI in-process
with an explicit environment. `tests/integration/test_bad_env.py` checks that no connection
is attempted, against a listening socket.
"""

from __future__ import annotations

from pathlib import Path

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
    ("topic pattern", {"TOPICS": "t.*"}, "TOPICS"),
    ("topic with a space", {"TOPICS": "a b"}, "TOPICS"),
    ("topic '..'", {"TOPICS": "zone-settings,.."}, "TOPICS"),
    ("topic of 100000 characters", {"TOPICS": "t" * 100_000}, "TOPICS"),
    ("topic of 250 characters", {"TOPICS": "t" * 250}, "TOPICS"),
    ("topic with a line break", {"TOPICS": "t1\nfatal: FORGED"}, "TOPICS"),
    ("bad DLQ_TOPIC", {"DLQ_TOPIC": "dead letters"}, "DLQ_TOPIC"),
    ("port over 65535", {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:99999"}, "KAFKA_BOOTSTRAP_SERVERS"),
    ("port 0", {"KAFKA_BOOTSTRAP_SERVERS": "a:9092,b:0"}, "KAFKA_BOOTSTRAP_SERVERS"),
    ("metrics host with spaces", {"METRICS_HOST": "not a host"}, "METRICS_HOST"),
    ("metrics host bad IPv4", {"METRICS_HOST": "999.1.1.1"}, "METRICS_HOST"),
    ("metrics host label", {"METRICS_HOST": "-metrics.local"}, "METRICS_HOST"),
    (
        "retry initial over max",
        {"RETRY_INITIAL_MS": "10000", "RETRY_MAX_MS": "1"},
        "RETRY_INITIAL_MS",
    ),
    ("descriptor set a directory", {"PROTO_DESCRIPTOR_SET": "/"}, "PROTO_DESCRIPTOR_SET"),
    ("lmdb store a file", {"KV_URL": f"lmdb:{__file__}"}, "KV_URL"),
    ("lmdb store under a file", {"KV_URL": f"lmdb:{__file__}/kv"}, "KV_URL"),
    ("redis password with '/'", {"KV_URL": "redis://:pa/ss@cache:6379/0"}, "KV_URL"),
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


@pytest.mark.parametrize(
    ("url", "variable"),
    [
        ("redis://:hunter2/#?@cache:6379/0", "KV_URL"),
        ("redis://user:hun/ter2@cache:6379/0", "KV_URL"),
        ("redis://:hunter2#x@cache:6379/0", "KV_URL"),
        ("https://svc:hunter2/x@sink.example:8443/in", "HTTP_URL"),
    ],
)
def test_a_password_with_reserved_characters_is_never_printed(
    url: str, variable: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Unencoded, a URL parser reads such a URL as having no host or a bad port: the
    config error says to percent-encode, and shows the value masked."""
    assert main(["check"], environ({variable: url, "WRITER": variable[:-4].lower()})) == 2
    out = capsys.readouterr()
    (line,) = out.err.splitlines()
    assert line.startswith(f"config error: {variable}=") and "percent-encode" in line
    assert "hunter2" not in out.err + out.out and "ter2" not in out.err + out.out


def test_a_percent_encoded_password_is_accepted_and_masked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["check"], environ({"KV_URL": "redis://:hunter2%2F%23%3F@cache:6379/0"})) == 0
    out = capsys.readouterr().out
    assert "KV_URL=redis://:*****@cache:6379/0" in out and "hunter2" not in out


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


@pytest.mark.parametrize(
    "changes",
    [
        {"METRICS_HOST": "::"},
        {"METRICS_HOST": "127.0.0.1"},
        {"METRICS_HOST": "localhost"},
        {"METRICS_HOST": "metrics_1.svc.cluster.local."},
        {"KAFKA_BOOTSTRAP_SERVERS": "broker-1:9092,[::1]:65535,10.0.0.1:1"},
        {"TOPICS": "a.b_c-D9", "TOPIC_SCHEMAS": "a.b_c-D9=bytes", "TRANSFORMS": ""},
        {"TOPICS": "t" * 249, "TOPIC_SCHEMAS": f"{'t' * 249}=bytes", "TRANSFORMS": ""},
        {"RETRY_INITIAL_MS": "500", "RETRY_MAX_MS": "500"},
        {"DLQ_TOPIC": "edge-sync.dead"},
        {"KV_URL": "redis://:pa%2Fss%23w%3Frd@cache:6379/0"},
    ],
)
def test_valid_edges_pass(changes: dict[str, str | None]) -> None:
    assert main(["check"], environ(changes)) == 0


def test_an_existing_or_creatable_lmdb_directory_passes(tmp_path: Path) -> None:
    assert main(["check"], environ({"KV_URL": f"lmdb:{tmp_path}"})) == 0
    assert main(["check"], environ({"KV_URL": f"lmdb:{tmp_path}/not/yet/kv"})) == 0


def config_lines(err: str) -> list[str]:
    """Every line printed, each of which must be one config error."""
    lines = err.splitlines()
    assert lines and all(line.startswith("config error: ") for line in lines), lines
    return lines


@pytest.mark.parametrize("command", ["check", "run"])
def test_a_line_break_in_a_value_cannot_forge_a_line(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    env = environ({"TOPICS": "t1\nfatal: FORGED", "TRANSFORMS": "nosuch\rfatal: FORGED"})
    assert main([command], env) == 2
    lines = config_lines(capsys.readouterr().err)
    assert len(lines) == 2
    assert lines[0].startswith("config error: TOPICS='t1\\nfatal: FORGED': ")
    assert lines[1].startswith("config error: TRANSFORMS='nosuch\\rfatal: FORGED': ")


def test_a_line_break_in_an_import_error_cannot_forge_a_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "forging_module.py").write_text(
        "raise RuntimeError('broken\\nfatal: FORGED\\u2028fatal: FORGED')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["check"], environ({"TRANSFORM_MODULES": "forging_module"})) == 2
    (line,) = config_lines(capsys.readouterr().err)
    assert line == (
        "config error: TRANSFORM_MODULES='forging_module': importable modules "
        "(RuntimeError: broken\\nfatal: FORGED\\u2028fatal: FORGED)"
    )


@pytest.mark.parametrize("code", ["0", "3", "'bye'"])
def test_a_module_exiting_at_import_is_a_config_error(
    code: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = f"exiting_module_{abs(hash(code))}"
    (tmp_path / f"{name}.py").write_text(f"import sys\nsys.exit({code})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        code = main(["check"], environ({"TRANSFORM_MODULES": name}))
    except SystemExit as exc:
        pytest.fail(f"the module's SystemExit({exc.code!r}) ended the command")
    assert code == 2
    (line,) = config_lines(capsys.readouterr().err)
    assert line.startswith(
        f"config error: TRANSFORM_MODULES='{name}': importable modules (SystemExit"
    )


def test_a_long_value_is_cut_in_the_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check"], environ({"TOPICS": "t" * 100_000})) == 2
    (line,) = config_lines(capsys.readouterr().err)
    assert line.startswith("config error: TOPICS='ttt")
    assert "(100000 characters)" in line and len(line) < 1000


def test_retry_bounds_name_both_variables(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check"], environ({"RETRY_INITIAL_MS": "10000", "RETRY_MAX_MS": "1"})) == 2
    (line,) = config_lines(capsys.readouterr().err)
    assert line.startswith("config error: RETRY_INITIAL_MS='10000': ")
    assert "RETRY_MAX_MS" in line


def test_a_descriptor_set_over_the_limit_is_not_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    big = tmp_path / "big.binpb"
    with big.open("wb") as file:
        file.truncate(64 * 1024 * 1024 + 1)  # sparse: no disk used
    assert main(["check"], environ({"PROTO_DESCRIPTOR_SET": str(big)})) == 2
    (line,) = config_lines(capsys.readouterr().err)
    assert line.startswith("config error: PROTO_DESCRIPTOR_SET=") and "at most" in line
