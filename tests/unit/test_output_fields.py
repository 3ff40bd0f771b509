"""Routed fields a writer reads from the output, checked against the output's type when it
is known (no TRANSFORMS: each topic's decoded message), through `connector check`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from connectors.config.output_fields import has_field
from tests.conftest import ROOT
from transforms.proto.edge import ZoneSettingsChanged

BASE = {
    "CONNECTOR_NAME": "routed",
    "TOPICS": "zone-settings",
    "TOPIC_SCHEMAS": "zone-settings=edge.v1.ZoneSettingsChanged",
    "PROTO_MODULES": "transforms.proto.edge",
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
}


def check(**env: str) -> subprocess.CompletedProcess[str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return subprocess.run(
        [sys.executable, "-m", "connectors.cli", "check"],
        env={**keep, **BASE, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("writer", "variable", "value"),
    [
        ("http", "HTTP_URL", "http://127.0.0.1:1/zones/{value.zone_idd}"),
        (
            "s3",
            "S3_KEY_TEMPLATE",
            "{value.acount_id}/{topic}/{partition}/{first_offset}-{last_offset}",
        ),
        ("s3", "S3_TIME_FIELD", "updated_at"),
    ],
)
def test_a_field_the_output_type_lacks_is_a_config_error(
    writer: str, variable: str, value: str
) -> None:
    env = {"WRITER": writer, variable: value, "S3_BUCKET": "audit-logs"}
    done = check(**env)
    assert done.returncode == 2, done.stdout + done.stderr
    line = [line for line in done.stderr.splitlines() if variable in line]
    assert line and "edge.v1.ZoneSettingsChanged" in line[0] and "has no field" in line[0], (
        done.stderr
    )


def test_fields_the_output_has_pass_and_transforms_defer_the_check_to_each_record() -> None:
    url = "http://127.0.0.1:1/accounts/{value.account_id}/zones/{value.zone_id}"
    assert check(WRITER="http", HTTP_URL=url).returncode == 0
    wrong = "http://127.0.0.1:1/{value.user_id}"
    assert check(WRITER="http", HTTP_URL=wrong, TRANSFORMS="identity").returncode == 0


def test_raw_bytes_have_no_fields() -> None:
    done = check(
        WRITER="http", TOPIC_SCHEMAS="zone-settings=bytes", HTTP_URL="http://127.0.0.1:1/{value.id}"
    )
    assert done.returncode == 2 and "raw bytes" in done.stderr, done.stderr


def test_paths_through_nested_messages_and_maps() -> None:
    descriptor = ZoneSettingsChanged.DESCRIPTOR
    assert has_field(descriptor, ["zone_id"])
    assert has_field(descriptor, ["settings", "any-key"])  # a map: any key
    assert not has_field(descriptor, ["zone_id", "deeper"])  # a scalar has no fields
    assert not has_field(descriptor, ["features", "x"])  # a repeated scalar neither
    assert not has_field(descriptor, ["nope"])
