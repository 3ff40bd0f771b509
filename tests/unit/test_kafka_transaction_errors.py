"""Transaction errors through the one translation: a fenced transactional producer stops
with a line naming its transactional id; an abortable failure stays retriable (the batch is
produced again in a new transaction)."""

from __future__ import annotations

import pytest
from aiokafka import errors as kafka_errors

from connectors.config.settings import KafkaSettings
from connectors.core.errors import FatalError, RetriableError
from connectors.kafka import Where, translate
from connectors.kafka.transactions import transactional_id

SETTINGS = KafkaSettings(bootstrap_servers="broker:9092")
TID = transactional_id("orders", ("payments", 3))
WHERE = Where("kafka at broker:9092 topic out", SETTINGS, "WRITE", ("out",), "orders", TID)


def test_the_transactional_id_stands_for_the_connector_and_its_input_partition() -> None:
    assert TID == "orders-payments-3"


@pytest.mark.parametrize(
    "error",
    [
        kafka_errors.ProducerFenced(),
        kafka_errors.InvalidProducerEpoch(),
        kafka_errors.TransactionCoordinatorFenced(),
    ],
)
def test_a_fenced_producer_names_the_transactional_id(error: Exception) -> None:
    found = translate(error, WHERE)
    assert isinstance(found, FatalError)
    assert "fenced: another instance owns transactional id 'orders-payments-3'" in str(found)


def test_without_a_transactional_id_fencing_keeps_its_generic_line() -> None:
    plain = Where("kafka", SETTINGS, "WRITE", ("out",))
    found = translate(kafka_errors.ProducerFenced(), plain)
    assert isinstance(found, FatalError) and "transactional id" not in str(found)


@pytest.mark.parametrize(
    "error", [kafka_errors.ConcurrentTransactions(), kafka_errors.RequestTimedOutError()]
)
def test_an_abortable_failure_is_retried(error: Exception) -> None:
    assert isinstance(translate(error, WHERE), RetriableError)
