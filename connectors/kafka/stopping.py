"""Stopping a consumer when the broker may be gone."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer

_log = logging.getLogger("connectors.kafka")


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """Leave the group. With the broker out of reach, aiokafka's fetcher re-raises the
    cancellation of its own fetch tasks out of `stop()`; that is not a cancellation of the
    caller, and must not turn a clean stop during an outage into a crash."""
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        _log.warning("the consumer stopped with the broker out of reach")
