"""`SyncProducer`: the producer library for services without an event loop.

The async `Producer` runs on a loop in a thread of its own; each call blocks until its
result is ready, so a Flask view or a script sends a typed record in one line::

    with SyncProducer.from_env() as producer:
        producer.send("orders.created", OrderCreated(id=1), key=b"1")
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

from google.protobuf.message import Message

from connectors.producer.client import Headers, Producer

T = TypeVar("T")


class SyncProducer:
    def __init__(self, factory: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="connectors-producer", daemon=True
        )
        self._thread.start()
        self._producer: Producer = self._run(_make(factory))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **options: Any) -> SyncProducer:
        return cls(lambda: Producer.from_env(environ, **options))

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def start(self) -> None:
        self._run(self._producer.start())

    def send(
        self, topic: str, message: Message, *, key: bytes | None = None, headers: Headers = ()
    ) -> Any:
        """Send one record; returns once the brokers acknowledged it."""
        return self._run(self._producer.send(topic, message, key=key, headers=headers))

    def submit(
        self, topic: str, message: Message, *, key: bytes | None = None, headers: Headers = ()
    ) -> None:
        """Queue one record; `flush` waits for all of them."""
        self._run(self._producer.submit(topic, message, key=key, headers=headers))

    def flush(self) -> None:
        self._run(self._producer.flush())

    def close(self) -> None:
        try:
            self._run(self._producer.stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def __enter__(self) -> SyncProducer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _make(factory: Any) -> Producer:
    """The producer is made on the loop's thread: aiokafka binds it to the running loop."""
    made: Producer = factory()
    return made
