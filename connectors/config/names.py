"""What a name from the environment may be: a Kafka topic, a host, a `host:port` list.

Each rule is checked where the variable is validated, so that a name the broker or the
socket layer would refuse later (after connecting, in a retry loop or as a traceback) is a
configuration error naming the variable instead. Failures raise ValueError with a message
that quotes the offending part on one line.
"""

from __future__ import annotations

import ipaddress
import re

from connectors.core.errors import quoted

TOPIC_RULE = "letters, digits, '.', '_' or '-', 1-249 characters, not '.' or '..'"
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
# RFC 1123 labels; '_' is accepted too, as container and service names often carry one.
_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


def topic_name(value: str) -> str:
    """A Kafka topic name as the broker accepts it (its `Topic.validate`)."""
    if not _TOPIC.fullmatch(value) or value in (".", ".."):
        raise ValueError(f"a Kafka topic name ({TOPIC_RULE}); {quoted(value)} is not one")
    return value


def host(value: str) -> str:
    """An IP address or a syntactically valid host name (resolving it is left to the
    moment it is used: a name may resolve later than the configuration is checked)."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        pass
    else:
        return value
    name = value[:-1] if value.endswith(".") else value
    labels = name.split(".")
    if (
        not name
        or len(name) > 253
        or not all(_LABEL.fullmatch(label) for label in labels)
        or all(label.isdigit() for label in labels)  # a mistyped IPv4 address
    ):
        raise ValueError(f"an IP address or a host name; {quoted(value)} is neither")
    return value


def host_ports(value: str | None) -> str | None:
    """Comma-separated `host:port` pairs whose ports are in 1-65535 (the socket layer
    raises OverflowError on a larger one, long after start-up); None stays unset."""
    for pair in (value or "").split(","):
        _, _, port = pair.rpartition(":")
        if port.isdigit() and not 1 <= int(port) <= 65535:
            raise ValueError(f"ports 1-65535; {quoted(pair)} has port {int(port)}")
    return value
