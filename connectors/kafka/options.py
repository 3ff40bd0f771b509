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
