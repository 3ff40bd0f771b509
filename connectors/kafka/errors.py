"""The one translation of aiokafka's errors into the runtime's, for every Kafka client.

The reader, the Kafka writer, the dead-letter producer, the health checks and the tools
all call `translate`, so one broker fault is treated alike wherever it surfaces::

    aiokafka error                                         ours
    ─────────────────────────────────────────────────────  ──────────────────────────────
    authentication (SASL, bad mechanism, tokens)            FatalError  names the principal
    authorization (topic, group, cluster, transactional id) FatalError  names resource, the
                                                                        operation to grant, who
    configuration the broker refuses (session timeout, ...) FatalError  names the variable
    a request the broker will never accept (bad request,    FatalError
      unsupported version, transactions we do not use)
    fencing (another producer, another static member)       FatalError  names
                                                                        KAFKA_GROUP_INSTANCE_ID,
                                                                        or the transactional id
                                                                        and the partition it
                                                                        stands for
    one record the broker will never take (too large,       PoisonError (stage given by the
      corrupt, invalid timestamp, larger than a segment)                 caller)
    anything else: connection, timeouts, leader moves,      RetriableError
      coordinator changes, rebalances, unknown codes

Unknown codes retry rather than stop: a pipeline that retries commits nothing meanwhile
(nothing lost), its health turns `stuck`, and `RETRY_MAX_ATTEMPTS` bounds it; a stop on a
new transient code would page someone for a blip. aiokafka's own `retriable` flags are not
used: they call a `KafkaTimeoutError` or a `RebalanceInProgressError` permanent.

aiokafka has no class for FENCED_INSTANCE_ID (error 82): `connectors.kafka.patches` gives
it one, and since aiokafka reports it from its heartbeat and join only as the text of a
plain `KafkaError`, that text is recognised here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from aiokafka import errors as kafka_errors

from connectors.config.settings import KafkaSettings
from connectors.core.errors import ConnectorError, FatalError, PoisonError, RetriableError
from connectors.core.records import Record
from connectors.kafka.patches import FENCED_INSTANCE_ID, FencedInstanceIdError

Verdict = Literal["retriable", "fatal", "poison"]

AUTHENTICATION: tuple[type[kafka_errors.KafkaError], ...] = (
    kafka_errors.SaslAuthenticationFailed,
    kafka_errors.AuthenticationFailedError,
    kafka_errors.AuthenticationMethodNotSupported,
    kafka_errors.UnsupportedSaslMechanismError,
    kafka_errors.IllegalSaslStateError,
)
AUTHORIZATION: tuple[type[Exception], ...] = (
    kafka_errors.TopicAuthorizationFailedError,
    kafka_errors.GroupAuthorizationFailedError,
    kafka_errors.ClusterAuthorizationFailedError,
    kafka_errors.TransactionalIdAuthorizationFailed,
    kafka_errors.DelegationTokenAuthorizationFailed,
)
#: Refusals of delegation tokens and principals: the runtime uses neither, so none heals.
_TOKENS: tuple[type[Exception], ...] = (
    kafka_errors.DelegationTokenAuthDisabled,
    kafka_errors.DelegationTokenNotFound,
    kafka_errors.DelegationTokenOwnerMismatch,
    kafka_errors.DelegationTokenRequestNotAllowed,
    kafka_errors.DelegationTokenExpired,
    kafka_errors.InvalidPrincipalType,
)
_FATAL: tuple[type[Exception], ...] = (
    *AUTHENTICATION,
    *AUTHORIZATION,
    *_TOKENS,
    FencedInstanceIdError,
    kafka_errors.UnsupportedVersionError,
    kafka_errors.UnrecognizedBrokerVersion,
    kafka_errors.IncompatibleBrokerVersion,
    kafka_errors.UnsupportedCodecError,
    kafka_errors.UnsupportedForMessageFormatError,
    kafka_errors.KafkaConfigurationError,
    kafka_errors.IllegalArgumentError,
    kafka_errors.InvalidConfigurationError,
    kafka_errors.InvalidSessionTimeoutError,
    kafka_errors.InvalidTopicError,
    kafka_errors.InvalidGroupIdError,
    kafka_errors.InconsistentGroupProtocolError,
    kafka_errors.InvalidRequestError,
    kafka_errors.InvalidRequiredAcksError,
    kafka_errors.InvalidCommitOffsetSizeError,
    kafka_errors.OffsetMetadataTooLargeError,
    kafka_errors.InvalidReplicationAssignmentError,
    kafka_errors.TopicAlreadyExistsError,
    kafka_errors.InvalidTxnState,
    kafka_errors.InvalidTransactionTimeout,
    kafka_errors.InvalidReplicationFactorError,
    kafka_errors.InvalidPartitionsError,
    kafka_errors.PolicyViolationError,
    kafka_errors.SecurityDisabled,
    kafka_errors.ProducerFenced,
    kafka_errors.TransactionCoordinatorFenced,
    kafka_errors.InvalidProducerEpoch,
    kafka_errors.OutOfOrderSequenceNumber,
    kafka_errors.ProducerClosed,
)
_POISON: tuple[type[Exception], ...] = (
    kafka_errors.MessageSizeTooLargeError,
    kafka_errors.RecordTooLargeError,
    kafka_errors.RecordListTooLargeError,
    kafka_errors.CorruptRecordException,
    kafka_errors.InvalidTimestampError,
)

#: Variables behind settings a broker may refuse, named in the fatal line.
_VARIABLE: dict[type[Exception], str] = {
    kafka_errors.InvalidSessionTimeoutError: "KAFKA_SESSION_TIMEOUT_MS",
    kafka_errors.InvalidTopicError: "TOPICS",
    kafka_errors.InvalidGroupIdError: "KAFKA_GROUP_ID",
    kafka_errors.InconsistentGroupProtocolError: "KAFKA_GROUP_ID",
    kafka_errors.UnsupportedSaslMechanismError: "KAFKA_SASL_MECHANISM",
    kafka_errors.UnsupportedCodecError: "KAFKA_OUTPUT_COMPRESSION",
}
#: What the broker wants instead, where its refusal alone does not say.
_HINT: dict[type[Exception], str] = {
    kafka_errors.InvalidSessionTimeoutError: "it must lie between the broker's "
    "group.min.session.timeout.ms and group.max.session.timeout.ms (6000 and 1800000 by "
    "default)",
    kafka_errors.InconsistentGroupProtocolError: "another application uses this consumer "
    "group with another protocol; give the connector a group of its own",
}


def fenced(exc: BaseException) -> bool:
    """Whether `exc` says another member took our `group.instance.id`: the error itself
    (from a commit), or aiokafka's plain `KafkaError` whose text names it (from a heartbeat
    or a join)."""
    if isinstance(exc, FencedInstanceIdError):
        return True
    if getattr(exc, "errno", None) == FENCED_INSTANCE_ID:
        return True
    if type(exc) is not kafka_errors.KafkaError:
        return False
    text = _text(exc)
    return FencedInstanceIdError.__name__ in text or FencedInstanceIdError.message in text


def _text(exc: BaseException) -> str:
    """`str(exc)` on one line (some of aiokafka's texts are paragraphs), which aiokafka's
    base classes cannot always render (no `errno`)."""
    try:
        return " ".join(str(exc).split())
    except Exception:  # noqa: BLE001 - a message must not hide the error
        return type(exc).__name__


def verdict(exc: BaseException) -> Verdict:
    """What an error means for the pipeline, from its class (and, for a fenced static
    member, aiokafka's text) alone."""
    if isinstance(exc, _POISON):
        return "poison"
    if isinstance(exc, _FATAL) or fenced(exc):
        return "fatal"
    return "retriable"


@dataclass(frozen=True, slots=True)
class Where:
    """What the failing client was doing, so the one line says what to fix.

    `head` starts the line (`kafka`, `dead-letter topic 'x' cannot be written`);
    `operation` is the ACL operation the call needs (READ for consuming, WRITE for
    producing, DESCRIBE for the health checks); `topics` and `group` what it was about.
    """

    head: str
    settings: KafkaSettings
    operation: str = "READ"
    topics: tuple[str, ...] = ()
    group: str | None = None
    transactional_id: str | None = None


def principal(settings: KafkaSettings) -> str:
    """Who the broker sees, as an operator would name them in an ACL."""
    if settings.security_protocol.startswith("SASL_"):
        return f"user {settings.sasl_username!r}"
    if settings.ssl_certfile:
        return "the principal of KAFKA_SSL_CERTFILE"
    return "User:ANONYMOUS"


def _names(exc: BaseException | None, fallback: tuple[str, ...]) -> str:
    """The topic(s) or group aiokafka put in the error, quoted: `'a'` or `'a', 'b'`."""
    found = exc.args[0] if exc is not None and exc.args else None
    if isinstance(found, str) and found:
        names = [found]
    elif isinstance(found, set | frozenset | list | tuple) and found:
        names = sorted(str(name) for name in found)
    else:
        names = list(fallback) or ["?"]
    return ", ".join(repr(name) for name in names)


def _producer_hint(exc: BaseException) -> str:
    """Why a producer may be refused where the broker's code alone misleads."""
    if isinstance(exc, kafka_errors.ClusterAuthorizationFailedError):
        return (
            "; the idempotent producer needs WRITE on the topic (or IDEMPOTENT_WRITE on the "
            "cluster)"
        )
    if isinstance(exc, kafka_errors.TopicAuthorizationFailedError):
        # The broker answers a topic that does not exist and may not be created (no
        # CREATE) the same way as one that may not be written.
        return "; if the topic does not exist yet, creating it needs CREATE"
    return ""


def _denied(exc: BaseException, where: Where) -> str:
    who = principal(where.settings)
    if isinstance(exc, kafka_errors.GroupAuthorizationFailedError):
        group = (where.group,) if where.group else ()
        resource = f"READ on group {_names(exc, group)}"
    elif isinstance(exc, kafka_errors.TransactionalIdAuthorizationFailed):
        resource = "WRITE on the transactional id"
    elif isinstance(exc, kafka_errors.TopicAuthorizationFailedError):
        resource = f"{where.operation} on topic {_names(exc, where.topics)}"
    else:
        resource = f"{where.operation} on topic {_names(None, where.topics)}"
    hint = _producer_hint(exc) if where.operation == "WRITE" else ""
    detail = f"{type(exc).__name__}{hint}" if hint else getattr(exc, "message", type(exc).__name__)
    return f"{where.head}: not authorized: {resource} denied to {who} ({detail})"


#: What a transactional producer is told once another one initialised its transactional id
#: (or the broker timed its transaction out and bumped its epoch).
PRODUCER_FENCED: tuple[type[Exception], ...] = (
    kafka_errors.ProducerFenced,
    kafka_errors.InvalidProducerEpoch,
    kafka_errors.TransactionCoordinatorFenced,
)


def _producer_fenced(exc: BaseException, where: Where) -> str:
    return (
        f"{where.head}: fenced: another instance owns transactional id "
        f"{where.transactional_id!r} (the input partition it stands for was assigned to "
        f"another member, or this transaction outlived its timeout; {type(exc).__name__}); "
        f"this one stops, its open transaction aborted, nothing of it committed"
    )


def _fenced(where: Where) -> str:
    instance = where.settings.group_instance_id
    return (
        f"{where.head}: fenced: another process joined group {where.group!r} with the same "
        f"KAFKA_GROUP_INSTANCE_ID={instance!r} (FENCED_INSTANCE_ID, error "
        f"{FENCED_INSTANCE_ID}); this one stops: give each process its own "
        f"KAFKA_GROUP_INSTANCE_ID (e.g. its pod name)"
    )


def translate(
    exc: BaseException,
    where: Where,
    *,
    record: Record | None = None,
    stage: str = "write",
) -> ConnectorError:
    """`exc` (any aiokafka error, timeout or OSError) as one of ours, with a one-line
    message that names the resource, the permission or the variable at fault."""
    if isinstance(exc, ConnectorError):
        return exc
    kind = verdict(exc)
    text = f"{type(exc).__name__}: {_text(exc)}"
    if kind == "poison":
        return PoisonError(stage, f"{where.head}: the broker refuses this record: {text}", record)
    if kind == "retriable":
        return RetriableError(f"{where.head}: {text}")
    if isinstance(exc, AUTHORIZATION):
        return FatalError(_denied(exc, where))
    if fenced(exc):
        return FatalError(_fenced(where))
    if where.transactional_id is not None and isinstance(exc, PRODUCER_FENCED):
        return FatalError(_producer_fenced(exc, where))
    if isinstance(exc, AUTHENTICATION):
        s = where.settings
        detail = exc.args[0] if exc.args else getattr(exc, "description", text)
        return FatalError(
            f"{where.head}: authentication failed for {principal(s)} with {s.sasl_mechanism} "
            f"at {s.bootstrap_servers}: {detail} (check KAFKA_SASL_USERNAME, "
            f"KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM)"
        )
    variable = next((v for cls, v in _VARIABLE.items() if isinstance(exc, cls)), None)
    if variable is not None:
        return FatalError(_refused(exc, where, variable, text))
    return FatalError(f"{where.head}: {text}")


def _refused(exc: BaseException, where: Where, variable: str, text: str) -> str:
    """`the broker refuses VARIABLE=value (error): what it wants instead`."""
    field = variable.removeprefix("KAFKA_").lower()
    value = getattr(where.settings, field, None)
    if variable == "TOPICS" and where.topics:
        value = ",".join(where.topics)
    if variable == "KAFKA_GROUP_ID" and where.group:
        value = where.group  # KAFKA_GROUP_ID, or CONNECTOR_NAME when it is unset
    shown = f"{variable}={value!r}" if isinstance(value, str) else f"{variable}={value}"
    hint = next((h for cls, h in _HINT.items() if isinstance(exc, cls)), None)
    if value is None:
        shown = variable
    if hint is None:
        return f"{where.head}: the broker refuses {shown} ({text})"
    return f"{where.head}: the broker refuses {shown} ({type(exc).__name__}): {hint}"
