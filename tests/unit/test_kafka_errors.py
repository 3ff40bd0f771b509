"""The one translation of Kafka errors, pinned over every error class aiokafka defines.

Each class is judged once here: retriable (the batch is retried, nothing committed
meanwhile), fatal (the connector stops with one line) or poison (one record is set aside).
A class a new aiokafka adds fails `test_every_aiokafka_error_is_judged` until someone
decides what it means. The one-line messages of refusals are the ones
`tests/integration/test_security.py` expects from a real broker.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest
from aiokafka import errors as kafka_errors

from connectors.config.settings import KafkaSettings
from connectors.core.errors import FatalError, PoisonError, RetriableError
from connectors.core.records import Record
from connectors.kafka import Where, translate, verdict
from connectors.kafka.errors import fenced
from connectors.kafka.patches import FENCED_INSTANCE_ID, FencedInstanceIdError

ROOT = Path(__file__).resolve().parents[2]

RETRIABLE = {
    "BrokerNotAvailableError", "BrokerResponseError", "Cancelled", "CommitFailedError",
    "ConcurrentTransactions", "CorrelationIdError", "DuplicateSequenceNumber",
    "FetchSessionIdNotFound", "GroupIdNotFound",
    "GroupCoordinatorNotAvailableError", "GroupLoadInProgressError", "NotCoordinatorForGroupError",
    "IllegalGenerationError", "IllegalStateError", "InvalidFetchRequestError",
    "InvalidFetchSessionEpoch", "InvalidProducerIdMapping", "KafkaConnectionError", "KafkaError",
    "KafkaProtocolError", "KafkaStorageError", "KafkaTimeoutError", "KafkaUnavailableError",
    "LeaderNotAvailableError", "ListenerNotFound", "LogDirNotFound", "MemberIdRequired",
    "MetadataEmptyBrokerList", "NoBrokersAvailable", "NoError", "NoOffsetForPartitionError",
    "NodeNotReadyError", "NonEmptyGroup", "NotControllerError",
    "NotEnoughReplicasAfterAppendError", "NotEnoughReplicasError", "NotLeaderForPartitionError",
    "OffsetOutOfRangeError", "OperationNotAttempted", "QuotaViolationError",
    "ReassignmentInProgress", "RebalanceInProgressError", "ReplicaNotAvailableError",
    "RequestTimedOutError", "StaleControllerEpochError", "StaleLeaderEpochCodeError",
    "StaleMetadata", "TooManyInFlightRequests", "UnknownError", "UnknownMemberIdError",
    "UnknownProducerId", "UnknownTopicOrPartitionError",
}  # fmt: skip
FATAL = {
    "AuthenticationFailedError", "AuthenticationMethodNotSupported",
    "ClusterAuthorizationFailedError", "DelegationTokenAuthDisabled",
    "DelegationTokenAuthorizationFailed", "DelegationTokenExpired", "DelegationTokenNotFound",
    "DelegationTokenOwnerMismatch", "DelegationTokenRequestNotAllowed",
    "GroupAuthorizationFailedError", "IllegalArgumentError", "IllegalSaslStateError",
    "IncompatibleBrokerVersion", "InconsistentGroupProtocolError", "InvalidCommitOffsetSizeError",
    "InvalidConfigurationError", "InvalidGroupIdError", "InvalidPartitionsError",
    "InvalidPrincipalType", "InvalidProducerEpoch", "InvalidReplicationAssignmentError",
    "InvalidReplicationFactorError", "InvalidRequestError", "InvalidRequiredAcksError",
    "InvalidSessionTimeoutError", "InvalidTopicError", "InvalidTransactionTimeout",
    "InvalidTxnState", "KafkaConfigurationError", "OffsetMetadataTooLargeError",
    "OutOfOrderSequenceNumber", "PolicyViolationError", "ProducerClosed", "ProducerFenced",
    "SaslAuthenticationFailed", "SecurityDisabled", "TopicAlreadyExistsError",
    "TopicAuthorizationFailedError", "TransactionCoordinatorFenced",
    "TransactionalIdAuthorizationFailed", "UnrecognizedBrokerVersion", "UnsupportedCodecError",
    "UnsupportedForMessageFormatError", "UnsupportedSaslMechanismError",
    "UnsupportedVersionError",
}  # fmt: skip
POISON = {
    "CorruptRecordException", "InvalidTimestampError", "MessageSizeTooLargeError",
    "RecordListTooLargeError", "RecordTooLargeError",
}  # fmt: skip
EXPECTED = {
    **dict.fromkeys(RETRIABLE, "retriable"),
    **dict.fromkeys(FATAL, "fatal"),
    **dict.fromkeys(POISON, "poison"),
}

USER, SERVERS = "connector", "broker-1:9093,broker-2:9093"
SASL = KafkaSettings.model_validate(
    {
        "bootstrap_servers": SERVERS,
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_username": USER,
        "sasl_password": "s3cret",
        "group_instance_id": "pod-0",
    }
)
READER = Where("kafka", SASL, "READ", ("orders",), "orders-group")
DLQ = Where("dead-letter topic 'c.dlq' cannot be written", SASL, "WRITE", ("c.dlq",))
RECORD = Record("orders", 2, 41, b"k", b"v")


def aiokafka_error_classes() -> list[type[kafka_errors.KafkaError]]:
    """Every KafkaError class aiokafka.errors defines, each once (some have aliases)."""
    found: dict[str, type[kafka_errors.KafkaError]] = {}
    for value in vars(kafka_errors).values():
        if inspect.isclass(value) and issubclass(value, kafka_errors.KafkaError):
            found.setdefault(value.__name__, value)
    return sorted(found.values(), key=lambda cls: cls.__name__)


def test_every_aiokafka_error_is_judged() -> None:
    names = {cls.__name__ for cls in aiokafka_error_classes()}
    assert names - EXPECTED.keys() == set(), "new aiokafka errors: judge them"
    assert EXPECTED.keys() - names == set(), "errors aiokafka no longer defines"


@pytest.mark.parametrize("cls", aiokafka_error_classes(), ids=lambda cls: cls.__name__)
def test_each_error_translates_to_its_verdict(cls: type[kafka_errors.KafkaError]) -> None:
    exc = cls()
    expected = EXPECTED[cls.__name__]
    assert verdict(exc) == expected
    ours = translate(exc, READER, record=RECORD, stage="write")
    kind = {"retriable": RetriableError, "fatal": FatalError, "poison": PoisonError}[expected]
    assert type(ours) is kind
    assert "\n" not in str(ours)
    assert str(ours).startswith("kafka: ")
    if isinstance(ours, PoisonError):
        assert ours.record == RECORD
        assert ours.stage == "write"


@pytest.mark.parametrize(
    ("exc", "where", "line"),
    [
        (
            kafka_errors.TopicAuthorizationFailedError("orders"),
            READER,
            f"kafka: not authorized: READ on topic 'orders' denied to user '{USER}' "
            "(TOPIC_AUTHORIZATION_FAILED)",
        ),
        (
            kafka_errors.TopicAuthorizationFailedError({"b", "a"}),
            READER,
            f"kafka: not authorized: READ on topic 'a', 'b' denied to user '{USER}' "
            "(TOPIC_AUTHORIZATION_FAILED)",
        ),
        (
            kafka_errors.GroupAuthorizationFailedError("orders-group"),
            READER,
            f"kafka: not authorized: READ on group 'orders-group' denied to user '{USER}' "
            "(GROUP_AUTHORIZATION_FAILED)",
        ),
        (
            kafka_errors.ClusterAuthorizationFailedError(),
            DLQ,
            f"dead-letter topic 'c.dlq' cannot be written: not authorized: WRITE on topic "
            f"'c.dlq' denied to user '{USER}' (ClusterAuthorizationFailedError; the idempotent "
            "producer needs WRITE on the topic (or IDEMPOTENT_WRITE on the cluster))",
        ),
        (
            kafka_errors.TopicAuthorizationFailedError("c.dlq"),
            DLQ,
            f"dead-letter topic 'c.dlq' cannot be written: not authorized: WRITE on topic "
            f"'c.dlq' denied to user '{USER}' (TopicAuthorizationFailedError; if the topic does "
            "not exist yet, creating it needs CREATE)",
        ),
        (
            kafka_errors.TransactionalIdAuthorizationFailed(),
            DLQ,
            f"dead-letter topic 'c.dlq' cannot be written: not authorized: WRITE on the "
            f"transactional id denied to user '{USER}' (TRANSACTIONAL_ID_AUTHORIZATION_FAILED)",
        ),
        (
            kafka_errors.DelegationTokenAuthorizationFailed(),
            READER,
            f"kafka: not authorized: READ on topic 'orders' denied to user '{USER}' "
            "(DELEGATION_TOKEN_AUTHORIZATION_FAILED)",
        ),
    ],
    ids=["topic", "topics", "group", "cluster-on-write", "topic-on-write", "txn-id", "token"],
)
def test_refusals_name_resource_operation_and_principal(
    exc: Exception, where: Where, line: str
) -> None:
    ours = translate(exc, where)
    assert isinstance(ours, FatalError)
    assert str(ours) == line


@pytest.mark.parametrize(
    "cls",
    [
        kafka_errors.SaslAuthenticationFailed,
        kafka_errors.AuthenticationFailedError,
        kafka_errors.AuthenticationMethodNotSupported,
        kafka_errors.UnsupportedSaslMechanismError,
        kafka_errors.IllegalSaslStateError,
    ],
    ids=lambda cls: cls.__name__,
)
def test_authentication_failures_name_principal_mechanism_and_servers(
    cls: type[kafka_errors.KafkaError],
) -> None:
    ours = translate(
        cls("Authentication failed during authentication due to invalid credentials"), READER
    )
    assert str(ours) == (
        f"kafka: authentication failed for user '{USER}' with SCRAM-SHA-256 at {SERVERS}: "
        "Authentication failed during authentication due to invalid credentials (check "
        "KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM)"
    )


@pytest.mark.parametrize(
    ("exc", "line"),
    [
        (
            kafka_errors.InvalidSessionTimeoutError(),
            "kafka: the broker refuses KAFKA_SESSION_TIMEOUT_MS=45000 "
            "(InvalidSessionTimeoutError): it must lie between the broker's "
            "group.min.session.timeout.ms and group.max.session.timeout.ms (6000 and 1800000 "
            "by default)",
        ),
        (
            kafka_errors.InvalidGroupIdError(),
            "kafka: the broker refuses KAFKA_GROUP_ID='orders-group' (InvalidGroupIdError: "
            "[Error 24] InvalidGroupIdError)",
        ),
        (
            kafka_errors.InconsistentGroupProtocolError(),
            "kafka: the broker refuses KAFKA_GROUP_ID='orders-group' "
            "(InconsistentGroupProtocolError): another application uses this consumer group "
            "with another protocol; give the connector a group of its own",
        ),
        (
            kafka_errors.InvalidTopicError(),
            "kafka: the broker refuses TOPICS='orders' (InvalidTopicError: [Error 17] "
            "InvalidTopicError)",
        ),
    ],
    ids=["session-timeout", "group-id", "group-protocol", "topics"],
)
def test_settings_the_broker_refuses_are_named(exc: Exception, line: str) -> None:
    assert str(translate(exc, READER)) == line


@pytest.mark.parametrize(
    "exc",
    [
        FencedInstanceIdError(),
        kafka_errors.for_code(FENCED_INSTANCE_ID)(),
        # aiokafka's heartbeat and join wrap the code's class in a plain KafkaError's text
        kafka_errors.KafkaError("Unexpected exception in heartbeat task: FencedInstanceIdError()"),
        kafka_errors.KafkaError("FencedInstanceIdError: [Error 82] FENCED_INSTANCE_ID"),
    ],
    ids=["class", "for_code", "heartbeat", "join"],
)
def test_a_fenced_static_member_stops_naming_its_instance_id(exc: Exception) -> None:
    assert fenced(exc)
    assert verdict(exc) == "fatal"
    assert str(translate(exc, READER)) == (
        "kafka: fenced: another process joined group 'orders-group' with the same "
        "KAFKA_GROUP_INSTANCE_ID='pod-0' (FENCED_INSTANCE_ID, error 82); this one stops: give "
        "each process its own KAFKA_GROUP_INSTANCE_ID (e.g. its pod name)"
    )


def test_other_plain_errors_are_not_mistaken_for_fencing() -> None:
    assert not fenced(kafka_errors.KafkaError("Unexpected exception in heartbeat task: X()"))
    assert not fenced(kafka_errors.UnknownError())
    assert verdict(kafka_errors.UnknownError()) == "retriable"


def test_translate_keeps_our_own_errors() -> None:
    ours = FatalError("already ours")
    assert translate(ours, READER) is ours


def _error_tuples(path: Path) -> list[int]:
    """Lines of `path` holding a tuple, list or set of two or more aiokafka error classes
    (named through `aiokafka.errors`, however imported)."""
    tree = ast.parse(path.read_text(), str(path))
    modules, names = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "aiokafka":
            modules |= {a.asname or a.name for a in node.names if a.name == "errors"}
        elif isinstance(node, ast.ImportFrom) and node.module == "aiokafka.errors":
            names |= {a.asname or a.name for a in node.names}
        elif isinstance(node, ast.Import):
            modules |= {a.asname for a in node.names if a.name == "aiokafka.errors" and a.asname}

    def is_error(e: ast.expr) -> bool:
        if isinstance(e, ast.Attribute) and isinstance(e.value, ast.Name):
            return e.value.id in modules
        return isinstance(e, ast.Name) and e.id in names

    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Tuple | ast.List | ast.Set) and sum(map(is_error, node.elts)) >= 2
    ]


def test_no_module_but_the_translation_keeps_a_list_of_kafka_errors() -> None:
    own = ROOT / "connectors" / "kafka" / "errors.py"
    sources = [
        p
        for folder in ("connectors", "readers", "writers")
        for p in sorted((ROOT / folder).rglob("*.py"))
        if p != own
    ]
    lists = {str(p.relative_to(ROOT)): lines for p in sources if (lines := _error_tuples(p))}
    assert lists == {}
