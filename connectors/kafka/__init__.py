"""Every aiokafka import of the core: client options, the idempotent producer, the one
translation of Kafka errors, dead letters on a topic, offsets read from the brokers, topic
metadata (ids and permissions) aiokafka does not ask for.

The Kafka reader and writer plugins use this package too, so a broker fault means the
same thing wherever it surfaces. Importing it installs `connectors.kafka.patches` (no topic
created by naming it, header keys that are not UTF-8, FENCED_INSTANCE_ID), before any
client of the process exists.
"""

from connectors.kafka import patches

patches.install()

from connectors.kafka.bootstrap import diagnose  # noqa: E402 - after the patches, on purpose
from connectors.kafka.errors import (  # noqa: E402
    AUTHENTICATION,
    Where,
    principal,
    translate,
    verdict,
)
from connectors.kafka.fetched_records import AS_RECORD  # noqa: E402
from connectors.kafka.gathering import gather, give_back  # noqa: E402
from connectors.kafka.metadata import TopicState, describe_topics  # noqa: E402
from connectors.kafka.options import (  # noqa: E402
    client_options,
    fetch_options,
    partition_fetch_bytes,
    set_partition_fetch_bytes,
)
from connectors.kafka.producer import MAX_REQUEST_BYTES, idempotent_producer  # noqa: E402
from connectors.kafka.raw_headers import Counter as LenientHeaders  # noqa: E402
from connectors.kafka.raw_headers import is_raw  # noqa: E402
from connectors.kafka.resets import PENDING as RESETS  # noqa: E402
from connectors.kafka.stopping import stop_consumer  # noqa: E402
from connectors.kafka.transactions import PartitionTransactions, Prepared  # noqa: E402

__all__ = [
    "AS_RECORD",
    "AUTHENTICATION",
    "MAX_REQUEST_BYTES",
    "RESETS",
    "stop_consumer",
    "LenientHeaders",
    "PartitionTransactions",
    "Prepared",
    "TopicState",
    "Where",
    "client_options",
    "describe_topics",
    "diagnose",
    "fetch_options",
    "gather",
    "give_back",
    "idempotent_producer",
    "is_raw",
    "partition_fetch_bytes",
    "principal",
    "set_partition_fetch_bytes",
    "translate",
    "verdict",
]
