"""Every aiokafka import of the core: client options, the idempotent producer, the one
translation of Kafka errors, dead letters on a topic, offsets read from the brokers.

The Kafka reader and writer plugins use this package too, so a broker fault means the
same thing wherever it surfaces.
"""

from connectors.kafka.errors import AUTHENTICATION, Where, principal, translate, verdict
from connectors.kafka.options import client_options
from connectors.kafka.producer import MAX_REQUEST_BYTES, idempotent_producer

__all__ = [
    "AUTHENTICATION",
    "MAX_REQUEST_BYTES",
    "Where",
    "client_options",
    "idempotent_producer",
    "principal",
    "translate",
    "verdict",
]
