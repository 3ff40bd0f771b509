"""Fetch sizes derived from one budget: bounded memory with 1 partition or 100."""

from __future__ import annotations

import pytest

from connectors.cli.main import main
from connectors.config.settings import KafkaSettings
from connectors.kafka.options import MIN_PARTITION_FETCH_BYTES, fetch_options, partition_fetch_bytes
from tests.unit.test_config import environ

MIB = 1024 * 1024


def settings(**values: int) -> KafkaSettings:
    return KafkaSettings.model_validate(values)


def test_defaults_give_one_partition_2_mib_and_share_2_mib_among_many() -> None:
    s = settings()
    assert partition_fetch_bytes(s, 1) == 2 * MIB  # the whole budget
    assert partition_fetch_bytes(s, 2) == MIB
    assert partition_fetch_bytes(s, 6) == 2 * MIB // 6
    assert partition_fetch_bytes(s, 12) * 12 <= 2 * MIB
    assert fetch_options(s)["fetch_max_bytes"] == 2 * MIB  # never more than the budget


def test_a_larger_budget_is_capped_per_partition() -> None:
    s = settings(fetch_budget_bytes=8 * MIB)
    assert partition_fetch_bytes(s, 1) == 4 * MIB  # KAFKA_MAX_PARTITION_FETCH_BYTES
    assert partition_fetch_bytes(s, 6) == 8 * MIB // 6


def test_many_partitions_still_fetch_something() -> None:
    assert partition_fetch_bytes(settings(), 100_000) == MIN_PARTITION_FETCH_BYTES
    assert partition_fetch_bytes(settings(), 0) == 2 * MIB


def test_a_cap_below_the_floor_is_kept() -> None:
    assert partition_fetch_bytes(settings(max_partition_fetch_bytes=16_384), 1) == 16_384
    assert partition_fetch_bytes(settings(max_partition_fetch_bytes=16_384), 1000) == 16_384


def test_the_cap_and_the_budget_are_settable() -> None:
    s = settings(max_partition_fetch_bytes=MIB, fetch_budget_bytes=64 * MIB)
    assert partition_fetch_bytes(s, 4) == MIB
    assert fetch_options(s) == {
        "fetch_max_bytes": 50 * MIB,
        "max_partition_fetch_bytes": MIB,
        "fetch_min_bytes": 1,  # Kafka's defaults: the broker answers as soon as it has a record
        "fetch_max_wait_ms": 500,
    }


def test_the_broker_may_be_asked_to_gather_a_fetch() -> None:
    options = fetch_options(settings(fetch_min_bytes=262_144, fetch_max_wait_ms=50), 6)
    assert (options["fetch_min_bytes"], options["fetch_max_wait_ms"]) == (262_144, 50)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KAFKA_FETCH_MIN_BYTES", "0"),
        ("KAFKA_FETCH_MIN_BYTES", "52428801"),
        ("KAFKA_FETCH_MIN_BYTES", "1MB"),
        ("KAFKA_FETCH_MAX_WAIT_MS", "-1"),
        ("KAFKA_FETCH_MAX_WAIT_MS", "30001"),
    ],
)
def test_a_fetch_wait_out_of_range_exits_2_naming_it(
    name: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["check"], environ({name: value}))
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith(f"config error: {name}"), err


@pytest.mark.parametrize("value", ["1024", "-1", "2147483648", "lots"])
def test_a_budget_out_of_range_exits_2_naming_it(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["check"], environ({"KAFKA_FETCH_BUDGET_BYTES": value}))
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("config error: KAFKA_FETCH_BUDGET_BYTES"), err
