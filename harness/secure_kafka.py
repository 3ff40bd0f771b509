"""A secured Kafka broker for tests: TLS from a test CA, SCRAM users, ACLs enforced.

The same jars and the same single KRaft node as :mod:`harness.kafka`, with the listeners a
shared production bus has::

    PLAINTEXT       the harness's own door (topics, kcat, group offsets): on loopback only,
                    its anonymous principal is a super user, as is the controller's
    SASL_SSL        TLS + SCRAM-SHA-256 / SCRAM-SHA-512 / PLAIN users
    SSL             mutual TLS: the client certificate's CN is the user name
    SASL_PLAINTEXT  SCRAM-SHA-256 / SCRAM-SHA-512 / PLAIN without TLS

``StandardAuthorizer`` enforces ACLs on every listener; ``admin`` is a super user, every
other user starts with no permission at all and gets only what :meth:`grant` gives it.
SCRAM credentials are written when the storage is formatted, so they exist before the
broker first answers. Keys and certificates are PEM files made at start by a test CA
(``trustme``); :attr:`SecureKafkaBroker.pki` names them, with a second, unrelated CA to
play "a CA the broker does not use".
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import trustme
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.admin import DescribeAclsRequest
from cryptography.hazmat.primitives import serialization

from harness.kafka import (
    DEFAULT_VERSION,
    STORAGE_TOOL,
    BrokerStartError,
    KafkaBroker,
    KafkaToolError,
    _random_cluster_id,
    run_sync,
    run_tool,
)
from harness.ports import free_port

__all__ = [
    "ACL_COMMAND",
    "Acl",
    "SCRAM_MECHANISMS",
    "Pki",
    "Protocol",
    "SecureKafkaBroker",
    "acls_async",
]

# Checked against the 4.4.0 jars: AclCommand moved from core (kafka.admin) to kafka-tools.
ACL_COMMAND = "org.apache.kafka.tools.AclCommand"
SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
SUPER_USER = "admin"

Protocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]

_SASL_MECHANISMS = (*SCRAM_MECHANISMS, "PLAIN")
_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


@dataclass(frozen=True)
class Pki:
    """PEM files of the test CA and what it signed, all under one folder.

    ``client_key`` is encrypted (PKCS#8, PBES2) with ``client_key_password``. The broker's
    key is not: Java 17 cannot decrypt PBES2 keys, and Kafka reads an unencrypted PEM key
    only when it is given inline (``ssl.keystore.key``), not from a file.
    """

    ca_file: Path
    other_ca_file: Path
    broker_cert: Path
    broker_key: Path
    client_cert: Path
    client_key: Path
    client_key_password: str
    client_user: str


def _pkcs8(leaf: trustme.LeafCert, password: str | None) -> bytes:
    """The leaf's key as PKCS#8, the one format Kafka's PEM keystore reads."""
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
    encryption: serialization.KeySerializationEncryption = (
        serialization.NoEncryption()
        if password is None
        else serialization.BestAvailableEncryption(password.encode())
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def make_pki(directory: Path, client_user: str) -> Pki:
    """A CA, a broker certificate for 127.0.0.1/localhost, a client certificate whose CN
    is ``client_user``, and an unrelated CA."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="connectors test CA")
    other = trustme.CA(organization_name="some other CA")
    broker = ca.issue_cert("127.0.0.1", "localhost", common_name="kafka-broker")
    # One SAN at least: Java refuses a certificate whose (critical) SAN list is empty.
    client = ca.issue_cert(f"{client_user}.clients.test", common_name=client_user)
    client_password = secrets.token_hex(12)

    pki = Pki(
        ca_file=directory / "ca.pem",
        other_ca_file=directory / "other-ca.pem",
        broker_cert=directory / "broker.pem",
        broker_key=directory / "broker.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
        client_key_password=client_password,
        client_user=client_user,
    )
    ca.cert_pem.write_to_path(str(pki.ca_file))
    other.cert_pem.write_to_path(str(pki.other_ca_file))
    pki.broker_cert.write_bytes(b"".join(blob.bytes() for blob in broker.cert_chain_pems))
    pki.broker_key.write_bytes(_pkcs8(broker, None))
    pki.client_cert.write_bytes(b"".join(blob.bytes() for blob in client.cert_chain_pems))
    pki.client_key.write_bytes(_pkcs8(client, client_password))
    for path in (pki.broker_key, pki.client_key):
        path.chmod(0o600)
    return pki


class SecureKafkaBroker(KafkaBroker):
    """:class:`~harness.kafka.KafkaBroker` with TLS, SASL and ACLs; see the module docstring.

    ``users`` maps SCRAM (and PLAIN) user names to passwords; each gets both SCRAM
    mechanisms. ``admin`` is added with a random password. :attr:`bootstrap` stays the
    PLAINTEXT super-user door, so every helper of :mod:`harness.kafka` and
    :mod:`harness.kcat` works unchanged against this broker.
    """

    def __init__(
        self,
        directory: str | Path | None = None,
        *,
        users: Mapping[str, str] | None = None,
        client_user: str = "mtls-client",
        version: str = DEFAULT_VERSION,
        start_timeout: float = 90.0,
        properties: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            directory, version=version, start_timeout=start_timeout, properties=properties
        )
        self.users = {SUPER_USER: secrets.token_hex(16), **dict(users or {})}
        for name, password in self.users.items():
            if not _NAME.match(name) or not _NAME.match(password):
                raise ValueError("user names and passwords here are letters, digits, . _ -")
        self.client_user = client_user
        self.ports: dict[Protocol, int] = {
            "PLAINTEXT": self.port,
            "SASL_SSL": free_port(),
            "SSL": free_port(),
            "SASL_PLAINTEXT": free_port(),
        }
        self._pki: Pki | None = None

    # -- addresses and credentials

    @property
    def pki(self) -> Pki:
        if self._pki is None:
            raise BrokerStartError("the PKI is made by start()")
        return self._pki

    @property
    def admin_password(self) -> str:
        return self.users[SUPER_USER]

    def bootstrap_for(self, protocol: Protocol) -> str:
        return f"127.0.0.1:{self.ports[protocol]}"

    def client_env(
        self,
        protocol: Protocol,
        *,
        user: str | None = None,
        mechanism: str = "SCRAM-SHA-512",
        password: str | None = None,
        cafile: Path | None = None,
    ) -> dict[str, str]:
        """The `KAFKA_*` variables of a connector reaching this broker over ``protocol``:
        as ``user`` over SASL (its own password unless ``password`` is given), with the
        client certificate over SSL (the user is then :attr:`client_user`)."""
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_for(protocol),
            "KAFKA_SECURITY_PROTOCOL": protocol,
        }
        if protocol in ("SSL", "SASL_SSL"):
            env["KAFKA_SSL_CAFILE"] = str(cafile or self.pki.ca_file)
        if protocol == "SSL":
            env["KAFKA_SSL_CERTFILE"] = str(self.pki.client_cert)
            env["KAFKA_SSL_KEYFILE"] = str(self.pki.client_key)
            env["KAFKA_SSL_KEY_PASSWORD"] = self.pki.client_key_password
        if protocol.startswith("SASL_"):
            if user is None:
                raise ValueError(f"{protocol} needs a user")
            env["KAFKA_SASL_MECHANISM"] = mechanism
            env["KAFKA_SASL_USERNAME"] = user
            env["KAFKA_SASL_PASSWORD"] = password if password is not None else self.users[user]
        return env

    # -- configuration

    def properties(self) -> dict[str, str]:
        props = super().properties()
        pki = self.pki
        ports = self.ports
        plain_users = " ".join(f'user_{name}="{pw}"' for name, pw in self.users.items())
        secure = {
            "listeners": ",".join(
                [
                    f"PLAINTEXT://127.0.0.1:{ports['PLAINTEXT']}",
                    f"CONTROLLER://127.0.0.1:{self.controller_port}",
                    f"SASL_SSL://127.0.0.1:{ports['SASL_SSL']}",
                    f"SSL://127.0.0.1:{ports['SSL']}",
                    f"SASL_PLAINTEXT://127.0.0.1:{ports['SASL_PLAINTEXT']}",
                ]
            ),
            "advertised.listeners": ",".join(
                f"{name}://127.0.0.1:{port}" for name, port in ports.items()
            ),
            "listener.security.protocol.map": (
                "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL,"
                "SASL_PLAINTEXT:SASL_PLAINTEXT"
            ),
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            # The controller listener and the harness's loopback door are PLAINTEXT, where
            # every client is User:ANONYMOUS; the broker's own requests to the controller
            # need it to be a super user.
            "super.users": f"User:{SUPER_USER};User:ANONYMOUS",
            "allow.everyone.if.no.acl.found": "false",
            "sasl.enabled.mechanisms": ",".join(_SASL_MECHANISMS),
            "ssl.keystore.type": "PEM",
            "ssl.keystore.certificate.chain": _inline(pki.broker_cert),
            "ssl.keystore.key": _inline(pki.broker_key),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(pki.ca_file),
            "ssl.endpoint.identification.algorithm": "https",
            "listener.name.ssl.ssl.client.auth": "required",
            # CN=<user>,OU=...,O=... → User:<user>, as operators map certificates to users.
            "ssl.principal.mapping.rules": "RULE:^CN=([^,]+),.*$/$1/,DEFAULT",
        }
        for listener in ("sasl_ssl", "sasl_plaintext"):
            for mechanism in SCRAM_MECHANISMS:
                secure[f"listener.name.{listener}.{mechanism.lower()}.sasl.jaas.config"] = (
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;"
                )
            secure[f"listener.name.{listener}.plain.sasl.jaas.config"] = (
                f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};"
            )
        props.update(secure)
        props.update(self.extra_properties)
        return props

    def _format_storage(self, config: Path) -> None:
        """Format with every user's SCRAM credentials, so they exist at first start."""
        if (self.data_dir / "meta.properties").exists():
            return
        scram: list[str] = []
        for name, password in self.users.items():
            for mechanism in SCRAM_MECHANISMS:
                scram += ["--add-scram", f"{mechanism}=[name={name},password={password}]"]
        done = run_tool(
            STORAGE_TOOL, "format", "-t", _random_cluster_id(), "-c", str(config), *scram,
            version=self.version, timeout=60.0, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise BrokerStartError(
                f"{STORAGE_TOOL} format failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
            )

    def start(self, *, detach: bool = False) -> SecureKafkaBroker:
        if self._pki is None:
            self._pki = make_pki(self.directory / "pki", self.client_user)
        super().start(detach=detach)
        return self

    # -- ACLs

    def grant(
        self,
        users: str | Iterable[str],
        operations: Iterable[str],
        *,
        topics: Iterable[str] = (),
        groups: Iterable[str] = (),
        cluster: bool = False,
        prefixed: bool = False,
        timeout: float = 60.0,
    ) -> None:
        """Allow ``users`` the ``operations`` (READ, WRITE, DESCRIBE, CREATE, ...) on the
        topics, the groups and/or the cluster, with Kafka's own ``AclCommand`` (one JVM per
        call; each operation must be valid for every resource named). Returns once the
        broker's authorizer lists every new ACL, so a client started next is judged by
        them."""
        principals = [f"User:{u}" for u in ([users] if isinstance(users, str) else users)]
        ops = [op.upper() for op in operations]
        pattern = "prefixed" if prefixed else "literal"
        wanted = {
            Acl(principal, kind, name, "literal" if kind == "cluster" else pattern, op)
            for principal in principals
            for op in ops
            for kind, name in [
                *(("topic", t) for t in topics),
                *(("group", g) for g in groups),
                *([("cluster", "kafka-cluster")] if cluster else []),
            ]
        }
        if not wanted:
            raise ValueError("grant needs operations and at least one resource")
        args = ["--bootstrap-server", self.bootstrap, "--add"]
        args += [arg for p in principals for arg in ("--allow-principal", p)]
        args += [arg for t in topics for arg in ("--topic", t)]
        args += [arg for g in groups for arg in ("--group", g)]
        args += ["--cluster"] if cluster else []
        args += ["--resource-pattern-type", pattern]
        args += [arg for op in ops for arg in ("--operation", op)]
        run_tool(ACL_COMMAND, *args, version=self.version, timeout=timeout)
        deadline = time.monotonic() + timeout
        while not wanted <= (found := run_sync(lambda: acls_async(self.bootstrap), timeout)):
            if time.monotonic() > deadline:
                raise KafkaToolError(f"ACLs not in effect after {timeout:.0f} s: {wanted - found}")
            time.sleep(0.05)

    def acls(self) -> set[Acl]:
        """Every ALLOW ACL the broker's authorizer holds."""
        return run_sync(lambda: acls_async(self.bootstrap), 30.0)


class Acl(NamedTuple):
    principal: str
    resource: str
    name: str
    pattern: str
    operation: str


_RESOURCE_TYPES = {2: "topic", 3: "group", 4: "cluster", 5: "transactional-id"}
_PATTERN_TYPES = {3: "literal", 4: "prefixed"}
_OPERATIONS = {
    2: "ALL", 3: "READ", 4: "WRITE", 5: "CREATE", 6: "DELETE", 7: "ALTER", 8: "DESCRIBE",
    9: "CLUSTER_ACTION", 10: "DESCRIBE_CONFIGS", 11: "ALTER_CONFIGS", 12: "IDEMPOTENT_WRITE",
    13: "CREATE_TOKENS", 14: "DESCRIBE_TOKENS",
}  # fmt: skip
_ANY, _ALLOW = 1, 3


async def acls_async(bootstrap: str) -> set[Acl]:
    """The ALLOW ACLs as the broker's authorizer answers DescribeAcls (aiokafka has the
    request but no admin method for it)."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        await client.bootstrap()
        request = DescribeAclsRequest(_ANY, None, _ANY, None, None, _ANY, _ALLOW)
        response = await client.send(client.get_random_node(), request)
    finally:
        await client.close()
    if response.error_code != 0:
        raise KafkaToolError(f"DescribeAcls failed: {response.error_code} {response.error_message}")
    return {
        Acl(principal, _RESOURCE_TYPES.get(kind, str(kind)), name,
            _PATTERN_TYPES.get(pattern, str(pattern)), _OPERATIONS.get(op, str(op)))
        for kind, name, pattern, entries in response.resources
        for principal, _host, op, _permission in entries
    }  # fmt: skip


def _inline(path: Path) -> str:
    """A PEM file as one line of a Java properties file (\\n escapes the line breaks)."""
    return "\\n".join(path.read_text(encoding="ascii").strip().splitlines())
