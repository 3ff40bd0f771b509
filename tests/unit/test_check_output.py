"""`connector check` readable: one block per component, one `NAME=value` per line, no
Python spellings (`None`, `True`), secrets only `set`/`unset`, defaults marked, the
effective group id and dead-letter topic shown."""

from __future__ import annotations

import re

import pytest

from connectors.cli import main
from connectors.config.settings import RuntimeSettings
from tests.conftest import EDGE_DESCRIPTORS

GOOD = {
    "CONNECTOR_NAME": "prefs-to-marketing",
    "TOPICS": "zone-settings",
    "TOPIC_SCHEMAS": "zone-settings=edge.v1.ZoneSettingsChanged",
    "PROTO_DESCRIPTOR_SET": str(EDGE_DESCRIPTORS),
    "TRANSFORMS": "pf_edge",
    "KV_URL": "redis://:hunter2@cache:6379/0",
    "BATCH_MAX_WAIT_MS": "250",
}
BLOCKS = ("connector:", "topics:", "reader:", "transforms:", "writer:", "dead letters:",
          "retry:", "observability:")  # fmt: skip


def checked(capsys: pytest.CaptureFixture[str], **changes: str) -> list[str]:
    assert main(["check"], {**GOOD, **changes}) == 0
    return capsys.readouterr().out.splitlines()


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"WRITER": "http", "HTTP_URL": "https://crm.example/api?token=abc123"},
        {"WRITER": "s3", "S3_BUCKET": "logs"},
        {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "u",
         "KAFKA_SASL_PASSWORD": "pw-secret", "ON_ERROR": "fail"},
    ],
)  # fmt: skip
def test_every_line_is_readable(
    capsys: pytest.CaptureFixture[str], changes: dict[str, str]
) -> None:
    lines = checked(capsys, **changes)
    text = "\n".join(lines)
    for block in BLOCKS:
        assert any(line.startswith(block) for line in lines), (block, text)
    assert not re.search(r"\b(None|True|False)\b", text), text
    assert "**********" not in text
    assert "hunter2" not in text and "pw-secret" not in text and "abc123" not in text
    for line in lines:
        assert len(line) <= 120, line
    settings = [line.strip() for line in lines if line.startswith("  ") and "=" in line]
    assert len(settings) > 40
    for line in settings:
        if " -> " in line and "=" not in line.partition(" -> ")[0]:
            continue  # a topic binding
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*=\S.*", line), line


def test_unset_secrets_defaults_and_the_effective_group(
    capsys: pytest.CaptureFixture[str],
) -> None:
    lines = [line.strip() for line in checked(capsys)]
    assert "KAFKA_SASL_PASSWORD=unset" in lines
    assert "KAFKA_SSL_KEY_PASSWORD=unset" in lines
    assert "KAFKA_GROUP_ID=unset -> group prefs-to-marketing" in lines
    assert "DLQ_TOPIC=unset -> prefs-to-marketing.dlq" in lines
    default = RuntimeSettings.model_fields["batch_max_messages"].default
    assert f"BATCH_MAX_MESSAGES={default} (default)" in lines
    assert "BATCH_MAX_WAIT_MS=250" in lines  # set: not marked
    assert "KAFKA_SSL_CHECK_HOSTNAME=true (default)" in lines
    assert "KV_URL=redis://:*****@cache:6379/0" in lines
    assert "zone-settings -> edge.v1.ZoneSettingsChanged" in lines
    assert "transforms: pf_edge (sync)" in lines


def test_set_secrets_and_group(capsys: pytest.CaptureFixture[str]) -> None:
    lines = [
        line.strip()
        for line in checked(
            capsys,
            KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
            KAFKA_SASL_USERNAME="svc",
            KAFKA_SASL_PASSWORD="pw-secret",  # noqa: S106 - a test value
            KAFKA_GROUP_ID="g1",
        )
    ]
    assert "KAFKA_SASL_PASSWORD=set" in lines
    assert "KAFKA_GROUP_ID=g1" in lines
    assert "KAFKA_SASL_USERNAME=svc" in lines


def test_writer_derived_values(capsys: pytest.CaptureFixture[str]) -> None:
    lines = [
        line.strip()
        for line in checked(
            capsys,
            WRITER="http",
            HTTP_URL="https://crm.example/api?token=abc123",
            HTTP_HEADERS='{"Authorization": "Bearer abc123"}',
        )
    ]
    assert "HTTP_HEADERS=Authorization: *****" in lines
    assert "HTTP_DELETE_METHOD=unset -> HTTP_METHOD, as a document" in lines
    assert any(line.startswith("HTTP_URL=https://crm.example/api?token=*****") for line in lines)
