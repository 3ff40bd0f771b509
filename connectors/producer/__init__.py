"""The producer library: one protobuf type per topic, enforced where records are made.

`Producer` (async) and `SyncProducer` (for services without an event loop) are exported
from `connectors`; see `connectors.producer.client`.
"""

from connectors.producer.client import Producer
from connectors.producer.sync import SyncProducer

__all__ = ["Producer", "SyncProducer"]
