"""Connection options shared by every aiokafka client the runtime makes.

The reader, the dead-letter producer, the Kafka writer, the health checks and the tools
all connect alike (same TLS, same SASL), so a setting that works for one works for all.
"""

from __future__ import annotations

from typing import Any

from aiokafka.helpers import create_ssl_context

from connectors.config.settings import KafkaSettings


def client_options(settings: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments for any aiokafka client: servers, TLS context, SASL credentials."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        password = settings.ssl_key_password
        context = create_ssl_context(
            cafile=settings.ssl_cafile,
            certfile=settings.ssl_certfile,
            keyfile=settings.ssl_keyfile,
            password=password.get_secret_value() if password else None,
        )
        context.check_hostname = settings.ssl_check_hostname
        options["ssl_context"] = context
    if settings.security_protocol.startswith("SASL_"):
        secret = settings.sasl_password
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = secret.get_secret_value() if secret else None
    return options


#: The least a partition fetches, however many share the budget: below this a fetch
#: returns a handful of records and the round trips, not the records, cost the time.
MIN_PARTITION_FETCH_BYTES = 32_768


def partition_fetch_bytes(settings: KafkaSettings, partitions: int) -> int:
    """Bytes each of `partitions` assigned partitions may fetch at once.

    The consumer holds at most one fetched response per partition, so the budget divided
    among the assigned partitions bounds what the reader holds, whether it has 1 partition
    or 12; `KAFKA_MAX_PARTITION_FETCH_BYTES` caps each share (a large share only helps a
    connector that is behind, and 4 MiB already holds about 24,000 records of 150 bytes)."""
    share = settings.fetch_budget_bytes // max(partitions, 1)
    return min(settings.max_partition_fetch_bytes, max(MIN_PARTITION_FETCH_BYTES, share))


def fetch_options(settings: KafkaSettings, partitions: int = 1) -> dict[str, Any]:
    """The consumer's fetch sizes for `partitions` assigned partitions (one before any
    assignment: its share is then the largest a partition may get), and how long the
    broker may hold a fetch to gather `KAFKA_FETCH_MIN_BYTES`: a connector that keeps up
    otherwise writes what arrived since its last batch, a commit (an fsync'd LMDB commit
    rewrites each page it touched) for every few hundred records."""
    return {
        "fetch_max_bytes": min(settings.fetch_max_bytes, settings.fetch_budget_bytes),
        "max_partition_fetch_bytes": partition_fetch_bytes(settings, partitions),
        "fetch_min_bytes": settings.fetch_min_bytes,
        "fetch_max_wait_ms": settings.fetch_max_wait_ms,
    }


def set_partition_fetch_bytes(consumer: Any, size: int) -> None:
    """Change a started consumer's partition fetch size: aiokafka has no setter, its
    fetcher reads the attribute each time it builds a fetch request."""
    fetcher = getattr(consumer, "_fetcher", None)
    if fetcher is not None and hasattr(fetcher, "_max_partition_fetch_bytes"):
        fetcher._max_partition_fetch_bytes = size  # noqa: SLF001
