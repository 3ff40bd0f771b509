"""Why a client could not bootstrap, in one line that says what to fix.

aiokafka logs each broker's error but raises only "Unable to bootstrap", so one connection
of our own, with the same TLS and SASL, finds the cause: bad credentials and an untrusted
or refused certificate will not heal by retrying (fatal); anything else may (retriable).
"""

from __future__ import annotations

import ssl

from aiokafka import errors as kafka_errors
from aiokafka.conn import create_conn

from connectors.config.settings import KafkaSettings
from connectors.core.errors import FatalError, RetriableError
from connectors.kafka.errors import AUTHENTICATION, Where, translate
from connectors.kafka.options import client_options

_PROBE_TIMEOUT_MS = 10_000
# TLS alerts by which a broker refuses the client certificate (mutual TLS).
_CERTIFICATE_REFUSED = {
    "TLSV13_ALERT_CERTIFICATE_REQUIRED",
    "SSLV3_ALERT_BAD_CERTIFICATE",
    "TLSV1_ALERT_UNKNOWN_CA",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
    "TLSV1_ALERT_ACCESS_DENIED",
}


async def _connect_once(settings: KafkaSettings) -> BaseException | None:
    """Why the bootstrap failed: aiokafka logs each broker's error but raises only
    "Unable to bootstrap", so one connection of our own (same TLS and SASL) finds out."""
    options = client_options(settings)
    cause: BaseException | None = None
    for server in settings.bootstrap_servers.split(","):
        host, _, port = server.rpartition(":")
        try:
            conn = await create_conn(
                host.strip("[]"),
                int(port),
                request_timeout_ms=_PROBE_TIMEOUT_MS,
                ssl_context=options.get("ssl_context"),
                security_protocol=settings.security_protocol,
                sasl_mechanism=options.get("sasl_mechanism"),
                sasl_plain_username=options.get("sasl_plain_username"),
                sasl_plain_password=options.get("sasl_plain_password"),
            )
        except (OSError, TimeoutError, kafka_errors.KafkaError) as exc:
            cause = exc
        else:
            conn.close()
            return None
    return cause


def _unreachable(
    exc: kafka_errors.KafkaError, cause: BaseException | None, settings: KafkaSettings
) -> Exception:
    """Bad credentials and an untrusted certificate will not heal by retrying: fatal."""
    servers = settings.bootstrap_servers
    if isinstance(cause, AUTHENTICATION):
        return translate(cause, Where("kafka", settings))
    if isinstance(cause, ssl.SSLCertVerificationError):
        return FatalError(
            f"kafka: TLS: the certificate of {servers} is not trusted: "
            f"{cause.verify_message} (check KAFKA_SSL_CAFILE={settings.ssl_cafile or '(system)'}"
            f" and KAFKA_SSL_CHECK_HOSTNAME)"
        )
    refusal = cause.__cause__ if cause is not None else None
    if isinstance(refusal, ssl.SSLError) and refusal.reason in _CERTIFICATE_REFUSED:
        return FatalError(
            f"kafka: TLS: {servers} refused our client certificate ({refusal.reason}; check "
            f"KAFKA_SSL_CERTFILE={settings.ssl_certfile or '(none)'} and KAFKA_SSL_KEYFILE)"
        )
    return RetriableError(f"kafka: {servers} unreachable: {cause or exc}")


async def diagnose(exc: kafka_errors.KafkaError, settings: KafkaSettings) -> Exception:
    """The error to raise for a bootstrap that failed with `exc`."""
    cause = await _connect_once(settings)
    error = _unreachable(exc, cause, settings)
    error.__cause__ = cause or exc
    return error
